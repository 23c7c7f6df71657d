"""The decoding cascade's stages, by name, so a worker process can run them too.

Cheapest and most productive first; each later stage runs only when the earlier ones found
nothing. Stage names are stable strings because they cross a process boundary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from edge_agent.vision.engines import Gray, RawRead, zbar_read, zxing_read

ZBAR_MAX_SIDE = 800

Stage = Callable[[Gray], list[RawRead]]


def box_blur3(gray: Gray) -> Gray:
    """3x3 mean filter in integer numpy (~2 ms at 720p): tames moire, JPEG blocks, pixels."""
    padded = np.pad(gray, 1, mode="edge").astype(np.uint16)
    h, w = gray.shape
    total = sum(padded[i : i + h, j : j + w] for i in range(3) for j in range(3))
    return np.asarray(total // 9, dtype=np.uint8)


def _zbar(gray: Gray) -> list[RawRead]:
    # ZBar costs ~10x zxing per pixel: large frames are shrunk by an integer stride first.
    step = max(1, -(-max(gray.shape) // ZBAR_MAX_SIDE))
    small = np.ascontiguousarray(gray[::step, ::step]) if step > 1 else gray
    return zbar_read(small, scale=step)


STAGES: dict[str, Stage] = {
    "zxing": lambda g: zxing_read(g),
    "zxing-invert": lambda g: zxing_read(g, invert=True),
    "zxing-global": lambda g: zxing_read(g, binarizer="global", invert=True),
    "zbar": _zbar,
    "zxing-smooth": lambda g: zxing_read(box_blur3(g), binarizer="global", invert=True),
}
FAST = ("zxing", "zxing-invert", "zxing-global")
SLOW = ("zbar", "zxing-smooth")
ALL = FAST + SLOW


def run_stages(gray: Gray, names: Sequence[str], deadline: float | None = None) -> list[RawRead]:
    """Run stages in order until one reads something; stop early at ``deadline`` (perf_counter)."""
    for name in names:
        if deadline is not None and time.perf_counter() > deadline:
            break
        reads = STAGES[name](gray)
        if reads:
            unique: dict[str, RawRead] = {}
            for r in reads:
                unique.setdefault(r.text, r)
            return list(unique.values())
    return []
