"""The real QR photo corpus (shared test data): each photo with the text it holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CORPUS = Path("/work/shared/corpora/qr-photos")


def load_corpus(root: Path = CORPUS) -> list[tuple[Path, str, np.ndarray]]:
    """Every ``qrcode-*/NAME.txt`` with its photo: (photo path, expected text, greyscale)."""
    items = []
    for txt in sorted(root.glob("qrcode-*/*.txt")):
        if txt.name.endswith(".result.txt"):
            continue
        image = next(p for p in txt.parent.glob(txt.stem + ".*") if p.suffix != ".txt")
        gray = np.asarray(Image.open(image).convert("L"))
        items.append((image, txt.read_bytes().decode("utf-8"), gray))
    return items
