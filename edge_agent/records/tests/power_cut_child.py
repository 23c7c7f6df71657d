"""Appends records to a log until killed; after each append has returned (fsynced), prints
``segment seq hash size`` of it: what the log has acknowledged."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edge_agent.records.keys import load_or_create_key
from edge_agent.records.store import RecordStore

SEGMENT_BYTES = 6000  # small: segments are closed often, so a kill lands in one too


def main(state_dir: Path) -> None:
    store = RecordStore(state_dir, load_or_create_key(state_dir), utc=time.time(),
                        mono=time.monotonic(), segment_bytes=SEGMENT_BYTES)  # fmt: skip
    n = 0
    while True:
        n += 1
        rec = store.append("transit", {"n": n, "frames": ["022b30333234383030313603"] * 6},
                           utc=time.time(), mono=time.monotonic())  # fmt: skip
        print(store.segment, rec.seq, rec.hash, store.size, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
