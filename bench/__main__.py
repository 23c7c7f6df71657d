"""Run every benchmark area, print its table, and write all figures to .bench/results.json.

``python -m bench [AREA ...]`` runs the named areas only (weighing, robustness, vision, io,
telemetry, lane, flood, soak, records, plates, backend). Each area runs in a process of its own
(``bench.section``), so the memory it reports, and its high-water mark under ``sections``,
are not what an earlier area left behind.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

AREAS = ("weighing", "robustness", "vision", "io", "telemetry", "lane", "flood", "soak", "records",
         "plates", "backend")
RESULTS = Path(".bench/results.json")


def _write(results: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))


def run_in_own_process(area: str, results: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Run ``area`` in a fresh interpreter on the figures so far: the figures after, and
    whether the area succeeded. Its tables print as it runs."""
    results.setdefault("sections", {}).pop(area, None)
    _write(results)
    done = subprocess.run(
        [sys.executable, "-m", "bench.section", area, str(RESULTS)], check=False
    )
    after: dict[str, Any] = json.loads(RESULTS.read_text())
    ok = done.returncode == 0
    if not ok and "error" not in after.get(area, {}):  # it died before it could say why
        after[area] = {"error": f"the {area} process exited with status {done.returncode}"}
    return after, ok


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
        results, ok = run_in_own_process(area, results)
        if not ok:
            failed.append(area)
        peak = results.get("sections", {}).get(area, {}).get("rss_mb_hwm")
        memory = f", peak RSS {peak} MB" if peak else ""
        print(f"({area}: {time.monotonic() - started:.1f} s{memory})", flush=True)
        _write(results)
    print(f"\nfigures written to {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
