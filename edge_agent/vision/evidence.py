"""Snapshot evidence: the camera frame of a moment that matters, kept on disk within a cap.

The camera loop calls ``remember(frame, at, polygons)`` for every frame it processed (cheap: a
reference, no copy). Frames the motion gate skipped carry no code outline: the last second's
outlines stay drawn. When the lane asks for evidence (a held truck, a rejected pass),
``snapshot(name)`` encodes the remembered frame once, in memory, as a JPEG with the outlines
drawn, scaled down to ``max_side``; the same bytes are written to disk and handed to the
uploader, so nothing is read back. After each write the oldest snapshots are removed until the
folder is within ``cap_bytes``, so the SD card never fills up. Encoding uses Pillow when present
and falls back to an uncompressed PGM otherwise.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.errors import DeviceError
from edge_agent.vision.engines import Polygon

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
SUFFIXES = (".jpg", ".pgm")
OUTLINE_KEPT_S = 1.0  # a frame without outlines keeps the last ones drawn this long


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One piece of evidence: the encoded image, as written to ``path``."""

    data: bytes
    media_type: str
    path: Path


def draw_polygon(image: npt.NDArray[np.uint8], polygon: Polygon, value: int = 255,
                 width: int = 3) -> None:
    """Draw a closed polygon outline into ``image`` in place (numpy only)."""
    h, w = image.shape
    pts = [*list(polygon), polygon[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        xs = np.linspace(x0, x1, n + 1).round().astype(int)
        ys = np.linspace(y0, y1, n + 1).round().astype(int)
        for d in range(-(width // 2), width // 2 + 1):
            for dx, dy in ((d, 0), (0, d)):
                xx, yy = np.clip(xs + dx, 0, w - 1), np.clip(ys + dy, 0, h - 1)
                image[yy, xx] = value


class EvidenceStore:
    """A bounded folder of snapshot images; thread-safe."""

    def __init__(self, directory: Path, *, cap_bytes: int = 200 * 1024 * 1024,
                 max_side: int = 1280, quality: int = 80) -> None:
        self.directory = Path(directory)
        self.cap_bytes = cap_bytes
        self.max_side = max_side
        self.quality = quality
        self._lock = threading.Lock()
        self._last: tuple[npt.NDArray[np.uint8], tuple[Polygon, ...]] | None = None
        self._outlines: tuple[Polygon, ...] = ()
        self._outlines_at = -math.inf
        self._last_at = -math.inf
        self._counter = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceError(f"evidence folder {self.directory}: {exc}") from exc

    def remember(self, frame: npt.NDArray[np.uint8], at: float,
                 polygons: Sequence[Polygon] = ()) -> None:
        """Keep ``frame`` (not copied: frames are never modified) as the current moment, with
        the code outlines found in it (or, for ``OUTLINE_KEPT_S``, the last ones found)."""
        with self._lock:
            if polygons:
                self._outlines, self._outlines_at = tuple(polygons), at
            elif at - self._outlines_at >= OUTLINE_KEPT_S:
                self._outlines = ()
            self._last = (frame, self._outlines)
            self._last_at = at

    def latest(self) -> tuple[npt.NDArray[np.uint8], float, tuple[Polygon, ...]] | None:
        """The remembered frame (not a copy), its time and its code outlines; for the lane
        page, which encodes it on its own thread."""
        with self._lock:
            last, at = self._last, self._last_at
        return None if last is None else (last[0], at, last[1])

    def snapshot(self, name: str) -> Snapshot | None:
        """Encode and keep the remembered frame; None when no frame has been seen yet."""
        with self._lock:
            last = self._last
        if last is None:
            return None
        return self.save(last[0], name, polygons=last[1])

    def save(self, frame: npt.NDArray[np.uint8], name: str, *,
             polygons: Sequence[Polygon] = ()) -> Snapshot:
        """Encode ``frame`` as evidence named after ``name`` and write it; returns both."""
        image = np.array(frame, dtype=np.uint8, copy=True)
        for polygon in polygons:
            # Black with a white core: visible on the white quiet zone and on dark scenes alike.
            draw_polygon(image, polygon, value=0, width=7)
            draw_polygon(image, polygon, value=255, width=1)
        step = max(1, -(-max(image.shape) // self.max_side))
        if step > 1:
            image = np.ascontiguousarray(image[::step, ::step])
        data, media_type, suffix = self._encode(image)
        with self._lock:
            self._counter += 1
            stem = f"{_SAFE.sub('_', name)[:80] or 'snapshot'}-{self._counter:04d}"
            path = self.directory / f"{stem}{suffix}"
            try:
                path.write_bytes(data)
            except OSError as exc:
                raise DeviceError(f"cannot write evidence {path}: {exc}") from exc
            self._evict(keep=path)
        return Snapshot(data, media_type, path)

    def _encode(self, image: npt.NDArray[np.uint8]) -> tuple[bytes, str, str]:
        try:
            from PIL import Image
        except ImportError:
            h, w = image.shape
            pgm = b"P5\n%d %d\n255\n" % (w, h) + image.tobytes()
            return pgm, "image/x-portable-graymap", ".pgm"
        out = io.BytesIO()
        Image.fromarray(image).save(out, format="JPEG", quality=self.quality)
        return out.getvalue(), "image/jpeg", ".jpg"

    def files(self) -> list[Path]:
        """Snapshots, oldest first."""
        found = [p for p in self.directory.iterdir() if p.suffix in SUFFIXES and p.is_file()]
        return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def _evict(self, keep: Path) -> None:
        files = self.files()
        total = sum(p.stat().st_size for p in files)
        for old in files:
            if total <= self.cap_bytes:
                break
            if old == keep:
                continue
            total -= old.stat().st_size
            old.unlink(missing_ok=True)
