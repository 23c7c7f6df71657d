"""``lanectl`` itself: errors reach the technician as one line and an exit code, and the
firmware manifest the tools compute is the one the board computes."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent import __version__
from edge_agent.errors import DeviceError
from host_tools import cli, lanectl
from host_tools.errors import DeployError, SiteError, ToolError
from host_tools.fw_release import FIRMWARE_DIR, manifest, manifest_of

Capture = pytest.CaptureFixture[str]


def run_raising(
    error: Exception, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> tuple[int, str]:
    """Run ``lanectl boom``, a command whose handler raises ``error``: exit code and stderr."""

    def handler(_args: argparse.Namespace) -> int:
        raise error

    def build_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="lanectl")
        commands = parser.add_subparsers(dest="command", required=True)
        commands.add_parser("boom").set_defaults(func=handler)
        return parser

    monkeypatch.setattr(lanectl, "build_parser", build_parser)
    code = lanectl.main(["boom"])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ToolError("bad input\nover two lines"), 2),
        (SiteError("lane id 'x' is given twice"), 2),
        (DeployError("the board did not come back"), 1),
        (DeviceError("/dev/ttyUSB9: no such device"), 2),
    ],
)
def test_an_escaped_error_is_one_line_and_an_exit_code(
    error: Exception, code: int, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    got, stderr = run_raising(error, monkeypatch, capsys)
    assert got == code
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    assert line == "lanectl boom: " + " ".join(str(error).splitlines())


def test_every_tool_error_has_one_root() -> None:
    for error in (SiteError, DeployError):
        assert issubclass(error, ToolError)


def _firmware_manifest_hash() -> Callable[[Callable[[str], bytes], list[str]], bytes]:
    """The board's own function, from firmware/manifest.py as the board runs it."""
    spec = importlib.util.spec_from_file_location("board_manifest", FIRMWARE_DIR / "manifest.py")
    assert spec is not None and spec.loader is not None
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: Callable[[Callable[[str], bytes], list[str]], bytes] = module.manifest_hash
    return function


def test_the_tools_compute_the_manifest_the_board_reports(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_bytes(b"FW_VERSION = (1, 2, 3)\n")
    (tmp_path / "link.mpy").write_bytes(b"\x4d\x06compiled")
    (tmp_path / "release.json").write_text("{}")  # not code: not in the manifest
    names = sorted(p.name for p in tmp_path.iterdir())
    on_board = _firmware_manifest_hash()(lambda name: (tmp_path / name).read_bytes(), names)

    digest, files = manifest(tmp_path)
    assert digest == on_board.hex()
    assert sorted(files) == ["link.mpy", "main.py"]
    # From the per-file SHA-256 a board reports over its REPL, too.
    reported = {n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in names}
    assert manifest_of(reported) == digest
    assert manifest_of({**reported, "main.py": hashlib.sha256(b"other").hexdigest()}) != digest


# -- the command line as a newcomer meets it ------------------------------------------------------


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command of the tree (path, parser), the leaves and the groups above them."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*path, name))
    return found


def test_every_option_has_help_and_every_command_an_example() -> None:
    missing_help, missing_example = [], []
    for path, parser in _commands(lanectl.build_parser()):
        where = " ".join(("lanectl", *path))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.help:  # argparse.SUPPRESS (a hidden option) is a deliberate help
                missing_help.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
        if "example:" not in (parser.epilog or "") or f"\n  {where}" not in f"\n{parser.epilog}":
            missing_example.append(where)
    assert missing_help == [], "options without help"
    assert missing_example == [], "commands without an 'example:' line of their own"


def test_every_command_speaks_json_too() -> None:
    leaves = [(path, parser) for path, parser in _commands(lanectl.build_parser())
              if path and not any(isinstance(a, argparse._SubParsersAction)
                                  for a in parser._actions)]  # fmt: skip
    without = [" ".join(path) for path, parser in leaves
               if not any("--json" in a.option_strings for a in parser._actions)]
    assert len(leaves) > 20 and without == []


def test_version(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exited:
        lanectl.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"lanectl {__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["io", "status"], "the following arguments are required: --port"),
        (["--log-level", "loud", "status"], "bad log level 'loud'"),
        (["weigh", "decode", "--protocol", "none"], "invalid choice: 'none'"),
    ],
)
def test_usage_errors_are_one_line_or_one_json_object(
    argv: list[str], message: str, capsys: Capture
) -> None:
    with pytest.raises(SystemExit) as exited:
        lanectl.main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("lanectl") and message in line and "--help" in line
    with pytest.raises(SystemExit):
        lanectl.main([*argv, "--json"])
    captured = capsys.readouterr()
    refusal = json.loads(captured.out)
    assert refusal["ok"] is False and message in refusal["error"] and captured.err == ""


def test_a_refusal_with_json_is_a_json_object(tmp_path: Path, capsys: Capture) -> None:
    code = lanectl.main(["fw", "deploy", "--port", "loop://", "--firmware-dir", str(tmp_path),
                         "--json"])  # fmt: skip
    refusal = json.loads(capsys.readouterr().out)
    assert code == 2 and refusal["exit_code"] == 2
    assert refusal["command"] == "fw deploy" and "main.py missing" in refusal["error"]


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (FileNotFoundError(2, "No such file or directory", "/nope/out.csv"), 2,
         "/nope/out.csv: No such file or directory: check the path"),
        (PermissionError(13, "Permission denied", "/root/x"), 2, "/root/x: Permission denied"),
        (KeyError("boom"), 70, "unexpected KeyError"),
    ],
)
def test_no_traceback_even_for_what_no_handler_caught(
    error: Exception, code: int, message: str, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    got, stderr = run_raising(error, monkeypatch, capsys)
    assert got == code and "Traceback" not in stderr
    [line] = stderr.splitlines()
    assert line.startswith("lanectl boom: ") and message in line


def test_human_text_for_any_document() -> None:
    doc = {"found": True, "best": {"baud": 9600, "line": "8N1"}, "files": ["a", "b"],
           "none": None, "checks": [{"name": "x", "ok": False}]}
    assert cli.text(doc).splitlines() == [
        "found  yes", "best", "  baud  9600", "  line  8N1", "files  a, b", "none   -",
        "checks", "  -", "    name  x", "    ok    no"]
