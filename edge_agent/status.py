"""The agent's live status: what ``GET /status`` (``lanectl status``) and the lane page show.

The main loop hands the board what it already has, a few fields at a time and no I/O: the lane's
state and transit a few times a second, each device input (weights go into a two-minute ring,
the board's hello gives the firmware version), each event it publishes (decisions with their
reasons and latency, abnormalities by code). The devices' part (IO link, weighbridge, camera,
telemetry with the outbox figures) and the camera frame are read when a request comes, on the
server's thread, so the decision loop never waits for them.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent import __version__
from edge_agent.catalogue import EventType
from edge_agent.config import AgentConfig
from edge_agent.drivers.weighbridge import IndicatorArrival
from edge_agent.lane.actions import Publish
from edge_agent.protocols.indicators import FrameError
from edge_agent.protocols.iolink_session import BoardHello
from edge_agent.web.frames import FrameCache, FrameSource
from edge_agent.web.metrics import LaneMetrics

if TYPE_CHECKING:
    from edge_agent.lane.machine import LaneMachine
    from edge_agent.translate import DeviceInput
    from edge_agent.vision.pipeline import QrPipeline

TRACE_S = 120.0  # the weight trace the page plots
TRACE_MAX = 6000  # samples kept at most (50 Hz for two minutes), whatever the indicator's rate
DECISIONS_KEPT = 12
INDICATOR_SILENT_S = 2.0  # no reading for this long: the page shows the indicator as down
# The devices are read at most this often however many pages poll: reading them takes the
# outbox's lock, which the decision loop needs to store its records.
DEVICES_EVERY_S = 1.0


def no_frame() -> None:
    return None


class StatusBoard:
    """A thread-safe snapshot of the lane that the main loop updates and the server reads."""

    def __init__(
        self,
        config: AgentConfig,
        devices: Callable[[], dict[str, Any]] = dict,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        frame: FrameSource = no_frame,
    ) -> None:
        self._devices = devices
        self._clock, self._wall_clock = clock, wall_clock
        self._lock = threading.Lock()
        self._devices_lock = threading.Lock()
        self._devices_read: tuple[float, dict[str, Any]] | None = None
        self._started = wall_clock()
        self._doc: dict[str, Any] = {
            "site": config.lane.site,
            "lane": config.lane.lane,
            "agent_version": __version__,
            "state": "starting",
            "mode": None,
        }
        self._versions: dict[str, Any] = {
            "agent": __version__, "firmware": None, "firmware_manifest": None,
            "config_sha256": config_hash(config),
        }  # fmt: skip
        self._recent: deque[dict[str, Any]] = deque(maxlen=20)
        self._decisions: deque[dict[str, Any]] = deque(maxlen=DECISIONS_KEPT)
        self._weights: deque[tuple[int, float, float, bool | None]] = deque(maxlen=TRACE_MAX)
        self._weight_seq = 0
        self.frames = FrameCache(frame, clock)
        self.metrics = LaneMetrics(self.document)

    # -- from the main loop ----------------------------------------------------------------
    def update_lane(self, machine: LaneMachine) -> None:
        transit = machine.transit
        lane = {
            "state": machine.state.value,
            "transit": None if transit is None else transit.to_status(),
        }
        with self._lock:
            self._doc.update(lane)

    def config_loaded(self, config: AgentConfig) -> None:
        """The config file was read again (a reload): its hash on the page follows."""
        digest = config_hash(config)
        with self._lock:
            self._versions["config_sha256"] = digest

    def set_mode(self, mode: Mapping[str, Any]) -> None:
        """The lane's mode and its ``by``/``reason``/``since``, on every change."""
        with self._lock:
            self._doc["mode"] = dict(mode)

    def observe(self, item: DeviceInput) -> None:
        """A device input as the main loop took it: weights and the board's hello are kept."""
        match item:
            case IndicatorArrival(item=FrameError()):
                return
            case IndicatorArrival(at=at, item=reading):
                assert not isinstance(reading, FrameError)
                if reading.kg is None or not math.isfinite(reading.kg):
                    return  # overload shown as dashes: nothing to plot
                stable = None if reading.motion is None else not reading.motion
                with self._lock:
                    self._weight_seq += 1
                    self._weights.append((self._weight_seq, at, reading.kg, stable))
                    while self._weights and self._weights[0][1] < at - TRACE_S:
                        self._weights.popleft()
            case BoardHello():
                with self._lock:
                    self._versions["firmware"] = item.firmware
                    self._versions["firmware_manifest"] = item.manifest
            case _:
                return

    def record_publish(self, action: Publish, now: float) -> None:
        """An event the machine asked for, at the moment it is executed (after any OPEN)."""
        data = action.data
        if action.type == EventType.ABNORMALITY:
            self.metrics.abnormality(str(data.get("code", "unknown")))
        if action.type != EventType.DECISION:
            return
        decision = str(data.get("decision", "?"))
        input_at = data.get("input_at_mono")
        latency = None
        # The input's time is rounded to the microsecond: a same-instant decision may look a
        # hair early. Anything earlier is another clock's time and is not a latency.
        if isinstance(input_at, int | float) and now - input_at > -1e-3:
            latency = max(0.0, now - input_at)
            self.metrics.decision(decision, latency)
        brief = {
            "transit_id": action.transit_id,
            "decision": decision,
            "reasons": list(data.get("reasons") or []),
            "detail": data.get("detail"),
            "by": data.get("by"),
            "weight_kg": data.get("weight_kg"),
            "declared_gross_kg": data.get("declared_gross_kg"),
            "release_no": data.get("release_no"),
            "latency_ms": None if latency is None else round(latency * 1000, 3),
            "at": self._wall_clock(),
        }
        with self._lock:
            self._decisions.append(brief)

    def record_event(self, envelope: dict[str, Any]) -> None:
        brief = {k: envelope.get(k) for k in ("seq", "type", "occurred_at", "transit_id")}
        with self._lock:
            self._recent.append(brief)

    # -- for the server ----------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        """``GET /status``: the lane, its devices and the recent events."""
        with self._lock:
            doc = dict(self._doc)
            doc["recent_events"] = list(self._recent)
            doc["versions"] = dict(self._versions)
            last = self._weights[-1][1] if self._weights else None
        doc["devices"] = self._read_devices()
        now = self._clock()
        doc["indicator_age_s"] = None if last is None else round(now - last, 3)
        doc["indicator_up"] = last is not None and now - last < INDICATOR_SILENT_S
        doc["uptime_s"] = round(self._wall_clock() - self._started, 1)
        return doc

    def _read_devices(self) -> dict[str, Any]:
        with self._devices_lock:
            now, read = self._clock(), self._devices_read
            if read is not None and now - read[0] < DEVICES_EVERY_S:
                return read[1]
            try:
                devices = self._devices()
            except Exception as exc:  # a device being reopened must not break the page
                devices = {"error": repr(exc)}
            self._devices_read = (now, devices)
            return devices

    def live(self, after: int = 0) -> dict[str, Any]:
        """The page's poll: the status document, weight samples newer than ``after`` (their
        times on the agent's clock, with ``now`` on the same clock), decisions and the frame."""
        doc = self.document()
        with self._lock:
            samples = [[seq, round(at, 3), kg, stable]
                       for seq, at, kg, stable in self._weights if seq > after]
            doc["decisions"] = list(reversed(self._decisions))
            doc["weights"] = {"samples": samples, "last_seq": self._weight_seq,
                              "window_s": TRACE_S}
        doc["now"] = round(self._clock(), 3)
        doc["frame"] = self.frames.meta()
        return doc

    def decisions(self) -> list[dict[str, Any]]:
        """The last decisions, newest first."""
        with self._lock:
            return list(reversed(self._decisions))


def config_hash(config: AgentConfig) -> str | None:
    """The first 16 hex digits of the SHA-256 of the lane's config file, as loaded."""
    if config.source is None:
        return None
    try:
        return hashlib.sha256(config.source.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def host_status(state_dir: Path, outbox: Mapping[str, Any], wall_now: float) -> dict[str, Any]:
    """The state directory's free space and the outbox backlog (from ``Outbox.stats()``)."""
    try:
        free: int | None = shutil.disk_usage(state_dir).free
    except OSError:
        free = None
    oldest = outbox.get("oldest_ms")
    return {
        "disk_free_bytes": free,
        "outbox_events": outbox.get("events"),
        "outbox_oldest_age_s": None if oldest is None
        else round(max(0.0, wall_now - oldest / 1000), 3),
    }


def camera_counts(pipeline: QrPipeline) -> dict[str, int]:
    """Frames the camera loop processed and decoded, and decoder worker failures."""
    return {"frames": pipeline.frames, "decoded_frames": pipeline.decoded_frames,
            "decode_failures": pipeline.decoder.failures}
