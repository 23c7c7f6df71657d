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
inputs. Checks (host_tools/io_checks.py): limit switches, red lamp at rest, photo-eye, both
deck beams, the technician key, the buzzer, loops A and B against CLOSE_WHEN_CLEAR, and the
green lamp at the open limit.

A port with nothing on it is an error (exit 2), as is a board that sends nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from edge_agent import defaults
from edge_agent.drivers.serialport import LineSettings
from edge_agent.errors import ConfigError, DeviceError
from edge_agent.protocols import iolink
from edge_agent.protocols.iolink_session import BoardSnapshot
from host_tools.board_session import BoardSession
from host_tools.cli import add_json, command
from host_tools.errors import fail
from host_tools.io_checks import (
    HAND_INPUTS,
    Check,
    Technician,
    check_buzzer,
    check_green,
    check_input,
    check_lamps_at_rest,
    check_limits,
    check_loop_blocks_close,
    watch_output,
)
from host_tools.ports import explain, open_tool_port

BAUDRATE = 115200
PULSE_LIMITS_S = (iolink.PULSE_MS_LIMITS[0] / 1000, iolink.PULSE_MS_LIMITS[1] / 1000)
REFUSED_OUTPUTS = {
    "barrier_open": "it moves the barrier: only OPEN, under the board's interlock, may do that",
    "barrier_close": "it moves the barrier: only CLOSE_WHEN_CLEAR, under the board's interlock, "
    "may do that",
    "light_green": "green means go: only the interlock shows it, at the open limit (S7)",
}


def _fail(command: str, message: str, code: int = 2) -> int:
    return fail(f"io {command}", message, code)


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
    port = open_tool_port(url, LineSettings(baudrate=BAUDRATE), timeout=0.05)
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
    return _fail("status", f"no state frame from {args.port} within {args.timeout:g} s: is "
                 "this the IO board's port, and is the board powered? (it sends one every "
                 "200 ms)")  # fmt: skip


def _watch(args: argparse.Namespace) -> int:
    try:
        port = _open(args.port)
    except DeviceError as exc:
        return _fail("watch", str(exc))
    codec = iolink.LinkCodec()
    start = time.monotonic()
    end = start + args.seconds if args.seconds else None
    frames = hidden = 0
    try:
        while end is None or time.monotonic() < end:
            data = port.read(max(1, port.in_waiting))
            at = round(time.monotonic() - start, 3)
            for message in codec.receive_data(data):
                frames += 1
                if isinstance(message, iolink.BoardState) and message.periodic and not args.all:
                    hidden += 1
                    continue  # the 5 Hz heartbeat; --all shows it too
                record = {"t_s": at} | iolink.message_json(message)
                if args.json:
                    print(json.dumps(record), flush=True)
                else:
                    detail = {k: v for k, v in record.items() if k not in ("t_s", "type")}
                    print(f"{at:9.3f} {record['type']:<9} {json.dumps(detail)}", flush=True)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        return _fail("watch", f"{args.port}: {exc}")
    finally:
        port.close()
    if not frames:
        return _fail("watch", f"no frame from {args.port} in {time.monotonic() - start:.1f} s: "
                     "is this the IO board's port, and is the board powered?", 1)  # fmt: skip
    if hidden == frames:
        print(f"nothing changed; {hidden} periodic snapshots not shown (--all shows them)",
              file=sys.stderr)
    return 0


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
    session = BoardSession(args.port, t_clear_s=args.t_clear,
                           travel_timeout_s=args.travel_timeout)  # fmt: skip
    try:
        start = session.open(args.timeout)
    except (ConfigError, DeviceError) as exc:
        session.close()
        return _fail("test", str(exc))
    tech = Technician(args.step_timeout)
    try:
        hello = session.board.hello
        checks: list[Check] = [check_limits(start), check_lamps_at_rest(start)]
        checks += [check_input(session, tech, *spec) for spec in HAND_INPUTS]
        checks.append(check_buzzer(session))
        opened: list[BoardSnapshot] = []
        for loop in ("loop_a", "loop_b"):
            checks.append(check_loop_blocks_close(session, tech, loop, args.travel_timeout,
                                                  args.t_clear, opened))  # fmt: skip
        checks.append(check_green(opened[0] if opened else None))
    except Exception as exc:  # pyserial raises SerialException when the device goes away
        return _fail("test", f"{explain(args.port, exc)}")
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
        session.close()
        return _fail("set", str(exc))
    try:
        was_on = session.snapshot.outputs[args.output]  # e.g. red on a closed lane
        session.mark()
        result = session.result(session.board.pulse_output(args.output, args.pulse))
        watch = result == "ok" and not was_on
        seen = watch_output(session, args.output, args.pulse + 1.0) if watch else []
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
        return _fail("set", f"{args.output}: {detail}", 1)
    return 0 if ok else 1


