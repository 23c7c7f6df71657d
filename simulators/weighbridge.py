"""A weighbridge indicator on a pseudo-terminal, speaking any supported format.

The lane world says what static load stands on the deck (``load_fn(now)``); the simulator adds
the deck's dynamics (:mod:`simulators.weight_dynamics`), rounds to e, encodes each sample with
the agent's own encoder and writes it to a raw pty at ``rate_hz``. Faults can be switched on
and off while it runs. ``port`` is a stable symlink to the current pty, like a
``/dev/serial/by-id`` link, so an "unplug" fault can take the device away and bring a new one
back under the same name.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from edge_agent.errors import LocalProtocolError
from edge_agent.protocols.indicators import (
    POLLED,
    PROTOCOLS,
    IndicatorReading,
    make_encoder,
)
from simulators.errors import SimulatorSetupError
from simulators.pty_line import PtySimulator, run_for
from simulators.weight_dynamics import DeckDynamics

FAULTS = {
    "frozen": "output repeats the value it showed when the fault began",
    "silent": "no output at all (cable cut, indicator off)",
    "unplug": "the device disappears (reads fail) and returns when the fault is cleared",
    "dropped_bytes": "1 % of bytes lost on the line",
    "flipped_bits": "0.1 % of bits flipped on the line",
    "partial_frames": "every 20th frame cut short",
    "swapped_digits": "every 50th frame with two digits swapped (passes the Yaohua XOR)",
    "person": "a person (80 kg) stands on the deck",
    "zero_offset": "mud on the deck: zero reads 5 e high",
    "net_mode": "indicator left in NET mode with a preset tare of 1000 kg: shows load - 1000,"
                " net flag set in every frame (formats that have one)",
    "zero_offset_1000": "zero offset of -1000 kg (zeroed with a load on the deck):"
                        " shows load - 1000, no net flag",
}
PROFILES: dict[str, tuple[str, ...]] = {
    "clean": (),
    "noisy-line": ("dropped_bytes", "flipped_bits"),
    "flaky-cable": ("partial_frames", "dropped_bytes"),
    "cheat": ("person",),
    "stuck": ("frozen",),
    "dirty-deck": ("zero_offset",),
}
PERSON_KG = 80.0
PRESET_TARE_KG = 1000.0
ZERO_OFFSET_1000_KG = -1000.0


class WeighbridgeSim(PtySimulator):
    """Writes indicator frames for ``load_fn(now)`` to a pty until stopped."""

    def __init__(
        self,
        protocol: str = "yaohua-tf0",
        *,
        rate_hz: float = 10,
        load_fn: Callable[[float], float],
        e_kg: float = 20,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        max_kg: float = 60000,
        encoder_options: dict[str, Any] | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise SimulatorSetupError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
        if rate_hz <= 0:
            raise SimulatorSetupError("rate_hz must be positive")
        super().__init__("weighbridge", "indicator")
        self.protocol = protocol
        options = dict(encoder_options or {})
        self._encoder = make_encoder(protocol, **options)
        # In NET mode a Toledo indicator also sends the preset tare in its tare field.
        if protocol == "toledo":
            options.setdefault("tare_kg", PRESET_TARE_KG)
        self._net_encoder = make_encoder(protocol, **options)
        self._rate = rate_hz
        self._load_fn = load_fn
        self._e = e_kg
        self._max = max_kg
        self._clock = clock
        self._rng = np.random.default_rng(seed)
        self._dynamics = DeckDynamics(e_kg, self._rng)
        self._faults: set[str] = set()
        self._lock = threading.Lock()
        self._frozen: bytes | None = None
        self._history: deque[tuple[float, float]] = deque(maxlen=64)
        self._frame_count = 0
        self._continuous = protocol not in POLLED
        self._pending = bytearray()
        self.frames_sent = 0
        self.last_kg: float | None = None

    # ---------------------------------------------------------------- control
    def set_fault(self, name: str, on: bool = True) -> None:
        """Switch a fault from :data:`FAULTS` (or a profile from :data:`PROFILES`) on or off."""
        names = PROFILES.get(name, (name,))
        for fault in names:
            if fault not in FAULTS:
                known = ", ".join(sorted(FAULTS))
                raise SimulatorSetupError(f"unknown fault {fault!r}; known: {known}")
        with self._lock:
            for fault in names:
                if on:
                    self._faults.add(fault)
                else:
                    self._faults.discard(fault)
                    if fault == "frozen":
                        self._frozen = None
            unplugged = "unplug" in self._faults
        if unplugged and self._pty.master is not None:
            self._pty.unplug()
        elif not unplugged and self._pty.master is None and not self._stop.is_set():
            self._pty.plug()

    @property
    def faults(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._faults)

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        period = 1.0 / self._rate
        next_at = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now < next_at:
                self._stop.wait(min(next_at - now, period))
                continue
            next_at += period
            if next_at < now - period:
                next_at = now + period  # fell behind (suspended): do not burst
            # The pty may go away under us (unplug); the next tick sees it.
            with contextlib.suppress(OSError):
                self._tick(now)

    def _sample(self, now: float, faults: frozenset[str]) -> float:
        """The gross weight the indicator shows (before any tare)."""
        static = float(self._load_fn(now))
        if "person" in faults:
            static += PERSON_KG
        zero = 5 * self._e if "zero_offset" in faults else 0.0
        if "zero_offset_1000" in faults:
            zero += ZERO_OFFSET_1000_KG
        self._dynamics.zero_kg = zero
        return self._dynamics.display(now, static)

    def _motion(self, now: float, kg: float) -> bool:
        """The indicator's own rule: moved more than 1 e within the last second."""
        self._history.append((now, kg))
        recent = [v for t, v in self._history if t >= now - 1.0]
        return max(recent) - min(recent) > self._e

    def frame_at(self, now: float) -> bytes | None:
        """The bytes the indicator sends for its sample at ``now``, faults applied (None when
        the display cannot show the value). Advances the simulated deck and fault counters."""
        faults = self.faults
        gross = self._sample(now, faults)
        motion = self._motion(now, gross)
        net = "net_mode" in faults
        kg = gross - PRESET_TARE_KG if net else gross
        self.last_kg = kg
        # Capacity is a property of the deck, so over-range follows the gross load.
        overload = gross > self._max + 9 * self._e
        encoder = self._net_encoder if net else self._encoder
        try:
            frame = encoder.encode(
                IndicatorReading(kg=kg, motion=motion, overload=overload, net=net)
            )
        except LocalProtocolError:
            return None  # more than the display can show: a real indicator shows no number either
        if "frozen" in faults:
            if self._frozen is None:
                self._frozen = frame
            frame = self._frozen
        self._frame_count += 1
        if "swapped_digits" in faults and self._frame_count % 50 == 0:
            frame = _swap_frame_digits(frame)
        if "partial_frames" in faults and self._frame_count % 20 == 0:
            frame = frame[: len(frame) // 2]
        return self._corrupt(frame, faults)

    def _tick(self, now: float) -> None:
        frame = self.frame_at(now)
        master = self._pty.master
        if frame is None or master is None or "silent" in self.faults:
            return
        if not self._continuous and not self._polled(master):
            return
        os.write(master, frame)
        self.frames_sent += 1

    def _polled(self, master: int) -> bool:
        """SMA: answer only after a ``W`` request (``R`` switches to continuous output)."""
        while select.select([master], [], [], 0)[0]:
            chunk = os.read(master, 256)
            if not chunk:
                break
            self._pending += chunk
        asked = False
        while b"\r" in self._pending:
            line, _, rest = bytes(self._pending).partition(b"\r")
            self._pending = bytearray(rest)
            command = line.strip(b"\n")
            if command == b"W":
                asked = True
            elif command == b"R":
                self._continuous = True
            elif command not in (b"Z", b"T"):
                os.write(master, b"\n?\r")
        return asked

    def _corrupt(self, frame: bytes, faults: frozenset[str]) -> bytes:
        if "dropped_bytes" in faults:
            keep = self._rng.random(len(frame)) >= 0.01
            frame = bytes(b for b, k in zip(frame, keep, strict=True) if k)
        if "flipped_bits" in faults:
            data = bytearray(frame)
            for i in range(len(data)):
                for bit in range(8):
                    if self._rng.random() < 0.001:
                        data[i] ^= 1 << bit
            frame = bytes(data)
        return frame


def _swap_frame_digits(frame: bytes) -> bytes:
    """Swap the first two different digits of the weight field (the XOR stays valid)."""
    data = bytearray(frame)
    positions = [i for i, b in enumerate(data) if 0x31 <= b <= 0x39 or (b == 0x30 and i > 2)]
    positions = [i for i in positions if 2 <= i <= 7] or positions
    for a in positions:
        for b in positions:
            if b > a and data[a] != data[b]:
                data[a], data[b] = data[b], data[a]
                return bytes(data)
    return frame


def run_weighbridge_cli(argv: list[str] | None = None) -> int:
    """``lane-sim weighbridge``: a standalone indicator for bench work with ``lanectl weigh``."""
    parser = argparse.ArgumentParser(
        prog="lane-sim weighbridge", description="Simulated weighbridge indicator on a pty."
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="yaohua-tf0")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second")
    parser.add_argument("--e-kg", type=float, default=20.0)
    parser.add_argument("--load-kg", type=float, default=0.0, help="static load on the deck")
    parser.add_argument("--truck-every", type=float, default=0.0, metavar="S",
                        help="drive a truck of --load-kg on and off every S seconds")
    parser.add_argument("--fault", action="append", default=[],
                        choices=sorted(FAULTS) + sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0 = until ^C)")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def load(now: float) -> float:
        if args.truck_every <= 0:
            return float(args.load_kg)
        phase = (now - started) % args.truck_every
        on = min(1.0, max(0.0, (phase - 2.0) / 3.0)) if phase < args.truck_every / 2 else 0.0
        return float(args.load_kg) * on

    sim = WeighbridgeSim(args.protocol, rate_hz=args.rate, load_fn=load, e_kg=args.e_kg,
                         seed=args.seed)
    sim.start()
    for fault in args.fault:
        sim.set_fault(fault)
    print(f"weighbridge ({args.protocol}, {args.rate:g} Hz) on {sim.port}", flush=True)
    run_for(args.duration, sim.stop)
    return 0


if __name__ == "__main__":
    sys.exit(run_weighbridge_cli())
