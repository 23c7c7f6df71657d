"""``lanectl qr``: decode QR codes from image files or watch a live frame source.

    lanectl qr decode IMAGE... [--json]       -> [{file, texts: [...], ms}]
    lanectl qr live --source URL [--seconds N] [--json]

``decode`` never stops at a bad file: it reports ``error`` for that file and goes on
(exit 1 if any file could not be read). ``live`` prints each confirmed read as it happens and,
at the end, the per-frame processing time (median and p95) on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from edge_agent.errors import EdgeAgentError
from host_tools.cli import add_json, command
from host_tools.errors import fail
from host_tools.image_files import add_image_files, analyse_files


def latency_summary(timings_ms: list[float]) -> dict[str, float]:
    """Median and p95 of per-frame times (linear interpolation: p95 is never below the median)."""
    import numpy as np

    median, p95 = np.percentile(np.asarray(timings_ms, dtype=float), [50, 95])
    return {"median_ms": round(float(median), 2), "p95_ms": round(float(p95), 2)}


def _decode(args: argparse.Namespace) -> int:
    import numpy as np

    from edge_agent.vision.pipeline import decode_frame

    return analyse_files(
        args.images, key="texts", nothing="(no code)", as_json=args.json,
        load=lambda img: np.asarray(img.convert("L")),
        analyse=lambda gray: [r.text for r in decode_frame(gray)],
        shown=" | ".join)


def _live(args: argparse.Namespace) -> int:
    from edge_agent.drivers.camera import CameraLost, open_frame_source
    from edge_agent.vision.pipeline import QrPipeline

    try:
        source = open_frame_source(args.source)
    except EdgeAgentError as exc:
        return fail("qr live", str(exc))
    pipeline = QrPipeline(confirm_frames=args.confirm, debounce_s=args.debounce)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    frames = 0
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                frame = source.read(0.5)
            except CameraLost as exc:
                print(json.dumps({"event": "camera_lost", "detail": str(exc)}) if args.json
                      else f"camera lost: {exc} (retrying)", flush=True)
                time.sleep(0.5)
                continue
            if frame is None:
                if source.ended:
                    break
                continue
            frames += 1
            for read in pipeline.process(frame.image, frame.at):
                out = {"event": "read", "text": read.text, "engine": read.engine,
                       "ms": round(read.ms, 2), "polygon": read.polygon}
                print(json.dumps(out) if args.json else f"{read.text}  [{read.engine}, "
                      f"{read.ms:.1f} ms]", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    timings = pipeline.timings()
    if timings:
        summary = {"event": "summary", "frames": frames, **latency_summary(timings)}
        print(json.dumps(summary) if args.json else
              f"{frames} frames, per frame: median {summary['median_ms']} ms, "
              f"p95 {summary['p95_ms']} ms", file=sys.stderr)  # fmt: skip
    return 0


def register(subparsers: Any) -> None:
    parser = command(subparsers, "qr", "decode QR codes from images or a camera",
                     "lanectl qr decode photo.jpg", "lanectl qr live --source picamera2:")
    sub = parser.add_subparsers(dest="qr_command", metavar="ACTION", required=True)

    p = command(sub, "decode", "decode every QR code in image files",
                "lanectl qr decode pass.png gate-photo.jpg --json")
    add_image_files(p, "one JSON list: file, texts, ms")
    p.set_defaults(func=_decode)

    p = command(sub, "live", "watch a frame source and print confirmed reads",
                "lanectl qr live --source picamera2: --seconds 30",
                "lanectl qr live --source uvc:0 --json")
    p.add_argument("--source", required=True, metavar="URL",
                   help="sim://HOST:PORT, dir:///path, picamera2:, uvc:0")
    p.add_argument("--seconds", type=float, default=0.0,
                   help="stop after N seconds (default: until Ctrl-C)")
    p.add_argument("--confirm", type=int, default=2,
                   help="frames that must agree before a read counts (default 2)")
    p.add_argument("--debounce", type=float, default=10.0, metavar="S",
                   help="the same text is not reported again for S seconds (default 10)")
    add_json(p, "JSON lines")
    p.set_defaults(func=_live)