def register(subparsers: Any) -> None:
    parser = command(subparsers, "io", "IO board: state, live frames, checks, pulses",
                     "lanectl io status --port /dev/gatelane-io",
                     "lanectl io test --port /dev/gatelane-io")
    commands = parser.add_subparsers(dest="io_command", metavar="ACTION", required=True)
    status = command(commands, "status", "print one full state snapshot (only listens)",
                     "lanectl io status --port /dev/gatelane-io",
                     "lanectl io status --port socket://10.0.0.7:4001 --json")
    _port(status)
    add_json(status)
    status.add_argument("--timeout", type=float, default=2.0,
                        help="seconds to wait for a state frame (default 2)")
    status.set_defaults(func=_status)
    watch = command(commands, "watch", "print every frame from the board (only listens)",
                    "lanectl io watch --port /dev/gatelane-io",
                    "lanectl io watch --port /dev/gatelane-io --seconds 10 --all --json")
    _port(watch)
    add_json(watch, "JSON lines")
    watch.add_argument("--seconds", type=float, default=0.0,
                       help="stop after S seconds (default: until Ctrl-C)")
    watch.add_argument("--all", action="store_true", help="include the periodic snapshots")
    watch.set_defaults(func=_watch)
    test = command(commands, "test", "guided checks: limits, lamps, photo-eye, deck beams, key, "
                   "buzzer, loops vs close (stop the agent first)",
                   "lanectl io test --port /dev/gatelane-io",
                   "lanectl io test --port /dev/gatelane-io --step-timeout 60 --json")
    _port(test)
    add_json(test)
    test.add_argument("--yes", action="store_true", help="start without asking (unattended)")
    test.add_argument("--step-timeout", type=float, default=30.0,
                      help="seconds to wait for each input change (default 30)")  # fmt: skip
    test.add_argument("--t-clear", type=float, default=defaults.T_CLEAR_S,
                      help=f"T_clear sent to the board, s (default {defaults.T_CLEAR_S:g})")
    test.add_argument("--travel-timeout", type=float, default=defaults.TRAVEL_TIMEOUT_S,
                      help="barrier travel limit sent to the board, s "
                      f"(default {defaults.TRAVEL_TIMEOUT_S:g})")  # fmt: skip
    test.add_argument("--timeout", type=float, default=5.0,
                      help="seconds to wait for the board (default 5)")
    test.set_defaults(func=_test)
    pulse = command(commands, "set", "pulse the buzzer or the red lamp (stop the agent first)",
                    "lanectl io set --port /dev/gatelane-io buzzer --pulse 0.5")
    _port(pulse)
    pulse.add_argument("output", choices=iolink.OUTPUT_NAMES, metavar="OUTPUT",
                       help="buzzer or light_red (barrier relays and green are refused)")
    pulse.add_argument("--pulse", type=float, required=True, metavar="SECONDS",
                       help="how long the output stays on (0.01..10)")  # fmt: skip
    add_json(pulse)
    pulse.add_argument("--timeout", type=float, default=5.0,
                       help="seconds to wait for the board (default 5)")
    pulse.set_defaults(func=_set)


def _port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True, metavar="URL",
                        help="the IO board: /dev/serial/by-id/..., /dev/ttyACM0, "
                        "socket://host:port")  # fmt: skip
