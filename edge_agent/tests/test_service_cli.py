"""``edge-agent``'s command line, called as ``main(argv)``: version, help, check-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent import __version__
from edge_agent.service import EX_CONFIG, EX_USAGE, main
from edge_agent.tests.agent_files import lane_config


def test_version_prints_the_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"edge-agent {__version__}\n"


@pytest.mark.parametrize(("argv", "examples"), [
    (["--help"], ["(e.g. edge-agent --version)", "(e.g. edge-agent run --config agent.toml)"]),
    (["run", "--help"], ["(e.g. --config /etc/gatelane/agent.toml)",
                         "(e.g. --log-level debug)"]),
    (["check-config", "--help"], ["(e.g. /etc/gatelane/agent.toml)"]),
])
def test_every_option_has_help_with_an_example(
    argv: list[str], examples: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "edge-agent run --config /etc/gatelane/agent.toml" in text
    flowing = " ".join(text.split())  # argparse wraps the help text
    for example in examples:
        assert example in flowing


def test_a_good_file_checks_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(lane_config(tmp_path), encoding="utf-8")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_a_bad_file_gives_one_line_per_problem_and_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    text = lane_config(tmp_path).replace("health_interval_s = 30", "health_interval_s = -1")
    path.write_text(text + '\n[logging]\nlevel = "loud"\n', encoding="utf-8")
    assert main(["check-config", str(path)]) == EX_CONFIG
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 2
    assert all(line.startswith(f"edge-agent: {path}: ") for line in lines)
    assert any("mqtt.health_interval_s" in line for line in lines)
    assert any("logging.level" in line for line in lines)


def test_a_missing_file_is_a_config_error(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.toml")]) == EX_CONFIG
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--bogus"], ["run"], ["run", "--config"], []])
def test_a_bad_command_line_is_one_line_and_exit_64(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as done:
        code = int(done.code or 0)
    assert code == EX_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if argv:
        [line] = err.splitlines()
        assert line.startswith("edge-agent") and "--help" in line
