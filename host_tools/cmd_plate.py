"""``lanectl plate``: read licence plates from image files.

    lanectl plate read IMAGE... [--json]      -> [{file, plates: [...], ms}]

Like ``qr decode``: a bad file gets ``error`` and the others go on (exit 1 if any failed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from host_tools.cli import add_json, command
from host_tools.errors import fail


def _read(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from edge_agent.vision.plates import PlateEngineMissing, default_engine

    try:
        engine = default_engine()
    except PlateEngineMissing as exc:
        return fail("plate read", str(exc))
    results: list[dict[str, Any]] = []
    failed = False
    for name in args.images:
        entry: dict[str, Any] = {"file": name, "plates": [], "ms": 0.0}
        try:
            with Image.open(Path(name)) as img:
                bgr = np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])
        except (OSError, ValueError) as exc:
            entry["error"] = f"cannot read image: {exc}"
            failed = True
        else:
            start = time.perf_counter()
            entry["plates"] = [{"text": r.text, "confidence": round(r.confidence, 3),
                                "box": list(r.box)} for r in engine.read(bgr)]
            entry["ms"] = round((time.perf_counter() - start) * 1000, 2)
        results.append(entry)
        if not args.json:
            shown = entry.get("error") or " | ".join(p["text"] for p in entry["plates"])
            print(f"{name}: {shown or '(no plate)'}  [{entry['ms']} ms]")
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    parser = command(subparsers, "plate", "read licence plates from images",
                     "lanectl plate read truck.jpg")
    sub = parser.add_subparsers(dest="plate_command", metavar="ACTION", required=True)
    p = command(sub, "read", "read every plate in image files",
                "lanectl plate read truck.jpg --json")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    add_json(p, "one JSON list: file, plates (text, confidence, box), ms")
    p.set_defaults(func=_read)
