"""``lanectl io``: look at the IO board's link, run the guided checks, pulse a lamp or buzzer.

    lanectl io status --port URL [--json] [--timeout S]   one full state snapshot
    lanectl io watch --port URL [--json] [--seconds S]    every frame as it arrives
    lanectl io test --port URL [--yes] [--json]           guided sensor and interlock checks
    lanectl io set --port URL OUTPUT --pulse S [--json]   sound the buzzer / light red for S s

``status`` and ``watch`` only listen (the board sends a snapshot every 200 ms anyway): nothing
on the lane changes. ``test`` and ``set`` act as the board's host (handshake, heartbeats): stop
the edge agent first (it holds the port); afterwards the board shows red until a host talks
again. ``--port`` takes any pyserial URL (/dev/serial/by-id/..., socket://host:port, a pty).

``io test`` needs the barrier closed at rest and a technician at the lane. Prompts go to
stderr as ``>>> INPUT -> on|off: what to do``, and each step waits for that input to change,
so with ``--yes`` (or without a terminal) it runs unattended while something else drives the
inputs. Checks: the limit switches agree with the barrier state; blocking the photo-eye is
seen in the board's state; with loop A (then B) occupied the barrier opens, CLOSE_WHEN_CLEAR is
answered ``pending`` and the barrier stays open, and it closes once the loop is clear.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from edge_agent import defaults
from edge_agent.drivers.ioboard import BoardEvents, IoBoard
from edge_agent.drivers.serialport import LineSettings, open_port
from edge_agent.errors import ConfigError, DeviceError, DeviceTimeout
from edge_agent.protocols import iolink
from edge_agent.protocols.iolink_session import BoardSnapshot, CommandResult, IoEvent

BAUDRATE = 115200
PULSE_LIMITS_S = (iolink.PULSE_MS_LIMITS[0] / 1000, iolink.PULSE_MS_LIMITS[1] / 1000)
REFUSED_OUTPUTS = {
    "barrier_open": "it moves the barrier: only OPEN, under the board's interlock, may do that",
    "barrier_close": "it moves the barrier: only CLOSE_WHEN_CLEAR, under the board's interlock, "
    "may do that",
    "light_green": "green means go: only the interlock shows it, at the open limit (S7)",
}


def _fail(command: str, message: str) -> int:
    print(f"lanectl io {command}: {message}", file=sys.stderr)
    return 2


def _text(state: dict[str, Any]) -> str:
    on = [name for name, value in state["inputs"].items() if value]
    out = [name for name, value in state["outputs"].items() if value]
    lines = [
        f"barrier   {state['barrier']}",
        f"inputs    {', '.join(on) or '-'}",
        f"outputs   {', '.join(out) or '-'}",
        f"faults    {', '.join(state['faults']) or '-'}",
        f"flags     {', '.join(state['flags']) or '-'}",
        f"uptime    {state['uptime_ms'] / 1000:.1f} s, worst loop {state['loop_max_us']} us",
    ]
    return "\n".join(lines)


def _open(url: str) -> Any:
    port = open_port(url, LineSettings(baudrate=BAUDRATE), timeout=0.05)
    with contextlib.suppress(Exception):  # old frames queued while nobody listened
        port.reset_input_buffer()
    return port


def _status(args: argparse.Namespace) -> int:
    try:
        port = _open(args.port)
    except DeviceError as exc:
        return _fail("status", str(exc))
    codec = iolink.LinkCodec()
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            for message in codec.receive_data(port.read(max(1, port.in_waiting))):
                if isinstance(message, iolink.BoardState):
                    state = iolink.message_json(message)
                    state["link_errors"] = codec.errors
                    print(json.dumps(state) if args.json else _text(state))
                    return 0
    except Exception as exc:  # pyserial raises SerialException when the device goes away
        return _fail("status", f"{args.port}: {exc}")
    finally:
        port.close()
    return _fail("status", f"no state frame from {args.port} within {args.timeout} s")


def _watch(args: argparse.Namespace) -> int:
    try:
        port = _open(args.port)
    except DeviceError as exc:
        return _fail("watch", str(exc))
    codec = iolink.LinkCodec()
    start = time.monotonic()
    end = start + args.seconds if args.seconds else None
    try:
        while end is None or time.monotonic() < end:
            data = port.read(max(1, port.in_waiting))
            at = round(time.monotonic() - start, 3)
            for message in codec.receive_data(data):
                if isinstance(message, iolink.BoardState) and message.periodic and not args.all:
                    continue  # the 5 Hz heartbeat; --all shows it too
                record = {"t_s": at} | iolink.message_json(message)
                if args.json:
                    print(json.dumps(record), flush=True)
                else:
                    detail = {k: v for k, v in record.items() if k not in ("t_s", "type")}
                    print(f"{at:9.3f} {record['type']:<9} {json.dumps(detail)}", flush=True)
    except Exception as exc:
        return _fail("watch", f"{args.port}: {exc}")
    finally:
        port.close()
    return 0


# ---- talking to the board as its host ----
class BoardSession:
    """The IO-board driver with its events kept in order, for commands that act on the board
    for a while (io test, io set, fw deploy). It holds the port: stop the edge agent first."""

    def __init__(self, url: str, *, t_clear_s: float = defaults.T_CLEAR_S,
                 travel_timeout_s: float = defaults.TRAVEL_TIMEOUT_S) -> None:  # fmt: skip
        self.board = IoBoard(url, t_clear_s=t_clear_s, travel_timeout_s=travel_timeout_s)
        self.stream = BoardEvents(self.board)

    def open(self, timeout: float) -> BoardSnapshot:
        """Handshake, then the first state in which the board follows this host.

        Raises:
            DeviceError: the port cannot be opened or the board does not answer.
        """
        self.board.open(timeout)
        snap = self.wait(
            lambda e: isinstance(e, BoardSnapshot) and "handshake" in e.flags
            and e.barrier not in ("boot", "wait_host"),
            timeout,
        )  # fmt: skip
        if not isinstance(snap, BoardSnapshot):
            raise DeviceTimeout(f"no state from the board on {self.board.url!r} after HELLO")
        return snap

    @property
    def snapshot(self) -> BoardSnapshot:
        assert self.board.snapshot is not None, "open() first"
        return self.board.snapshot

    def mark(self) -> None:
        """Forget what came so far: wait() then looks only at what happens next."""
        self.stream.mark()

    def wait(self, predicate: Callable[[IoEvent], bool], timeout: float) -> IoEvent | None:
        """The next event matching ``predicate`` within ``timeout`` s (heartbeats go on)."""
        return self.stream.next(predicate, timeout)

    def pump(self, seconds: float) -> None:
        self.stream.pump(seconds)

    def result(self, seq: int, timeout: float = 3.0) -> str:
        event = self.wait(lambda e: isinstance(e, CommandResult) and e.seq == seq, timeout)
        return event.result if isinstance(event, CommandResult) else "no_answer"

    def barrier(self, state: str, timeout: float) -> BoardSnapshot | None:
        if self.snapshot.barrier == state:
            return self.snapshot
        event = self.wait(lambda e: isinstance(e, BoardSnapshot) and e.barrier == state, timeout)
        return event if isinstance(event, BoardSnapshot) else None

    def close(self) -> None:
        self.board.close()


# ---- io test ----
@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    evidence: str


class Technician:
    """Prompts on stderr; the input change itself is the answer."""

    def __init__(self, step_timeout_s: float) -> None:
        self.step_timeout_s = step_timeout_s

    def ask(self, name: str, value: bool, what: str) -> None:
        state = "on" if value else "off"
        print(f">>> {name} -> {state}: {what} (waiting up to {self.step_timeout_s:g} s)",
              file=sys.stderr, flush=True)  # fmt: skip


def _input_after_prompt(
    session: BoardSession, tech: Technician, name: str, value: bool, what: str
) -> float | None:
    """Prompt, then seconds until the input reads ``value`` (None: it did not change)."""
    session.mark()
    asked = time.monotonic()
    tech.ask(name, value, what)
    if session.snapshot.inputs[name] == value:
        return 0.0
    event = session.wait(  # the board reports each change in a state of its own
        lambda e: isinstance(e, BoardSnapshot) and e.inputs[name] == value, tech.step_timeout_s
    )
    return None if event is None else max(0.0, event.at - asked)


def check_limits(snap: BoardSnapshot) -> Check:
    lim_open, lim_closed = snap.inputs["limit_open"], snap.inputs["limit_closed"]
    seen = f"limit_open={int(lim_open)} limit_closed={int(lim_closed)}, barrier {snap.barrier}"
    if lim_open == lim_closed:
        return Check("limit_switches", False, f"{seen}: exactly one limit must be active")
    expected = {"closed": (False, True), "open": (True, False)}.get(snap.barrier)
    if expected is None:
        return Check("limit_switches", False, f"{seen}: the barrier should rest at a limit")
    if (lim_open, lim_closed) != expected:
        return Check("limit_switches", False, f"{seen}: the switches contradict the state")
    return Check("limit_switches", True, f"{seen}: consistent")


def check_photo_eye(session: BoardSession, tech: Technician) -> Check:
    name, wait_s = "photo_eye", tech.step_timeout_s
    if session.snapshot.inputs[name]:
        cleared = _input_after_prompt(session, tech, name, False, "clear the photo-eye beam")
        if cleared is None:
            return Check(name, False, f"reads blocked and stayed blocked for {wait_s:g} s: "
                         "stuck blocked, misaligned or miswired")  # fmt: skip
    on = _input_after_prompt(session, tech, name, True, "block the photo-eye beam")
    if on is None:
        return Check(name, False, f"no change within {wait_s:g} s of the prompt: the "
                     "input stayed clear (stuck clear, miswired or not powered)")  # fmt: skip
    off = _input_after_prompt(session, tech, name, False, "clear the beam again")
    if off is None:
        return Check(name, False, f"blocked seen after {on:.2f} s, then it stayed blocked for "
                     f"{wait_s:g} s")  # fmt: skip
    return Check(name, True, f"photo_eye read blocked {on:.2f} s after the prompt, "
                 f"clear {off:.2f} s after the next")  # fmt: skip


def check_loop_blocks_close(
    session: BoardSession, tech: Technician, loop: str, travel_s: float, t_clear_s: float
) -> Check:
    name = f"{loop}_blocks_close"
    label = "loop A (before the barrier)" if loop == "loop_a" else "loop B (under/after it)"
    snap = session.snapshot
    if snap.barrier != "closed" or snap.faults:
        return Check(name, False, f"not run: needs the barrier closed at rest without faults "
                     f"(barrier {snap.barrier}, faults {sorted(snap.faults) or '-'})")  # fmt: skip
    if snap.inputs[loop]:
        return Check(name, False, f"not run: {loop} reads occupied before the test (stuck "
                     "occupied, or a vehicle on it); the barrier was not opened")  # fmt: skip
    on = _input_after_prompt(session, tech, loop, True,
                             f"occupy {label}; the barrier will then open")  # fmt: skip
    if on is None:
        return Check(name, False, f"{loop} stayed clear for {tech.step_timeout_s:g} s after the "
                     "prompt (stuck clear, miswired, detector off); the barrier was not opened")
    open_result = session.result(session.board.open_barrier(valid_for_s=2.0))
    if open_result != "ok":
        return Check(name, False, f"{loop} on after {on:.2f} s; OPEN answered {open_result}")
    if session.barrier("open", travel_s + 2.0) is None:
        return _give_back(session, tech, loop, Check(name, False, f"OPEN ok but the barrier "
                          f"did not report open within {travel_s + 2:g} s"), travel_s, t_clear_s)
    close_result = session.result(session.board.close_when_clear(valid_for_s=2.0))
    session.mark()
    held_s = t_clear_s + 0.5
    moved = session.wait(lambda e: isinstance(e, BoardSnapshot) and e.barrier != "open", held_s)
    evidence = (f"{loop} on after {on:.2f} s; opened; CLOSE_WHEN_CLEAR answered {close_result}; "
                + ("the barrier stayed open" if moved is None else
                   f"the barrier went {moved.barrier if isinstance(moved, BoardSnapshot) else '?'}")
                + f" for {held_s:g} s")  # fmt: skip
    if close_result != "pending" or moved is not None:
        return _give_back(session, tech, loop, Check(name, False, evidence), travel_s, t_clear_s)
    off = _input_after_prompt(session, tech, loop, False, f"clear {label}; the barrier will close")
    if off is None:
        return Check(name, False, f"{evidence}; then {loop} stayed occupied: the barrier is left "
                     "open (it never closes on an occupied loop)")  # fmt: skip
    cleared_at = time.monotonic()
    if session.barrier("closed", t_clear_s + travel_s + 2.0) is None:
        return Check(name, False, f"{evidence}; {loop} cleared but the barrier did not close "
                     f"(now {session.snapshot.barrier})")  # fmt: skip
    took = time.monotonic() - cleared_at
    return Check(name, True, f"{evidence}; closed {took:.2f} s after {loop} cleared")


def _give_back(
    session: BoardSession, tech: Technician, loop: str, failed: Check, travel_s: float,
    t_clear_s: float,
) -> Check:
    """After a failed step with the barrier up: clear the loop and ask the board to close."""
    if session.snapshot.inputs[loop]:
        _input_after_prompt(session, tech, loop, False, "clear the loop; the barrier will close")
    session.result(session.board.close_when_clear(valid_for_s=2.0))
    if session.barrier("closed", t_clear_s + travel_s + 2.0) is None:
        return Check(failed.name, False, failed.evidence + "; the barrier was left "
                     + session.snapshot.barrier)  # fmt: skip
    return failed


def _confirm(args: argparse.Namespace) -> bool:
    if args.yes or not sys.stdin.isatty():
        return True
    print("The barrier will open and close during the loop checks: keep people clear of the "
          "arm. Press Enter to start, Ctrl-C to stop.", file=sys.stderr, flush=True)  # fmt: skip
    try:
        input()
    except EOFError:
        return False
    return True


def _test(args: argparse.Namespace) -> int:
    if not _confirm(args):
        return _fail("test", "not confirmed")
    try:
        session = BoardSession(args.port, t_clear_s=args.t_clear,
                               travel_timeout_s=args.travel_timeout)  # fmt: skip
        start = session.open(args.timeout)
    except (ConfigError, DeviceError) as exc:
        return _fail("test", str(exc))
    tech = Technician(args.step_timeout)
    try:
        hello = session.board.hello
        checks = [check_limits(start), check_photo_eye(session, tech)]
        for loop in ("loop_a", "loop_b"):
            checks.append(check_loop_blocks_close(session, tech, loop, args.travel_timeout,
                                                  args.t_clear))  # fmt: skip
    except Exception as exc:  # pyserial raises SerialException when the device goes away
        return _fail("test", f"{args.port}: {exc}")
    finally:
        session.close()
    ok = all(c.ok for c in checks)
    report = {"port": args.port, "ok": ok, "checks": [asdict(c) for c in checks],
              "board": {"version": hello.firmware if hello else None,
                        "manifest": hello.manifest if hello else None}}  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        for c in checks:
            print(f"{'PASS' if c.ok else 'FAIL'}  {c.name:<20} {c.evidence}")
        failed = sum(not c.ok for c in checks)
        print("result: " + ("PASS" if ok else f"FAIL ({failed} of {len(checks)} checks)"))
    return 0 if ok else 1


# ---- io set ----
def _watch_output(session: BoardSession, name: str, seconds: float) -> list[tuple[float, bool]]:
    """Changes of output ``name`` in the board's state frames, until it went on and off."""
    changes: list[tuple[float, bool]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(changes) < 2:
        event = session.wait(lambda e: isinstance(e, BoardSnapshot), end - time.monotonic())
        if isinstance(event, BoardSnapshot):
            value = event.outputs[name]
            if value != (changes[-1][1] if changes else False):
                changes.append((event.at, value))
    return changes


def _set(args: argparse.Namespace) -> int:
    low, high = PULSE_LIMITS_S
    if args.output in REFUSED_OUTPUTS:
        return _fail("set", f"{args.output} is not pulsed by hand: {REFUSED_OUTPUTS[args.output]}")
    if not low <= args.pulse <= high:
        return _fail("set", f"--pulse {args.pulse:g}: the board accepts {low:g}..{high:g} s")
    session = BoardSession(args.port)
    try:
        session.open(args.timeout)
    except DeviceError as exc:
        return _fail("set", str(exc))
    try:
        was_on = session.snapshot.outputs[args.output]  # e.g. red on a closed lane
        session.mark()
        result = session.result(session.board.pulse_output(args.output, args.pulse))
        watch = result == "ok" and not was_on
        seen = _watch_output(session, args.output, args.pulse + 1.0) if watch else []
        barrier = session.snapshot.barrier
    except Exception as exc:  # pyserial raises SerialException when the device goes away
        return _fail("set", f"{args.port}: {exc}")
    finally:
        session.close()
    on_for = seen[1][0] - seen[0][0] if len(seen) == 2 else None
    ok = result == "ok" and (was_on or on_for is not None)
    report = {"port": args.port, "output": args.output, "pulse_s": args.pulse, "result": result,
              "barrier": barrier, "already_on": was_on, "seen_on": bool(seen),
              "seen_off": len(seen) == 2,
              "on_for_s": None if on_for is None else round(on_for, 3)}  # fmt: skip
    if args.json:
        print(json.dumps(report))
    elif ok:
        print(f"{args.output} " + ("was on already (the interlock shows it)" if was_on else
              f"on for {on_for:.2f} s (asked {args.pulse:g} s)") + f", barrier {barrier}")
    else:
        why = {"not_ready": "the board is not ready (booting, maintenance or no link)",
               "fault": "the board is in fault: clear it first",
               "bad_request": "the board refused this output or duration"}.get(result, result)
        detail = why if result != "ok" else "the board did not report the output going on and off"
        print(f"lanectl io set: {args.output}: {detail}", file=sys.stderr)
    return 0 if ok else 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("io", help="IO board: state, live frames, checks, pulses")
    commands = parser.add_subparsers(dest="io_command", metavar="ACTION", required=True)
    status = commands.add_parser("status", help="print one full state snapshot")
    status.add_argument("--port", required=True, help="pyserial URL of the IO board")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument("--timeout", type=float, default=2.0, help="seconds to wait")
    status.set_defaults(func=_status)
    watch = commands.add_parser("watch", help="print every frame from the board")
    watch.add_argument("--port", required=True, help="pyserial URL of the IO board")
    watch.add_argument("--json", action="store_true", help="JSON lines")
    watch.add_argument("--seconds", type=float, default=0.0, help="stop after S seconds")
    watch.add_argument("--all", action="store_true", help="include the periodic snapshots")
    watch.set_defaults(func=_watch)
    test = commands.add_parser("test", help="guided checks: limits, photo-eye, loops vs close")
    test.add_argument("--port", required=True, help="pyserial URL of the IO board")
    test.add_argument("--json", action="store_true", help="one JSON object")
    test.add_argument("--yes", action="store_true", help="start without asking (unattended)")
    test.add_argument("--step-timeout", type=float, default=30.0,
                      help="seconds to wait for each input change (default 30)")  # fmt: skip
    test.add_argument("--t-clear", type=float, default=defaults.T_CLEAR_S,
                      help=f"T_clear sent to the board, s (default {defaults.T_CLEAR_S:g})")
    test.add_argument("--travel-timeout", type=float, default=defaults.TRAVEL_TIMEOUT_S,
                      help="barrier travel limit sent to the board, s "
                      f"(default {defaults.TRAVEL_TIMEOUT_S:g})")  # fmt: skip
    test.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the board")
    test.set_defaults(func=_test)
    pulse = commands.add_parser("set", help="pulse the buzzer or the red lamp")
    pulse.add_argument("--port", required=True, help="pyserial URL of the IO board")
    pulse.add_argument("output", choices=iolink.OUTPUT_NAMES, metavar="OUTPUT",
                       help="buzzer or light_red (barrier relays and green are refused)")
    pulse.add_argument("--pulse", type=float, required=True, metavar="SECONDS",
                       help="how long the output stays on (0.01..10)")  # fmt: skip
    pulse.add_argument("--json", action="store_true", help="one JSON object")
    pulse.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the board")
    pulse.set_defaults(func=_set)
