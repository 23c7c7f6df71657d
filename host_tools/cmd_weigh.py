"""``lanectl weigh``: read, replay and check a weighbridge indicator.

    lanectl weigh decode --protocol P [FILE|-] [--hex]      one JSON object per frame or error
    lanectl weigh analyze TRACE.csv [--max-kg N] [--e-kg N] [--declared-kg N] [--tolerance-kg N]
    lanectl weigh detect --port URL [--seconds S]           which baud, line and format it speaks
    lanectl weigh monitor --port URL --protocol P [--line 8N1] [--baud N] [--record TRACE.csv]
    lanectl weigh verify --port URL --protocol P --reference-kg N   a test weight against 1 e
    lanectl weigh plot TRACE.csv --out FILE.png             the trace and what the watcher saw

``decode`` never crashes on bad bytes: garbage becomes error objects. Bad arguments or files
give a one-line message and exit code 2.
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
from host_tools.errors import fail

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
                print(json.dumps(event_json(event)), flush=live)
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
    print(json.dumps(result.as_json()))
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
    from edge_agent.drivers.serialport import LineSettings, open_port

    return open_port(url, LineSettings.parse(line, baud), timeout=timeout)


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
    print(json.dumps({"found": found, "best": best if found else None,
                      "candidates": candidates}))
    return 0 if found else 1


# --------------------------------------------------------------- monitor and verify
def _reader(args: argparse.Namespace) -> WeighbridgeReader:
    from edge_agent.drivers.serialport import LineSettings
    from edge_agent.drivers.weighbridge import WeighbridgeReader
    from edge_agent.protocols.indicators import DEFAULT_LINE

    line = LineSettings.parse(args.line or DEFAULT_LINE[args.protocol], args.baud)
    return WeighbridgeReader(args.port, args.protocol, line=line)


def _monitor(args: argparse.Namespace) -> int:
    from edge_agent.weighing import WeightWatcher

    watcher = WeightWatcher(_scale(args))
    reader = _reader(args)
    with contextlib.ExitStack() as stack:
        stack.callback(reader.close)
        record = None
        if args.record:
            record = stack.enter_context(Path(args.record).open("w", encoding="utf-8"))
            record.write("t_s,kg\n")
        with contextlib.suppress(KeyboardInterrupt):
            _monitor_loop(args, reader, watcher, record)
    return 0


def _monitor_loop(
    args: argparse.Namespace, reader: WeighbridgeReader, watcher: WeightWatcher, record: Any
) -> None:
    started = time.monotonic()
    while args.seconds <= 0 or time.monotonic() - started < args.seconds:
        for arrival in reader.read(0.2):
            item, t = arrival.item, arrival.at - started
            if isinstance(item, FrameError):
                events = watcher.add_frame_error(t, item.reason)
            else:
                events = watcher.add_reading(t, item.kg, motion=item.motion,
                                             overload=item.overload)
                if record is not None and item.kg is not None:
                    record.write(f"{t:.3f},{item.kg:g}\n")
            print(json.dumps({"t_s": round(t, 3), **event_json(item)}), flush=True)
            for event in events:
                print(json.dumps({"t_s": round(t, 3), "event": type(event).__name__,
                                  **_event_fields(event)}), flush=True)
        now = time.monotonic() - started
        for event in watcher.tick(now):
            print(json.dumps({"t_s": round(now, 3), "event": type(event).__name__,
                              **_event_fields(event)}), flush=True)


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
    try:
        while committed is None and time.monotonic() - started < args.seconds:
            for arrival in reader.read(0.2):
                item = arrival.item
                if isinstance(item, IndicatorReading):
                    for event in watcher.add_reading(arrival.at - started, item.kg,
                                                     motion=item.motion, overload=item.overload):
                        if isinstance(event, WeightCommitted):
                            committed = event
    finally:
        reader.close()
    if committed is None:
        print(json.dumps({"ok": False, "reason": "no stable weight seen"}))
        return 1
    error = committed.kg - args.reference_kg
    ok = abs(error) <= scale.e_kg
    print(json.dumps({"ok": ok, "weight_kg": committed.kg,
                      "uncertainty_kg": committed.uncertainty_kg,
                      "reference_kg": args.reference_kg, "error_kg": round(error, 1),
                      "error_e": round(error / scale.e_kg, 2)}))
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
    fig.savefig(args.out, dpi=120)
    print(json.dumps({"plot": args.out, **result.as_json()}))
    return 0


# -------------------------------------------------------------------------- register
def _add_scale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-kg", type=float, default=_SCALE_DEFAULT["max_kg"],
                        help="capacity (default %(default)g)")
    parser.add_argument("--e-kg", type=float, default=_SCALE_DEFAULT["e_kg"],
                        help="scale interval e (default %(default)g)")


def _add_port(parser: argparse.ArgumentParser, *, protocol: bool = True) -> None:
    parser.add_argument("--port", required=True, help="/dev/..., socket://host:port, loop://")
    if protocol:
        parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
        parser.add_argument("--line", help="8N1 or 7E1 (default: the format's usual)")
        parser.add_argument("--baud", type=int, default=_SCALE_DEFAULT["baudrate"])


def register(subparsers: Any) -> None:
    """Add ``weigh`` and its subcommands to lanectl's subparsers."""
    weigh = subparsers.add_parser("weigh", help="weighbridge indicator tools")
    sub = weigh.add_subparsers(dest="weigh_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("decode", help="decode captured indicator bytes to JSON lines")
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument("file", nargs="?", default="-", help="capture file, - for stdin")
    p.add_argument("--hex", action="store_true", help="input is a hex dump, not raw bytes")
    p.set_defaults(func=_decode)

    p = sub.add_parser("analyze", help="replay a weight trace through the watcher")
    p.add_argument("trace", help="CSV t_s,kg[,front_clear,rear_clear]")
    _add_scale(p)
    p.add_argument("--declared-kg", type=float, help="declared gross weight on the pass")
    p.add_argument("--tolerance-kg", type=float, help="allowed difference to the declared")
    p.set_defaults(func=_analyze)

    p = sub.add_parser("detect", help="find baud, line settings and format of an indicator")
    _add_port(p, protocol=False)
    p.add_argument("--seconds", type=float, default=1.0, help="listen per setting")
    p.set_defaults(func=_detect)

    p = sub.add_parser("monitor", help="live readings and watcher events as JSON lines")
    _add_port(p)
    _add_scale(p)
    p.add_argument("--seconds", type=float, default=0, help="stop after S (0 = until ^C)")
    p.add_argument("--record", help="also write a trace CSV for `weigh analyze`")
    p.set_defaults(func=_monitor)

    p = sub.add_parser("verify", help="check a known test weight on the deck (within 1 e)")
    _add_port(p)
    _add_scale(p)
    p.add_argument("--reference-kg", type=float, required=True)
    p.add_argument("--seconds", type=float, default=30)
    p.set_defaults(func=_verify)

    p = sub.add_parser("plot", help="draw a trace and the watcher's decision to a PNG")
    p.add_argument("trace")
    p.add_argument("--out", required=True)
    _add_scale(p)
    p.set_defaults(func=_plot)
