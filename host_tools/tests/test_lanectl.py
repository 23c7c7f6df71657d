"""``lanectl`` itself: errors reach the technician as one line and an exit code, and the
firmware manifest the tools compute is the one the board computes."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.errors import DeviceError
from host_tools import lanectl
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
