"""The lane's mode on disk, so that a restart keeps it.

``lane_mode.json`` in the state directory holds ``ModeBook.to_doc()``. It is written whole
(a temporary file, fsync, rename), so a crash leaves the old mode or the new one. A file that
cannot be read back is quarantined (``state_files.quarantine``, kept for analysis) and the
lane starts out of service: the mode it was in is unknown, and it may have been one where
nothing opens the barrier. A technician or the backend then sets the mode again.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from edge_agent.drivers.state_files import StateDamaged, open_state_db
from edge_agent.errors import DeviceError
from edge_agent.lane.modes import LaneMode, ModeBook, Via

MODE_FILE = "lane_mode.json"


def _read(path: Path) -> ModeBook:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ModeBook()
    except (OSError, UnicodeDecodeError) as exc:
        raise StateDamaged(f"{path.name} unreadable: {exc}") from exc
    try:
        return ModeBook.from_doc(json.loads(text))
    except (ValueError, RecursionError) as exc:
        raise StateDamaged(f"{path.name}: {exc}") from exc


def load_mode(state_dir: Path, wall: float) -> tuple[ModeBook, tuple[Path, str] | None]:
    """The persisted mode, and (quarantined file, what was wrong) when it was damaged."""
    book, moved, problem = open_state_db(state_dir / MODE_FILE, _read, sqlite=False)
    if moved is None:
        return book, None
    why = f"the stored lane mode was damaged ({moved.name}); set the mode again"
    book.change(LaneMode.OUT_OF_SERVICE, by="edge-agent", reason=why, via=Via.STARTUP, wall=wall)
    return book, (moved, problem)


def save_mode(state_dir: Path, doc: dict[str, object]) -> None:
    """Write the mode document atomically.

    Raises:
        DeviceError: the state directory could not be written (the mode holds in memory).
    """
    path = state_dir / MODE_FILE
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(doc, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
        directory = os.open(state_dir, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DeviceError(f"lane mode not saved in {state_dir}: {exc.strerror or exc}") from exc
