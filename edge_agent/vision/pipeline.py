"""From camera frames to confirmed pass reads.

``decode_frame`` is the single-shot cascade (used by ``lanectl qr decode`` and the bench): each
stage runs only when the previous ones found nothing, cheapest first:

1. zxing-cpp, local-average binarizer, normal polarity (almost every real read ends here);
2. zxing-cpp with the inverted search (dark-mode phone screens);
3. zxing-cpp, global-histogram binarizer (uneven light that defeats local thresholds);
4. ZBar, normal then inverted, downscaled so that large frames stay within budget;
5. zxing-cpp on a lightly smoothed copy (moire, JPEG blocks, screen pixels).

``QrPipeline`` runs that cascade on a live stream (``FrameDecoder``: a time budget per frame,
slow stages taking turns, a resolution guard, optionally a supervised worker process), an optional
region of interest and a motion gate (still decoding every Nth frame, since a phone held
still produces no motion), and turns raw reads into *confirmed* reads: the same text in
``confirm_frames`` decoded frames within ``confirm_window_s`` with no other text in between.
A text already handed out stays quiet until it has been out of view for ``debounce_s``.
The pipeline is pure: time is the ``now`` argument, there are no threads.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from edge_agent.vision import stages
from edge_agent.vision.engines import Gray, Polygon, RawRead, as_gray
from edge_agent.vision.worker import DecoderFailed, DecodeWorker

MIN_PX_PER_MODULE = 3.0


@dataclass(frozen=True, slots=True)
class QrRead:
    """A decoded QR text with where it was (frame pixels), when, by which engine, how fast."""

    text: str
    polygon: Polygon
    at: float
    engine: str
    ms: float


def decode_frame(frame: np.ndarray, *, at: float = 0.0) -> list[QrRead]:
    """Every distinct QR text in one image, trying the whole cascade (no budget)."""
    start = time.perf_counter()
    reads = stages.run_stages(as_gray(frame), stages.ALL)
    ms = (time.perf_counter() - start) * 1000
    return [QrRead(r.text, r.polygon, at, r.engine, ms) for r in reads]


def module_px(polygon: Polygon, modules: int) -> float:
    """Pixels per module from a symbol's corner polygon and its module count."""
    pts = np.asarray(polygon, float)
    sides = np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1)
    return float(sides.mean()) / max(1, modules)


