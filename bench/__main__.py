"""Run every benchmark area, print its table, and write all figures to .bench/results.json.

``python -m bench [AREA ...]`` runs the named areas only (weighing, vision, io, telemetry, lane,
flood).
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

AREAS = ("weighing", "vision", "io", "telemetry", "lane", "flood")
RESULTS = Path(".bench/results.json")


def main(argv: list[str]) -> int:
    areas = argv or list(AREAS)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        print(f"bench: unknown area(s) {unknown}; known: {', '.join(AREAS)}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    if RESULTS.exists():
        results = json.loads(RESULTS.read_text())
    results["machine"] = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    failed = []
    for area in areas:
        print(f"\n=== {area} ===", flush=True)
        started = time.monotonic()
        try:
            importlib.import_module(f"bench.{area}").run(results)
        except Exception:
            traceback.print_exc()
            failed.append(area)
            results[area] = {"error": traceback.format_exc(limit=3)}
        print(f"({area}: {time.monotonic() - started:.1f} s)")
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nfigures written to {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
