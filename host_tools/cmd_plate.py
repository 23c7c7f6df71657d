"""``lanectl plate``: read licence plates from image files.

    lanectl plate read IMAGE... [--json]      -> [{file, plates: [...], ms}]

Like ``qr decode``: a bad file gets ``error`` and the others go on (exit 1 if any failed).
"""

from __future__ import annotations

import argparse
from typing import Any

from host_tools.cli import command
from host_tools.errors import fail
from host_tools.image_files import add_image_files, analyse_files


def _read(args: argparse.Namespace) -> int:
    import numpy as np

    from edge_agent.vision.plates import PlateEngineMissing, default_engine

    try:
        engine = default_engine()
    except PlateEngineMissing as exc:
        return fail("plate read", str(exc))
    return analyse_files(
        args.images, key="plates", nothing="(no plate)", as_json=args.json,
        load=lambda img: np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1]),
        analyse=lambda bgr: [{"text": r.text, "confidence": round(r.confidence, 3),
                              "box": list(r.box)} for r in engine.read(bgr)],
        shown=lambda plates: " | ".join(p["text"] for p in plates))


def register(subparsers: Any) -> None:
    parser = command(subparsers, "plate", "read licence plates from images",
                     "lanectl plate read truck.jpg")
    sub = parser.add_subparsers(dest="plate_command", metavar="ACTION", required=True)
    p = command(sub, "read", "read every plate in image files",
                "lanectl plate read truck.jpg --json")
    add_image_files(p, "one JSON list: file, plates (text, confidence, box), ms")
    p.set_defaults(func=_read)
