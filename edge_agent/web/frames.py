"""The camera frame the lane page shows: the latest one, as a small JPEG, a few times a second.

The camera loop already keeps its latest frame and the code outlines found in it (the evidence
store's ``remember``). The page's requests encode that frame here, on the server's thread and
only when someone is looking: at most once per ``every_s``, scaled down to ``max_side``. The
outlines stay in frame coordinates (the page draws them over the image), so the picture is
the camera's own, with nothing burnt into it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from edge_agent.vision.engines import Polygon

FrameSource = Callable[[], "tuple[npt.NDArray[np.uint8], float, tuple[Polygon, ...]] | None"]
"""The latest frame (not a copy), its time on the agent's clock and its code outlines."""

FRAME_EVERY_S = 0.25
MAX_SIDE = 640
QUALITY = 70


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    seq: int
    jpeg: bytes
    at: float
    width: int  # the camera frame's own size: the outlines' coordinates
    height: int
    polygons: tuple[Polygon, ...]


class FrameCache:
    """Encodes ``source()`` on demand, at most once per ``every_s``; thread-safe."""

    def __init__(
        self, source: FrameSource, clock: Callable[[], float], *,
        every_s: float = FRAME_EVERY_S, max_side: int = MAX_SIDE, quality: int = QUALITY,
    ) -> None:
        self._source, self._clock = source, clock
        self.every_s, self.max_side, self.quality = every_s, max_side, quality
        self._lock = threading.Lock()
        self._encoded: EncodedFrame | None = None
        self._encoded_at = -float("inf")  # clock time of the last encoding
        self._source_at: float | None = None

    def current(self) -> EncodedFrame | None:
        """The latest frame encoded, re-encoded when a newer one came and ``every_s`` passed."""
        with self._lock:
            now = self._clock()
            if now - self._encoded_at >= self.every_s:
                self._refresh(now)
            return self._encoded

    def meta(self) -> dict[str, Any] | None:
        """What the page needs to show the frame and draw the outlines over it."""
        frame = self.current()
        if frame is None:
            return None
        return {
            "seq": frame.seq, "age_s": round(self._clock() - frame.at, 3),
            "width": frame.width, "height": frame.height,
            "polygons": [[list(point) for point in polygon] for polygon in frame.polygons],
        }  # fmt: skip

    def _refresh(self, now: float) -> None:
        latest = self._source()
        if latest is None:
            return
        image, at, polygons = latest
        if at == self._source_at:
            return  # the camera sent nothing new (or it is gone): the last picture stands
        height, width = image.shape[:2]
        seq = 1 if self._encoded is None else self._encoded.seq + 1
        self._encoded = EncodedFrame(seq, self._jpeg(image), at, width, height, polygons)
        self._encoded_at, self._source_at = now, at

    def _jpeg(self, image: npt.NDArray[np.uint8]) -> bytes:
        step = max(1, -(-max(image.shape[:2]) // self.max_side))
        small = np.ascontiguousarray(image[::step, ::step]) if step > 1 else image
        out = io.BytesIO()
        Image.fromarray(small).save(out, format="JPEG", quality=self.quality)
        return out.getvalue()
