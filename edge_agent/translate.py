"""Device output -> lane inputs: the one typed hop between the drivers and the lane machine.

Reader threads put the drivers' own frozen events on the inbox (``DeviceInput``); the main loop
hands each to ``DeviceInputs.translate``, one ``match`` on its type. Weighing readings go through
the weight watcher and its events reach the machine as they are; the IO board's snapshots and
link events, and the plate reader's reads, reach it as they are; a QR read is verified here
(trust list, revocations, time floor) and checked against the pass ledger, and reaches the
machine as ``PassPresented`` carrying the verifier's verdict. Runs on the main loop only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edge_agent import weighing
from edge_agent.catalogue import Code
from edge_agent.config import AgentConfig
from edge_agent.drivers.weighbridge import IndicatorArrival
from edge_agent.errors import DeviceError
from edge_agent.lane.inputs import (
    CameraChanged,
    IdentitySeen,
    IdentitySourceChanged,
    LaneInput,
    PassPresented,
)
from edge_agent.protocols import gp1
from edge_agent.protocols.indicators import FrameError
from edge_agent.protocols.iolink_session import (
    BoardHello,
    BoardSnapshot,
    CommandResult,
    IoEvent,
    LinkLost,
    LinkUp,
)
from edge_agent.vision.pipeline import QrRead
from edge_agent.weighing.indication import IndicationGate
from edge_agent.weighing.scale_health import ScaleHealth

log = logging.getLogger("edge_agent.inputs")

DeviceInput = (
    IoEvent | IndicatorArrival | QrRead | CameraChanged | IdentitySeen | IdentitySourceChanged
)
"""What reader threads put on the inbox: each driver's own typed events."""


@dataclass
class PassAuthority:
    """What a pass is checked against; signed trust and revocation commands replace it."""

    trust: gp1.TrustList
    revoked: frozenset[bytes]


@dataclass
class InputCounts:
    """What translation saw, for the status page and health."""

    frames: int = 0
    frame_errors: int = 0
    last_kg: float | None = None
    qr_reads: int = 0

    def to_json(self) -> dict[str, object]:
        return {"frames": self.frames, "errors": self.frame_errors, "kg": self.last_kg,
                "qr_reads": self.qr_reads}


class DeviceInputs:
    """Driver events -> lane inputs, through the weight watcher and the pass verifier."""

    def __init__(
        self,
        config: AgentConfig,
        passes: PassAuthority,
        *,
        is_used: Callable[[bytes], bool],
        pass_time: Callable[[], float],
    ) -> None:
        """``is_used(cti)`` asks the pass ledger (raising DeviceError when it cannot);
        ``pass_time()`` is the wall time passes are checked at (never before the time floor)."""
        self._config = config
        self.passes = passes
        self._is_used = is_used
        self._pass_time = pass_time
        self.watcher = weighing.WeightWatcher(_scale(config))
        self.scale_health = ScaleHealth(config.weighbridge.e_kg)
        self.indication = IndicationGate(
            config.weighbridge.e_kg, wait_s=config.weighbridge.indication_wait_s)
        self.counts = InputCounts()
        self._beams: tuple[bool, bool] | None = None

    def reconfigure(self, config: AgentConfig) -> None:
        """Take changed remote settings: the watcher's time limits and the pass clock skew."""
        self._config = config
        self.watcher.set_time_limits(
            unstable_timeout_s=config.weighbridge.unstable_timeout_s,
            not_on_deck_s=config.weighbridge.not_on_deck_s,
            frozen_s=config.weighbridge.frozen_s,
        )

    def translate(self, item: DeviceInput) -> list[LaneInput]:
        match item:
            case IndicatorArrival(at=at, item=FrameError() as error):
                self.counts.frame_errors += 1
                self.scale_health.observe_frame(ok=False)
                return list(self.watcher.add_frame_error(at, error.reason))
            case IndicatorArrival(at=at, item=reading):
                assert not isinstance(reading, FrameError)
                self.counts.frames += 1
                self.counts.last_kg = reading.kg
                self.scale_health.observe_frame(ok=True, overload=reading.overload)
                self.indication.add_frame(at, reading)
                return self._judged(self.indication.pass_on(at, self.watcher.add_reading(
                    at, reading.kg, motion=reading.motion, overload=reading.overload,
                    net=reading.net,
                )))
            case BoardSnapshot():
                return [*self._beams_changed(item), item]
            case LinkUp() | LinkLost() | CameraChanged():
                return [item]
            case IdentitySeen() | IdentitySourceChanged():
                return [item]  # read and judged by the plate reader and the lane
            case CommandResult():
                if item.result != "ok":
                    log.warning("IO board refused command seq %s: %s", item.seq, item.result)
                return []
            case BoardHello():
                log.info("IO board firmware %s (manifest %s, reset by %s)",
                         item.firmware, item.manifest, item.reset_cause)
                return []
            case QrRead():
                return [self._present(item)]
        raise TypeError(f"not a device input: {type(item).__name__}")

    def tick(self, now: float) -> list[LaneInput]:
        return self._judged(self.indication.pass_on(now, self.watcher.tick(now)))

    def _judged(self, events: Iterable[weighing.WeighEvent]) -> list[LaneInput]:
        """The watcher's events, followed by the scale's health: a truck that drives onto
        an unfit scale gets ``weight.scale_unhealthy`` right after its TruckOnDeck."""
        out: list[LaneInput] = []
        for event in events:
            self.scale_health.observe(event, noise_kg=self.watcher.noise_kg)
            out.append(event)
            if isinstance(event, weighing.TruckOnDeck):
                report = self.scale_health.report()
                if not report.healthy:
                    out.append(weighing.WeightAbnormality(
                        event.at, Code.WEIGHT_SCALE_UNHEALTHY, "; ".join(report.reasons), ()))
        return out

    def next_deadline(self) -> float | None:
        times = [t for t in (self.watcher.next_deadline(), self.indication.next_deadline())
                 if t is not None]
        return min(times) if times else None

    def _beams_changed(self, snapshot: BoardSnapshot) -> list[LaneInput]:
        beams = (snapshot.input("deck_front", True), snapshot.input("deck_rear", True))
        if beams == self._beams:
            return []
        self._beams = beams
        return list(self.watcher.set_deck_beams(snapshot.at, *beams))

    def _present(self, read: QrRead) -> PassPresented:
        self.counts.qr_reads += 1
        lane = self._config.lane
        verdict = gp1.verify_pass(
            read.text,
            trust=self.passes.trust,
            site=lane.site,
            gate=lane.gate,
            direction=lane.direction,
            now=self._pass_time(),
            skew_s=self._config.passes.skew_s,
            revoked=self.passes.revoked,
        )
        refusal = None
        if verdict.valid and verdict.claims is not None:
            try:
                if self._is_used(verdict.claims.cti):
                    refusal = Code.PASS_ALREADY_USED
            except DeviceError as exc:  # fail closed: a use that cannot be checked holds
                log.error("pass ledger unreadable: %s", exc)
                refusal = Code.LANE_STORAGE_FAULT
        log.info("pass read by %s in %.1f ms: %s", read.engine, read.ms,
                 refusal or verdict.reason or "valid")
        return PassPresented(read.at, verdict, refusal)


def _scale(config: AgentConfig) -> weighing.ScaleConfig:
    return weighing.ScaleConfig(
        max_kg=config.weighbridge.max_kg,
        e_kg=config.weighbridge.e_kg,
        unstable_timeout_s=config.weighbridge.unstable_timeout_s,
        not_on_deck_s=config.weighbridge.not_on_deck_s,
        frozen_s=config.weighbridge.frozen_s,
    )
