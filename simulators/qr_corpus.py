"""The real QR photo corpus (tests_data/qr-photos): each photo with the text it holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from simulators.errors import SimulatorError

CORPUS = Path(__file__).resolve().parent.parent / "tests_data" / "qr-photos"
PHOTOS = 137
"""How many photos the corpus holds; fewer means a damaged or partial checkout."""

Photo = tuple[Path, str, np.ndarray]


class CorpusMissing(SimulatorError):
    """The photo corpus is not where it belongs, or is incomplete."""


def load_corpus(root: Path = CORPUS, *, expect: int = PHOTOS) -> list[Photo]:
    """Every ``qrcode-*/NAME.txt`` with its photo: (photo path, expected text, greyscale).

    Raises:
        CorpusMissing: ``root`` holds fewer than ``expect`` photos, or a text without its photo.
    """
    items = []
    for txt in sorted(root.glob("qrcode-*/*.txt")):
        if txt.name.endswith(".result.txt"):
            continue
        image = next((p for p in txt.parent.glob(txt.stem + ".*") if p.suffix != ".txt"), None)
        if image is None:
            raise CorpusMissing(f"{txt} has no photo beside it")
        with Image.open(image) as img:
            gray = np.asarray(img.convert("L"))
        items.append((image, txt.read_bytes().decode("utf-8"), gray))
    if len(items) < expect:
        raise CorpusMissing(f"{root} holds {len(items)} photos, expected {expect}")
    return items
