"""One bench area in a process of its own: ``python -m bench.section AREA FIGURES.json``.

``python -m bench`` starts one of these per area, so each area's memory figures (and its
high-water mark, added under ``sections``) are its own and not what earlier areas left in a
shared process. The area reads and updates the figures in ``FIGURES.json``.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from bench.common import rss_mb


def run_area(area: str, results: dict[str, Any]) -> bool:
    """Run ``bench.<area>`` on ``results``; False (and its traceback stored) when it raised."""
    try:
        importlib.import_module(f"bench.{area}").run(results)
    except Exception:
        traceback.print_exc()
        results[area] = {"error": traceback.format_exc(limit=3)}
        return False
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.section AREA FIGURES.json", file=sys.stderr)
        return 2
    area, path = argv[0], Path(argv[1])
    results: dict[str, Any] = json.loads(path.read_text())
    ok = run_area(area, results)
    sections = results.setdefault("sections", {})
    sections[area] = {"rss_mb_hwm": round(rss_mb("self", "VmHWM") or 0.0, 1)}
    path.write_text(json.dumps(results, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
