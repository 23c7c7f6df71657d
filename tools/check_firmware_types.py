#!/usr/bin/env python3
"""Type-check firmware/ against the MicroPython rp2 (Raspberry Pi Pico) stubs.

Separate from the agent's mypy run because the stubs replace the whole standard library:
the stdlib stubs (micropython-stdlib-stubs, a typeshed-layout tree) become mypy's typeshed
and the board stubs (micropython-rp2-rpi_pico-stubs: machine, micropython, rp2...) its
mypy_path. Both are linked into a temporary folder so nothing else from site-packages leaks
in. The host-only parts (firmware/hostsim, firmware/tests) are not checked. Exit status is
mypy's: non-zero on any type error.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BOARD_STUBS = "micropython-rp2-rpi_pico-stubs"
STDLIB_STUBS = "micropython-stdlib-stubs"


def _top_level_entries(dist_name: str) -> tuple[Path, set[str]]:
    dist = metadata.distribution(dist_name)
    files = dist.files or []
    names = {
        f.parts[0]
        for f in files
        if not f.parts[0].endswith((".dist-info", ".pth"))
        and (len(f.parts) > 1 or f.suffix == ".pyi")
    }
    return Path(str(dist.locate_file(""))), names


def main(argv: list[str] | None = None) -> int:
    """Check firmware/ (or the folder given as the only argument)."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]).resolve() if args else FIRMWARE
    try:
        board_root, board_entries = _top_level_entries(BOARD_STUBS)
        stdlib_root, stdlib_entries = _top_level_entries(STDLIB_STUBS)
    except metadata.PackageNotFoundError as exc:
        print(f"check_firmware_types: stubs not installed ({exc}); run `make` to set up")
        return 2
    sources = sorted(str(p) for p in folder.glob("*.py"))
    if not sources:
        print(f"check_firmware_types: no .py files in {folder}")
        return 2
    with tempfile.TemporaryDirectory(prefix="fwtypes-") as tmp:
        typeshed = Path(tmp) / "typeshed"
        typeshed.mkdir()
        (typeshed / "stdlib").symlink_to(stdlib_root / "stdlib")
        (typeshed / "stubs").symlink_to(stdlib_root / "stubs")  # mypy-extensions
        config = Path(tmp) / "mypy.ini"
        # Errors inside the vendor stubs are theirs, not ours.
        config.write_text(
            "[mypy]\nfollow_imports = silent\nfollow_imports_for_stubs = True\n", encoding="utf-8"
        )
        stubs = Path(tmp) / "stubs"
        stubs.mkdir()
        for root, entries in ((board_root, board_entries), (stdlib_root, stdlib_entries)):
            for name in sorted(entries - {"stdlib", "stubs"}):
                if not (stubs / name).exists():
                    (stubs / name).symlink_to(root / name)
        cmd = [
            sys.executable, "-m", "mypy",
            "--config-file", str(config),
            "--custom-typeshed-dir", str(typeshed),
            "--python-version", "3.11",
            "--no-site-packages",
            "--check-untyped-defs",
            "--no-incremental",
            "--cache-dir", str(Path(tmp) / "cache"),
            "--disable-error-code", "import-untyped",
            *sources,
        ]  # fmt: skip
        env_path = str(stubs)
        proc = subprocess.run(cmd, cwd=folder, env={"MYPYPATH": env_path, "PATH": ""})
        return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
