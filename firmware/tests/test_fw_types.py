"""tools/check_firmware_types.py passes on firmware/ and fails on a type error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "check_firmware_types.py"


def _check(folder: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(TOOL)] + ([str(folder)] if folder else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_firmware_type_checks_against_the_pico_stubs() -> None:
    proc = _check()
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_type_error_fails_the_check(tmp_path: Path) -> None:
    shutil.copy(ROOT / "firmware" / "ticks.py", tmp_path / "ticks.py")
    (tmp_path / "bad.py").write_text(
        "from machine import Pin\n"
        "from ticks import ticks_ms\n\n"
        "def f():\n"
        "    Pin(2, Pin.IN).value(ticks_ms() + 'x')\n"
        "    Pin(2, Pin.IN).toggle_everything()\n",
        encoding="utf-8",
    )
    proc = _check(tmp_path)
    assert proc.returncode != 0
    assert "bad.py" in proc.stdout