class FrameDecoder:
    """Decodes one live frame within a budget.

    The fast stages run on every frame; the slow ones take turns on frames after a miss, so
    their cost is spread out while a held-up code still meets each of them within a few
    frames. Once a code has been read and its module size is known, frames may be decoded at
    a reduced resolution, but never below ``MIN_PX_PER_MODULE`` pixels per module. With a
    ``worker`` the stages run in a supervised child process.
    """

    def __init__(self, *, budget_ms: float = 12.0, slow_every_n: int = 2,
                 max_downscale: int = 2, worker: DecodeWorker | None = None) -> None:
        self.budget_ms = budget_ms
        self.slow_every_n = max(1, slow_every_n)
        self.max_downscale = max(1, max_downscale)
        self.worker = worker
        self.failures = 0
        self.last_error = ""
        self._misses = 0
        self._slow_turn = 0
        self._module_px: float | None = None

    def downscale(self) -> int:
        """The stride used for the next frame (1 = full resolution)."""
        if self._module_px is None:
            return 1
        return max(1, min(self.max_downscale, int(self._module_px // MIN_PX_PER_MODULE)))

    def decode(self, gray: Gray, start: float | None = None) -> list[RawRead]:
        start = time.perf_counter() if start is None else start
        step = self.downscale()
        image = np.ascontiguousarray(gray[::step, ::step]) if step > 1 else gray
        names: tuple[str, ...] = stages.FAST
        if self._misses and self._misses % self.slow_every_n == 0:
            names += (stages.SLOW[self._slow_turn % len(stages.SLOW)],)
            self._slow_turn += 1
        budget_left = self.budget_ms - (time.perf_counter() - start) * 1000
        if self.worker is not None:
            try:
                reads = self.worker.run(image, names, max(1.0, budget_left))
            except DecoderFailed as exc:
                self.failures += 1
                self.last_error = str(exc)
                reads = []
        else:
            reads = stages.run_stages(image, names, start + self.budget_ms / 1000)
        if step > 1:
            reads = [RawRead(r.text, tuple((x * step, y * step) for x, y in r.polygon),
                             r.engine, r.modules) for r in reads]
        sized = [module_px(r.polygon, r.modules) for r in reads if r.modules]
        if sized:
            self._module_px = min(sized)
        elif not reads:
            self._module_px = None  # lost it: search at full resolution again
        self._misses = 0 if reads else self._misses + 1
        return reads

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


@dataclass(slots=True)
class _Candidate:
    text: str
    count: int
    last_at: float
    read: RawRead


MIN_FRAME_SIDE = 21


class QrPipeline:
    """Live decoding with confirmation and debounce; feed it frames with their time.

    ``isolate=True`` runs the decoders in a supervised child process (the lane's setting);
    call ``close()`` when done with it.
    """

    def __init__(
        self,
        *,
        confirm_frames: int = 2,
        confirm_window_s: float = 2.0,
        debounce_s: float = 10.0,
        roi: tuple[int, int, int, int] | None = None,
        motion_gate: bool = True,
        motion_threshold: float = 0.004,
        decode_every_n: int = 3,
        budget_ms: float = 12.0,
        isolate: bool = False,
        decoder: FrameDecoder | None = None,
        history: int = 200,
    ) -> None:
        if confirm_frames < 1:
            raise ValueError("confirm_frames must be at least 1")
        self.confirm_frames = confirm_frames
        self.confirm_window_s = confirm_window_s
        self.debounce_s = debounce_s
        self.roi = roi
        self.motion_gate = motion_gate
        self.motion_threshold = motion_threshold
        self.decode_every_n = max(1, decode_every_n)
        if decoder is None:
            decoder = FrameDecoder(budget_ms=budget_ms,
                                   worker=DecodeWorker() if isolate else None)
        self.decoder = decoder
        self._timings: deque[float] = deque(maxlen=history)
        self._candidates: dict[str, _Candidate] = {}
        self._handled: dict[str, float] = {}  # text -> last time seen after it was handed out
        self._previous: np.ndarray | None = None
        self._since_decode = 0
        self._tracking = False  # a code was in view at the last decode
        self.frames = 0
        self.decoded_frames = 0
        self.last_raw: list[RawRead] = []  # unconfirmed reads of the last frame (evidence)

    def timings(self) -> list[float]:
        """Recent per-frame processing times in ms (skipped frames included)."""
        return list(self._timings)

    def close(self) -> None:
        self.decoder.close()

    def _moved(self, gray: Gray) -> bool:
        thumb = gray[::8, ::8].astype(np.int16)
        previous, self._previous = self._previous, thumb
        if previous is None or previous.shape != thumb.shape:
            return True
        changed = np.count_nonzero(np.abs(thumb - previous) > 24)
        return bool(changed > self.motion_threshold * thumb.size)

    def _should_decode(self, gray: Gray) -> bool:
        moved = self._moved(gray) if self.motion_gate else True
        self._since_decode += 1
        if moved or self._tracking or self._since_decode >= self.decode_every_n:
            self._since_decode = 0
            return True
        return False

    def process(self, frame: np.ndarray, now: float) -> list[QrRead]:
        """Decode ``frame`` taken at ``now``; return reads confirmed by this frame."""
        start = time.perf_counter()
        self.frames += 1
        gray = as_gray(frame)
        ox = oy = 0
        if self.roi is not None:
            ox, oy, w, h = self.roi
            gray = np.ascontiguousarray(gray[oy : oy + h, ox : ox + w])
        raw: list[RawRead] = []
        # A frame too small to hold a version-1 code (21 modules) holds no pass, and the
        # native decoders refuse empty images by raising: such frames are not decoded.
        if min(gray.shape[:2], default=0) >= MIN_FRAME_SIDE and self._should_decode(gray):
            self.decoded_frames += 1
            raw = self.decoder.decode(gray, start)
            self._tracking = bool(raw)
        ms = (time.perf_counter() - start) * 1000
        self._timings.append(ms)
        if ox or oy:
            raw = [RawRead(r.text, tuple((x + ox, y + oy) for x, y in r.polygon), r.engine,
                           r.modules) for r in raw]
        self.last_raw = raw
        return self._confirm(raw, now, ms)

    def _confirm(self, raw: list[RawRead], now: float, ms: float) -> list[QrRead]:
        texts = {r.text for r in raw}
        for text in list(self._candidates):  # a different code in view breaks a streak
            cand = self._candidates[text]
            stale = now - cand.last_at > self.confirm_window_s
            if stale or (texts and text not in texts):
                del self._candidates[text]
        for text, seen in list(self._handled.items()):
            if text not in texts and now - seen >= self.debounce_s:
                del self._handled[text]
        confirmed: list[QrRead] = []
        for r in raw:
            if r.text in self._handled:
                self._handled[r.text] = now  # still in view: stays debounced
                continue
            cand = self._candidates.setdefault(r.text, _Candidate(r.text, 0, now, r))
            cand.count += 1
            cand.last_at = now
            if cand.count >= self.confirm_frames:
                del self._candidates[r.text]
                self._handled[r.text] = now
                confirmed.append(QrRead(r.text, r.polygon, now, r.engine, ms))
        return confirmed

    def forget(self, text: str) -> None:
        """Allow ``text`` to be confirmed again at once (e.g. the lane reset its transaction)."""
        self._handled.pop(text, None)
        self._candidates.pop(text, None)

    def forget_all(self) -> None:
        """A new truck: every pass may be presented again (a reused one must be seen)."""
        self._handled.clear()
        self._candidates.clear()
