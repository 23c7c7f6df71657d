"""An e-seal / RFID gate reader on a pseudo-terminal, speaking the lane's e-seal line protocol.

The test (or the lane world) says which tags are in range (``show``, ``hide``); the simulator
writes one ``$SEAL`` sentence per tag ``rate_hz`` times a second and a ``$HBT`` heartbeat
every ``heartbeat_s``, made by the agent's own encoder, to a raw pty. ``port`` is a stable
symlink to the pty, like a ``/dev/serial/by-id`` link. Faults switch on and off while it runs.

    python -m simulators.eseal --seal ES-00471135 --seal ES-00471136:tampered:-61
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import threading
import time
from collections.abc import Callable

from edge_agent.errors import LocalProtocolError
from edge_agent.protocols.eseal import SealRead, encode_heartbeat, encode_read
from simulators.errors import SimulatorSetupError
from simulators.pty_line import PtySimulator, run_for

FAULTS = {
    "silent": "no output at all (cable cut, reader off)",
    "bad_checksum": "every 5th sentence with a wrong checksum",
    "partial_lines": "every 7th sentence cut short",
    "noise": "random bytes between sentences",
}


class EsealSim(PtySimulator):
    """Writes e-seal reader sentences for the tags in range to a pty until stopped."""

    def __init__(self, *, rate_hz: float = 4.0, heartbeat_s: float = 1.0, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_hz <= 0 or heartbeat_s <= 0:
            raise SimulatorSetupError("rate_hz and heartbeat_s must be positive")
        super().__init__("eseal", "reader", nonblocking=True)
        self._rate = rate_hz
        self._heartbeat_s = heartbeat_s
        self._clock = clock
        self._rng = random.Random(seed)
        self._tags: dict[str, SealRead] = {}
        self._faults: set[str] = set()
        self._lock = threading.Lock()
        self._count = 0
        self.bursts_sent = 0  # ticks whose sentences reached the line

    def show(self, tag_id: str, status: str = "closed", *, rssi_dbm: int | None = -55) -> None:
        """This tag is in range from now on, with this status."""
        read = SealRead(tag_id, status, rssi_dbm)
        try:
            encode_read(read)
        except LocalProtocolError as exc:
            raise SimulatorSetupError(str(exc)) from None
        with self._lock:
            self._tags[tag_id] = read

    def hide(self, tag_id: str) -> None:
        with self._lock:
            self._tags.pop(tag_id, None)

    def set_fault(self, name: str, on: bool = True) -> None:
        if name not in FAULTS:
            raise SimulatorSetupError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}")
        with self._lock:
            (self._faults.add if on else self._faults.discard)(name)

    def sentences_at(self, now: float, *, heartbeat: bool) -> bytes:
        """The bytes of one tick, faults applied (advances the fault counters)."""
        with self._lock:
            tags = list(self._tags.values())
            faults = frozenset(self._faults)
        if "silent" in faults:
            return b""
        sentences = ([encode_heartbeat()] if heartbeat else []) + [encode_read(t) for t in tags]
        out = bytearray()
        for sentence in sentences:
            self._count += 1
            if "bad_checksum" in faults and self._count % 5 == 0:
                sentence = sentence[:-3] + (b"1" if sentence[-3:-2] == b"0" else b"0") \
                    + sentence[-2:]
            if "partial_lines" in faults and self._count % 7 == 0:
                sentence = sentence[: len(sentence) // 2]
            if "noise" in faults:
                out += bytes(self._rng.randrange(256) for _ in range(self._rng.randrange(8)))
            out += sentence
        return bytes(out)

    def _run(self) -> None:
        period = 1.0 / self._rate
        next_at = self._clock()
        next_heartbeat = next_at
        while not self._stop.is_set():
            now = self._clock()
            if now < next_at:
                self._stop.wait(min(next_at - now, period))
                continue
            next_at = max(next_at + period, now)
            heartbeat = now >= next_heartbeat
            if heartbeat:
                next_heartbeat = now + self._heartbeat_s
            data = self.sentences_at(now, heartbeat=heartbeat)
            master = self._pty.master
            if data and master is not None:
                with contextlib.suppress(OSError):  # nobody reading: the line drops it
                    os.write(master, data)
                    self.bursts_sent += 1


def _parse_seal(text: str) -> tuple[str, str, int | None]:
    """``ID[:status[:rssi]]`` from the command line."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise argparse.ArgumentTypeError(f"bad seal {text!r}: expected ID[:status[:rssi]]")
    status = parts[1] if len(parts) > 1 and parts[1] else "closed"
    try:
        rssi = int(parts[2]) if len(parts) > 2 and parts[2] else -55
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad rssi in {text!r}: whole dBm, e.g. -60") from None
    return parts[0], status, rssi


def run_eseal_cli(argv: list[str] | None = None) -> int:
    """A standalone e-seal reader on a pty for bench work."""
    parser = argparse.ArgumentParser(prog="python -m simulators.eseal",
                                     description="Simulated e-seal / RFID reader on a pty.")
    parser.add_argument("--seal", action="append", default=[], type=_parse_seal,
                        metavar="ID[:STATUS[:RSSI]]", help="a tag in range (repeatable)")
    parser.add_argument("--rate", type=float, default=4.0, help="reads per tag per second")
    parser.add_argument("--fault", action="append", default=[], choices=sorted(FAULTS))
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0 = until ^C)")
    args = parser.parse_args(argv)
    try:
        sim = EsealSim(rate_hz=args.rate)
        for tag, status, rssi in args.seal:
            sim.show(tag, status, rssi_dbm=rssi)
    except SimulatorSetupError as exc:
        print(f"simulators.eseal: {exc}", file=sys.stderr)
        return 2
    for fault in args.fault:
        sim.set_fault(fault)
    sim.start()
    print(f"e-seal reader ({len(args.seal)} tags, {args.rate:g} Hz) on {sim.port}", flush=True)
    run_for(args.duration, sim.stop)
    return 0


if __name__ == "__main__":
    sys.exit(run_eseal_cli())
