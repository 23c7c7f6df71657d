"""``lanectl io``: look at the IO board's link without disturbing it.

    lanectl io status --port URL [--json] [--timeout S]   one full state snapshot
    lanectl io watch --port URL [--json] [--seconds S]    every frame as it arrives

Both only listen: the board sends a full snapshot every 200 ms whether or not a host talks
to it, so nothing is sent and nothing on the lane changes. ``--port`` takes any pyserial URL
(/dev/serial/by-id/..., socket://host:port, a simulator's pty).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

from edge_agent.drivers.serialport import LineSettings, open_port
from edge_agent.errors import DeviceError
from edge_agent.protocols import iolink

BAUDRATE = 115200


def message_json(message: iolink.Message) -> dict[str, Any]:
    """A decoded link message as a JSON-ready dict."""
    if isinstance(message, iolink.BoardState):
        return {
            "type": "snapshot" if message.periodic else "state",
            "seq": message.seq,
            "barrier": message.barrier,
            "inputs": dict(message.inputs),
            "outputs": dict(message.outputs),
            "faults": sorted(message.faults),
            "flags": sorted(message.flags),
            "uptime_ms": message.uptime_ms,
            "loop_max_us": message.loop_max_us,
            "last_command": message.last_command,
        }
    if isinstance(message, iolink.HelloAck):
        return {
            "type": "hello_ack",
            "protocol": message.protocol,
            "firmware": message.firmware,
            "manifest": message.manifest,
            "reset_cause": message.reset_cause,
            "uptime_ms": message.uptime_ms,
        }
    if isinstance(message, iolink.Result):
        return {"type": "result", "command": message.command, "result": message.result,
                "barrier": message.barrier}  # fmt: skip
    if isinstance(message, iolink.LinkError):
        return {"type": "error", "kind": message.kind, "detail": message.detail}
    return {"type": "frame", "frame_type": message.type, "seq": message.seq,
            "payload": message.payload.hex()}  # fmt: skip


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
                    state = message_json(message)
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
                record = {"t_s": at} | message_json(message)
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


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("io", help="IO board: state and live link frames")
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
