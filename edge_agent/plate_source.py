"""The lane's plate reader: camera frames in, ``IdentitySeen(kind="plate")`` out.

Its frames are the plate camera's own (``plates.source``) or the pass camera's, as the camera
reader keeps them for evidence; either may be cut to ``plates.region``. The newest frame is
read at most every ``READ_EVERY_S``; the engine is the real one in a supervised child process
(``vision/plate_worker.py``, like the QR decoders) or, for ``fake-plates://NAME``, a scripted
one in-process. A frame with plates is handed to the lane when its texts changed or
``REPEAT_S`` after the last hand-over, so the truck that drives on is read again though its
plate was in view before. The crops of recent reads are kept in memory: a held truck's is
saved as evidence (``KeepCrop``).

Nothing here stops the lane: a missing engine (models or OpenCV not installed) is reported
once, as ``IdentitySourceChanged`` (the lane then decides without waiting for a plate), in the
log and in health; a crashed engine process is restarted; a lost plate camera is reopened.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edge_agent.backoff import Backoff
from edge_agent.config import PlatesSection
from edge_agent.drivers.camera import open_frame_source
from edge_agent.errors import EdgeAgentError
from edge_agent.lane.actions import KeepCrop
from edge_agent.lane.inputs import IdentitySeen, IdentitySourceChanged
from edge_agent.telemetry.evidence_chunks import chunk_evidence
from edge_agent.vision.engines import as_gray
from edge_agent.vision.evidence import EvidenceStore
from edge_agent.vision.plates import PlateEngineMissing, PlateRead

log = logging.getLogger("edge_agent.plates")

KIND = "plate"
READ_EVERY_S = 0.25
REPEAT_S = 1.0
CROPS_KEPT = 16
CROP_MARGIN = 0.15  # around the engine's box, so the evidence shows the whole plate
RETRY_S = 5.0  # a crashed engine process is started again after this

PlateInput = IdentitySeen | IdentitySourceChanged
Put = Callable[[PlateInput], None]
Frame = tuple[NDArray[np.uint8], float]


class PlateReader(Protocol):
    def read(self, image: NDArray[Any]) -> list[PlateRead]: ...

    def close(self) -> None: ...


def open_engine(spec: str, *, isolate: bool = True) -> PlateReader:
    """The engine ``spec`` names; raises PlateEngineMissing when it cannot run here."""
    if spec.startswith("fake-plates://"):
        from edge_agent.vision.plates_fake import ENGINES

        return ENGINES.lookup(spec).open()
    if isolate:
        from edge_agent.vision.plate_worker import PlateWorker

        return PlateWorker()
    from edge_agent.vision.plates import default_engine

    engine = default_engine()

    class _InProcess:
        def read(self, image: NDArray[Any]) -> list[PlateRead]:
            return engine.read(image)

        def close(self) -> None:
            pass

    return _InProcess()


class PlateSource:
    """One lane's plate reading; ``pump`` reads one frame, ``run`` is the reader thread."""

    def __init__(self, config: PlatesSection, *, isolate: bool = True,
                 opener: Callable[[str], PlateReader] | None = None) -> None:
        self.config = config
        self._opener = opener or (lambda spec: open_engine(spec, isolate=isolate))
        self._engine: PlateReader | None = None
        self.problem: str | None = None  # why plates are not read now
        self.missing = False  # the engine cannot run here: not retried
        self.reads = 0
        self.failures = 0
        self._last_at = -1e18  # the frame last read
        self._last_texts: tuple[str, ...] = ()
        self._last_put = -1e18
        self._crops: OrderedDict[str, NDArray[np.uint8]] = OrderedDict()
        self._lock = threading.Lock()
        self._count = 0

    # -- the engine ----------------------------------------------------------------------------
    def open(self, now: float) -> IdentitySourceChanged | None:
        """Start the engine; the change the lane must hear of (lost, back) or None."""
        if self._engine is not None or self.missing:
            return None
        try:
            self._engine = self._opener(self.config.engine)
        except PlateEngineMissing as exc:
            self.missing = True
            log.error("plate engine %s cannot run: %s; no plate is read, trucks get "
                      "vehicle.plate_unread (%s)", self.config.engine, exc, self.config.unread)
            return self._down(now, f"plate engine missing: {exc}")
        except EdgeAgentError as exc:
            log.error("plate engine %s did not start: %s", self.config.engine, exc)
            return self._down(now, f"plate engine did not start: {exc}")
        return self._up(now)

    def _down(self, now: float, why: str) -> IdentitySourceChanged | None:
        changed = self.problem is None
        self.problem = why
        return IdentitySourceChanged(now, KIND, False, why) if changed else None

    def _up(self, now: float) -> IdentitySourceChanged | None:
        if self.problem is None:
            return None
        self.problem = None
        return IdentitySourceChanged(now, KIND, True)

    # -- one frame -----------------------------------------------------------------------------
    def read(self, image: NDArray[np.uint8], at: float) -> list[PlateInput]:
        """Read the plates of the frame taken at ``at`` (when due); what the lane must hear."""
        if self._engine is None or at < self._last_at + READ_EVERY_S:
            return []
        self._last_at = at
        part = self._region(image)
        try:
            found = self._engine.read(part)
        except PlateEngineMissing as exc:
            self._drop_engine()
            self.missing = True
            return [c for c in (self._down(at, f"plate engine missing: {exc}"),) if c]
        except EdgeAgentError as exc:  # the process crashed or hung: a new one next time
            self.failures += 1
            log.warning("plate engine: %s", exc)
            return []
        texts = tuple(dict.fromkeys(r.text for r in found if r.text))
        if not texts:
            return []
        self.reads += 1
        if texts == self._last_texts and at < self._last_put + REPEAT_S:
            return []
        self._last_texts, self._last_put = texts, at
        best = max(found, key=lambda r: r.confidence)
        crop_ref = self._keep_crop(part, best.box)
        return [IdentitySeen(at, KIND, texts, crop_ref)]

    def _region(self, image: NDArray[np.uint8]) -> NDArray[np.uint8]:
        region = self.config.region
        if region is None:
            return image
        x, y, w, h = region
        return np.ascontiguousarray(image[y:y + h, x:x + w])

    def _keep_crop(self, image: NDArray[np.uint8], box: tuple[int, int, int, int]) -> str:
        x1, y1, x2, y2 = box
        mx, my = int((x2 - x1) * CROP_MARGIN), int((y2 - y1) * CROP_MARGIN)
        rows, cols = image.shape[:2]
        crop = image[max(0, y1 - my):min(rows, y2 + my), max(0, x1 - mx):min(cols, x2 + mx)]
        with self._lock:
            self._count += 1
            ref = f"plate-{self._count}"
            self._crops[ref] = np.array(crop, dtype=np.uint8, copy=True)
            while len(self._crops) > CROPS_KEPT:
                self._crops.popitem(last=False)
        return ref

    def crop(self, ref: str) -> NDArray[np.uint8] | None:
        with self._lock:
            return self._crops.get(ref)

    def save_crop(self, action: KeepCrop, evidence: EvidenceStore,
                  record: Callable[[dict[str, Any]], dict[str, Any] | None]) -> bool:
        """Keep a held truck's plate crop as evidence and queue it; False when it is gone."""
        crop = self.crop(action.crop_ref)
        if crop is None or crop.size == 0:
            log.warning("plate crop %s for %s is no longer kept", action.crop_ref, action.ref)
            return False
        snapshot = evidence.save(as_gray(crop), action.ref)
        for chunk in chunk_evidence(action.ref, snapshot.data, snapshot.media_type):
            if record(chunk) is None:
                log.warning("evidence %s not queued: storage is short", action.ref)
                return False
        return True

    def status(self) -> dict[str, Any]:
        """For health and the status page."""
        return {"ok": self.problem is None and self._engine is not None,
                "engine": self.config.engine, "error": self.problem,
                "source": self.config.source or "camera", "reads": self.reads,
                "failures": self.failures}

    def _drop_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def close(self) -> None:
        self._drop_engine()

    # -- the reader thread ---------------------------------------------------------------------
    def run(self, put: Put, clock: Callable[[], float], stop: threading.Event,
            latest: Callable[[], Frame | None]) -> None:
        """Read until ``stop``: the plate camera's frames, else ``latest()`` (the pass
        camera's newest frame). Never raises for a device: lost, then retried."""
        backoff = Backoff(0.2, RETRY_S)
        while not stop.is_set():
            change = self.open(clock())
            if change is not None:
                put(change)
            if self._engine is None:
                stop.wait(3600.0 if self.missing else backoff.next())
                continue
            try:
                if self.config.source is not None:
                    self._run_camera(put, clock, stop, backoff)
                else:
                    self._run_latest(put, stop, latest)
            except EdgeAgentError as exc:
                change = self._down(clock(), f"plate camera {self.config.source}: {exc}")
                if change is not None:
                    log.warning("plate camera %s lost: %s", self.config.source, exc)
                    put(change)
                stop.wait(backoff.next())

    def _run_camera(self, put: Put, clock: Callable[[], float], stop: threading.Event,
                    backoff: Backoff) -> None:
        assert self.config.source is not None
        source = open_frame_source(self.config.source)
        try:
            while not stop.is_set() and self._engine is not None:
                frame = source.read(0.5)
                if frame is None:
                    continue
                backoff.reset()
                if (change := self._up(clock())) is not None:
                    put(change)
                for item in self.read(frame.image, frame.at):
                    put(item)
        finally:
            source.close()

    def _run_latest(self, put: Put, stop: threading.Event,
                    latest: Callable[[], Frame | None]) -> None:
        while not stop.is_set() and self._engine is not None:
            frame = latest()
            if frame is not None:
                for item in self.read(*frame):
                    put(item)
            stop.wait(READ_EVERY_S / 2)
