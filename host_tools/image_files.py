"""Run an image analysis on each of a list of image files, as ``lanectl qr decode`` and
``lanectl plate read`` do: a bad file gets ``error`` and the others go on (exit 1 if any
failed); one line a file, or one JSON list with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from host_tools.cli import add_json

if TYPE_CHECKING:
    from PIL import Image


def add_image_files(parser: argparse.ArgumentParser, json_help: str) -> None:
    """The arguments of a command run on image files: the files, and ``--json``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    add_json(parser, json_help)


def analyse_files(
    names: Sequence[str],
    *,
    key: str,
    load: Callable[[Image.Image], Any],
    analyse: Callable[[Any], list[Any]],
    shown: Callable[[list[Any]], str],
    nothing: str,
    as_json: bool,
) -> int:
    """For each file: ``load`` its pixels (from a PIL image), ``analyse`` them into the
    entry's ``key`` list (timed, in ``ms``); ``shown`` says that list in words, ``nothing``
    when it is empty. Returns the exit code."""
    from PIL import Image

    results: list[dict[str, Any]] = []
    failed = False
    for name in names:
        entry: dict[str, Any] = {"file": name, key: [], "ms": 0.0}
        try:
            with Image.open(Path(name)) as img:
                pixels = load(img)
        except (OSError, ValueError) as exc:
            entry["error"] = f"cannot read image: {exc}"
            failed = True
        else:
            start = time.perf_counter()
            entry[key] = analyse(pixels)
            entry["ms"] = round((time.perf_counter() - start) * 1000, 2)
        results.append(entry)
        if not as_json:
            text = entry.get("error") or shown(entry[key]) or nothing
            print(f"{name}: {text}  [{entry['ms']} ms]")
    if as_json:
        print(json.dumps(results, ensure_ascii=False))
    return 1 if failed else 0
