"""Software identification: the version and SHA-256 over the modules that decide and record
weights (``edge_agent/weighing``, ``edge_agent/lane``, ``edge_agent/records``)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from edge_agent import __version__

PACKAGES = ("weighing", "lane", "records")


def sources_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "tests" in path.relative_to(root).parts:
                continue
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def software_id() -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent
    return {"version": __version__, "sha256": sources_hash(root)}
