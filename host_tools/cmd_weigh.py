"""``lanectl weigh``: read, replay and check a weighbridge indicator.

    lanectl weigh decode --protocol P [FILE|-] [--hex]      one JSON object per frame or error
    lanectl weigh analyze TRACE.csv [--max-kg N] [--e-kg N] [--declared-kg N] [--tolerance-kg N]
    lanectl weigh detect --port URL [--seconds S]           which baud, line and format it speaks
    lanectl weigh monitor --port URL --protocol P [--line 8N1] [--baud N] [--record TRACE.csv]
    lanectl weigh verify --port URL --protocol P --reference-kg N   a test weight against 1 e
    lanectl weigh plot TRACE.csv --out FILE.png             the trace and what the watcher saw

Text for people by default, ``--json`` for JSON (lines for the streams). ``decode`` never
crashes on bad bytes: garbage becomes error records. Bad arguments, files or ports give a
one-line message and exit code 2; ``monitor`` and ``verify`` exit 1 when the port never
yielded a frame in the indicator's format.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edge_agent.config import WeighbridgeSection, setting_default
from edge_agent.drivers.serialport import LineSettingsRefused
from edge_agent.errors import EdgeAgentError
from edge_agent.protocols.indicators import (
    PROTOCOLS,
    FrameError,
    IndicatorEvent,
    IndicatorReading,
    make_decoder,
)
from edge_agent.weighing import ScaleConfig, TraceError, analyze, read_trace
from host_tools import cmd_weigh_health
from host_tools.cli import add_json, command, emit
from host_tools.errors import ToolError, fail
from host_tools.ports import open_tool_port

if TYPE_CHECKING:
    from edge_agent.drivers.weighbridge import WeighbridgeReader
    from edge_agent.weighing import WeightWatcher

CHUNK = 4096
DETECT_BAUDS = (1200, 2400, 4800, 9600)
DETECT_LINES = ("8N1", "7E1")
# A lane's defaults (edge_agent/config.py), so the tool and the agent read a scale alike.
_SCALE_DEFAULT = {name: setting_default(WeighbridgeSection, name)
                  for name in ("max_kg", "e_kg", "baudrate")}


def event_json(event: IndicatorEvent) -> dict[str, Any]:
    """One decoded frame or error as a JSON-ready dict."""
    if isinstance(event, FrameError):
        return {"type": "error", "reason": event.reason, "raw": event.raw.hex()}
    return {
        "type": "reading",
        "kg": event.kg,
        "motion": event.motion,
        "overload": event.overload,
        "net": event.net,
        "raw": event.raw.hex(),
    }


def event_text(record: dict[str, Any]) -> str:
    """One reading, frame error or watcher event as a line for people."""
    at = f"{record['t_s']:9.3f}  " if "t_s" in record else ""
    if "event" in record:
        fields = {k: v for k, v in record.items() if k not in ("t_s", "event")}
        return at + f"{record['event']}  " + "  ".join(f"{k}={v}" for k, v in fields.items())
    if record["type"] == "error":
        return at + f"frame error: {record['reason']} (raw {record['raw']})"
    flags = [name for name in ("motion", "overload", "net") if record[name]]
    kg = "-" if record["kg"] is None else f"{record['kg']:g} kg"
    return at + f"{kg:>10}  {' '.join(flags)}".rstrip()


def _line(args: argparse.Namespace, record: dict[str, Any]) -> None:
    print(json.dumps(record) if args.json else event_text(record), flush=True)


def _chunks(stream: IO[bytes], *, as_hex: bool) -> Iterator[bytes]:
    if as_hex:
        text = stream.read().decode("ascii", errors="replace")
        digits = "".join(ch for ch in text if ch in "0123456789abcdefABCDEF")
        yield bytes.fromhex(digits[: len(digits) // 2 * 2])
        return
    while chunk := stream.read(CHUNK):
        yield chunk


# ---------------------------------------------------------------------------- decode
def _decode(args: argparse.Namespace) -> int:
    decoder = make_decoder(args.protocol)
    live = args.file in (None, "-")
    with contextlib.ExitStack() as stack:
        try:
            stream: IO[bytes] = (
                sys.stdin.buffer if live else stack.enter_context(Path(args.file).open("rb"))
            )
        except OSError as exc:
            return fail("weigh decode", f"cannot read {args.file}: {exc.strerror or exc}")
        for chunk in _chunks(stream, as_hex=args.hex):
            for event in decoder.receive_data(chunk):
                _line(args, event_json(event))
    return 0


# --------------------------------------------------------------------------- analyze
def _scale(args: argparse.Namespace) -> ScaleConfig:
    return ScaleConfig(max_kg=args.max_kg, e_kg=args.e_kg)


def _analyze(args: argparse.Namespace) -> int:
    try:
        scale = _scale(args)
        with Path(args.trace).open(encoding="utf-8", newline="") as handle:
            rows = read_trace(handle)
    except OSError as exc:
        return fail("weigh analyze", f"cannot read {args.trace}: {exc.strerror or exc}")
    except (TraceError, EdgeAgentError) as exc:
        return fail("weigh analyze", f"{args.trace}: {exc}")
    if not rows:
        return fail("weigh analyze", f"{args.trace}: no samples")
    result = analyze(
        rows, scale, declared_kg=args.declared_kg, tolerance_kg=args.tolerance_kg
    )
    emit(args, result.as_json())
    return 0


# ---------------------------------------------------------------------------- detect
def sniff(data: bytes) -> list[tuple[str, int, int]]:
    """(protocol, readings, errors) for each format on a captured burst, best first."""
    scores = []
    for protocol in PROTOCOLS:
        events = make_decoder(protocol).receive_data(data)
        good = sum(1 for e in events if isinstance(e, IndicatorReading))
        scores.append((protocol, good, len(events) - good))
    return sorted(scores, key=lambda s: (-s[1], s[2]))


def _open(url: str, line: str, baud: int, timeout: float = 0.05) -> Any:
    from edge_agent.drivers.serialport import LineSettings

    return open_tool_port(url, LineSettings.parse(line, baud), timeout=timeout)


def _capture(port: Any, seconds: float) -> bytes:
    data = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data += port.read(max(1, port.in_waiting))
    return data


def _detect(args: argparse.Namespace) -> int:
    from edge_agent.protocols.indicators import sma_command

    candidates: list[dict[str, Any]] = []
    for baud in DETECT_BAUDS:
        for line in DETECT_LINES:
            try:
                port = _open(args.port, line, baud)
            except LineSettingsRefused as exc:  # some adapters (and ptys) refuse a setting
                candidates.append({"baud": baud, "line": line, "protocol": None, "frames": 0,
                                   "errors": 0, "bytes": 0, "unsupported": str(exc)})
                continue
            except EdgeAgentError as exc:
                return fail("weigh detect", str(exc))
            try:
                port.reset_input_buffer()
                data = _capture(port, args.seconds)
                if not data:  # a polled indicator stays silent until asked
                    port.write(sma_command("W"))
                    data = _capture(port, min(args.seconds, 0.5))
            finally:
                port.close()
            protocol, good, bad = sniff(data)[0]
            candidates.append({"baud": baud, "line": line, "protocol": protocol,
                               "frames": good, "errors": bad, "bytes": len(data)})
    best = max(candidates, key=lambda c: (c["frames"] - 2 * c["errors"], -c["errors"]))
    found = best["frames"] > 0
    emit(args, {"found": found, "best": best if found else None, "candidates": candidates},
         _detect_text)
    return 0 if found else 1


def _detect_text(doc: dict[str, Any]) -> str:
    best = doc["best"]
    lines = [f"found     {best['protocol']} at {best['baud']} {best['line']} ({best['frames']} "
             f"frames, {best['errors']} errors): --protocol {best['protocol']} --baud "
             f"{best['baud']} --line {best['line']}" if best else
             "found     nothing: no setting gave a frame (check the wiring and that the "
             "indicator's serial output is on)"]  # fmt: skip
    for c in doc["candidates"]:
        seen = c.get("unsupported") or (f"{c['protocol']}: {c['frames']} frames, {c['errors']} "
                                        f"errors, {c['bytes']} bytes")  # fmt: skip
        lines.append(f"  {c['baud']:>5} {c['line']}  {seen}")
    return "\n".join(lines)


# --------------------------------------------------------------- monitor and verify
def _reader(args: argparse.Namespace) -> WeighbridgeReader:
    """The agent's reader on the port, after one open of our own: a missing or busy port is
    an error at once, not a retry loop."""
    from edge_agent.drivers.serialport import LineSettings
    from edge_agent.drivers.weighbridge import WeighbridgeReader
    from edge_agent.protocols.indicators import DEFAULT_LINE

    line = LineSettings.parse(args.line or DEFAULT_LINE[args.protocol], args.baud)
    open_tool_port(args.port, line).close()
    return WeighbridgeReader(args.port, args.protocol, line=line)


def _no_frames(args: argparse.Namespace, seconds: float) -> ToolError:
    return ToolError(f"no {args.protocol} frame from {args.port} in {seconds:.1f} s: check the "
                     "cable, and the protocol and line settings (lanectl weigh detect --port "
                     f"{args.port})", exit_code=1)  # fmt: skip


def _monitor(args: argparse.Namespace) -> int:
    from edge_agent.weighing import WeightWatcher

    watcher = WeightWatcher(_scale(args))
    with contextlib.ExitStack() as stack:
        record = None
        if args.record:
            try:
                record = stack.enter_context(Path(args.record).open("w", encoding="utf-8"))
            except OSError as exc:
                raise ToolError(f"cannot write the trace {args.record}: "
                                f"{exc.strerror or exc}") from None  # fmt: skip
            record.write("t_s,kg\n")
        reader = _reader(args)
        stack.callback(reader.close)
        started = time.monotonic()
        readings = 0
        with contextlib.suppress(KeyboardInterrupt):
            readings = _monitor_loop(args, reader, watcher, record, started)
    if not readings:
        raise _no_frames(args, time.monotonic() - started)
    return 0


def _monitor_loop(
    args: argparse.Namespace, reader: WeighbridgeReader, watcher: WeightWatcher, record: Any,
    started: float,
) -> int:
    """Print until ``--seconds`` or Ctrl-C; the number of readings seen."""
    readings = 0
    while args.seconds <= 0 or time.monotonic() - started < args.seconds:
        for arrival in reader.read(0.2):
            item, t = arrival.item, arrival.at - started
            if isinstance(item, FrameError):
                events = watcher.add_frame_error(t, item.reason)
            else:
                readings += 1
                events = watcher.add_reading(t, item.kg, motion=item.motion,
                                             overload=item.overload)
                if record is not None and item.kg is not None:
                    record.write(f"{t:.3f},{item.kg:g}\n")
            _line(args, {"t_s": round(t, 3), **event_json(item)})
            for event in events:
                _line(args, {"t_s": round(t, 3), "event": type(event).__name__,
                             **_event_fields(event)})
        now = time.monotonic() - started
        for event in watcher.tick(now):
            _line(args, {"t_s": round(now, 3), "event": type(event).__name__,
                         **_event_fields(event)})
    return readings


def _event_fields(event: Any) -> dict[str, Any]:
    fields = {k: getattr(event, k) for k in getattr(event, "__dataclass_fields__", {})}
    fields.pop("evidence", None)
    return fields


def _verify(args: argparse.Namespace) -> int:
    """Put a known test weight on the deck; the committed weight must be within 1 e."""
    from edge_agent.weighing import WeightCommitted, WeightWatcher

    scale = _scale(args)
    watcher = WeightWatcher(scale)
    reader = _reader(args)
    started = time.monotonic()
    committed = None
    readings = 0
    try:
        while committed is None and time.monotonic() - started < args.seconds:
            for arrival in reader.read(0.2):
                item = arrival.item
                if isinstance(item, IndicatorReading):
                    readings += 1
                    for event in watcher.add_reading(arrival.at - started, item.kg,
                                                     motion=item.motion, overload=item.overload):
                        if isinstance(event, WeightCommitted):
                            committed = event
    finally:
        reader.close()
    if not readings:
        raise _no_frames(args, time.monotonic() - started)
    if committed is None:
        emit(args, {"ok": False, "reason": f"no stable weight seen in {args.seconds:g} s "
                    f"({readings} readings)"})  # fmt: skip
        return 1
    error = committed.kg - args.reference_kg
    ok = abs(error) <= scale.e_kg
    emit(args, {"ok": ok, "weight_kg": committed.kg,
                "uncertainty_kg": committed.uncertainty_kg,
                "reference_kg": args.reference_kg, "error_kg": round(error, 1),
                "error_e": round(error / scale.e_kg, 2)})
    return 0 if ok else 1


# ------------------------------------------------------------------------------ plot
def _plot(args: argparse.Namespace) -> int:
    try:
        with Path(args.trace).open(encoding="utf-8", newline="") as handle:
            rows = read_trace(handle)
    except OSError as exc:
        return fail("weigh plot", f"cannot read {args.trace}: {exc.strerror or exc}")
    except TraceError as exc:
        return fail("weigh plot", f"{args.trace}: {exc}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = analyze(rows, _scale(args))
    fig, ax = plt.subplots(figsize=(10, 4))
    kg = [math.nan if r.kg is None else r.kg for r in rows]  # a gap where a row has no reading
    ax.plot([r.t for r in rows], kg, ".-", lw=0.6, ms=2, label="reading")
    if result.committed is not None:
        c = result.committed
        ax.axhline(c.kg, color="g", lw=0.8, label=f"committed {c.kg:.0f} +- {c.uncertainty_kg:.0f}")
        ax.axvline(c.at, color="g", ls="--", lw=0.8)
        ax.axvspan(c.stopped_at, c.at, color="g", alpha=0.1)
    for a in result.abnormalities:
        ax.axvline(a.at, color="r", ls=":", lw=0.8)
        ax.annotate(a.code, (a.at, ax.get_ylim()[1]), rotation=90, fontsize=7, va="top")
    ax.set_xlabel("t (s)")
    ax.set_ylabel("kg")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(args.out, dpi=120)
    except (OSError, ValueError) as exc:  # a missing folder, or a suffix it cannot draw
        why = getattr(exc, "strerror", None) or exc
        raise ToolError(f"cannot write the plot {args.out}: {why}") from None
    finally:
        plt.close(fig)
    emit(args, {"plot": args.out, **result.as_json()})
    return 0


# -------------------------------------------------------------------------- register
def _add_scale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-kg", type=float, default=_SCALE_DEFAULT["max_kg"],
                        help="capacity (default %(default)g)")
    parser.add_argument("--e-kg", type=float, default=_SCALE_DEFAULT["e_kg"],
                        help="scale interval e (default %(default)g)")


def _add_port(parser: argparse.ArgumentParser, *, protocol: bool = True) -> None:
    parser.add_argument("--port", required=True, metavar="URL",
                        help="/dev/ttyUSB0, /dev/serial/by-id/..., socket://host:port")
    if protocol:
        parser.add_argument("--protocol", required=True, choices=PROTOCOLS,
                            help="the indicator's output format (lanectl weigh detect finds it)")
        parser.add_argument("--line", help="8N1 or 7E1 (default: the format's usual)")
        parser.add_argument("--baud", type=int, default=_SCALE_DEFAULT["baudrate"],
                            help="baud rate (default %(default)s)")


def register(subparsers: Any) -> None:
    """Add ``weigh`` and its subcommands to lanectl's subparsers."""
    weigh = command(subparsers, "weigh", "weighbridge indicator tools",
                    "lanectl weigh detect --port /dev/ttyUSB0",
                    "lanectl weigh monitor --port /dev/ttyUSB0 --protocol yaohua-tf0")
    sub = weigh.add_subparsers(dest="weigh_command", metavar="SUBCOMMAND", required=True)

    p = command(sub, "decode", "decode captured indicator bytes",
                "lanectl weigh decode --protocol toledo capture.bin",
                "lanectl weigh decode --protocol yaohua-tf0 --hex dump.txt --json")
    p.add_argument("--protocol", required=True, choices=PROTOCOLS, help="the indicator's format")
    p.add_argument("file", nargs="?", default="-", help="capture file, - for stdin")
    p.add_argument("--hex", action="store_true", help="input is a hex dump, not raw bytes")
    add_json(p, "JSON lines")
    p.set_defaults(func=_decode)

    p = command(sub, "analyze", "replay a weight trace through the watcher",
                "lanectl weigh analyze trace.csv --declared-kg 31240")
    p.add_argument("trace", help="CSV t_s,kg[,front_clear,rear_clear]")
    _add_scale(p)
    p.add_argument("--declared-kg", type=float, help="declared gross weight on the pass")
    p.add_argument("--tolerance-kg", type=float, help="allowed difference to the declared")
    add_json(p)
    p.set_defaults(func=_analyze)

    p = command(sub, "detect", "find baud, line settings and format of an indicator",
                "lanectl weigh detect --port /dev/ttyUSB0")
    _add_port(p, protocol=False)
    p.add_argument("--seconds", type=float, default=1.0,
                   help="listen this long per setting (default 1)")
    add_json(p)
    p.set_defaults(func=_detect)

    p = command(sub, "monitor", "live readings and watcher events",
                "lanectl weigh monitor --port /dev/ttyUSB0 --protocol yaohua-tf0",
                "lanectl weigh monitor --port /dev/ttyUSB0 --protocol toledo --line 7E1 "
                "--seconds 60 --record trace.csv")
    _add_port(p)
    _add_scale(p)
    p.add_argument("--seconds", type=float, default=0, help="stop after S (0 = until ^C)")
    p.add_argument("--record", metavar="TRACE.csv",
                   help="also write a trace CSV for `weigh analyze`")
    add_json(p, "JSON lines")
    p.set_defaults(func=_monitor)

    p = command(sub, "verify", "check a known test weight on the deck (within 1 e)",
                "lanectl weigh verify --port /dev/ttyUSB0 --protocol yaohua-tf0 "
                "--reference-kg 10000")
    _add_port(p)
    _add_scale(p)
    p.add_argument("--reference-kg", type=float, required=True,
                   help="the certified test weight on the deck, kg")
    p.add_argument("--seconds", type=float, default=30,
                   help="wait this long for a stable weight (default 30)")
    add_json(p)
    p.set_defaults(func=_verify)

    p = command(sub, "plot", "draw a trace and the watcher's decision to a PNG",
                "lanectl weigh plot trace.csv --out trace.png")
    p.add_argument("trace", help="CSV t_s,kg[,front_clear,rear_clear]")
    p.add_argument("--out", required=True, metavar="FILE.png", help="the picture to write")
    _add_scale(p)
    add_json(p)
    p.set_defaults(func=_plot)

    cmd_weigh_health.register(sub, _add_scale)
