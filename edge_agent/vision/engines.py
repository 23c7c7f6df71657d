"""The two QR engines behind one shape: greyscale uint8 array in, ``RawRead`` list out.

zxing-cpp is primary (fast, reads inverted codes, releases the GIL). ZBar via pyzbar is the
second engine: greyscale only (pyzbar reads only channel 0 of colour input), QR only (avoids
ZBar's SQ-code leak), and an explicit inverted retry because ZBar cannot read light-on-dark.
ZBar guesses the charset of byte-mode data and can silently transcode it, so its text is
trusted only when it is printable ASCII; passes are QR alphanumeric, which is ASCII.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import zxingcpp

Gray = npt.NDArray[np.uint8]
Polygon = tuple[tuple[int, int], ...]

_QR = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
_BINARIZERS = {
    "local": zxingcpp.Binarizer.LocalAverage,
    "global": zxingcpp.Binarizer.GlobalHistogram,
}


@dataclass(frozen=True, slots=True)
class RawRead:
    """One decoded symbol in one image (not yet confirmed across frames)."""

    text: str
    polygon: Polygon
    engine: str
    modules: int = 0  # symbol width in modules when the engine reports it (0 = unknown)


def as_gray(image: Any) -> Gray:
    """A C-contiguous 2-D uint8 view of ``image``; colour is reduced to luma."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        # ITU-R BT.601 weights, integer maths: fast enough for a fallback path.
        rgb = arr[..., :3].astype(np.uint16)
        arr = ((rgb[..., 0] * 77 + rgb[..., 1] * 150 + rgb[..., 2] * 29) >> 8).astype(np.uint8)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"expected a greyscale uint8 image, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def zxing_read(gray: Gray, *, invert: bool = False, binarizer: str = "local",
               downscale: bool = True, scale: int = 1) -> list[RawRead]:
    """zxing-cpp, QR only, no 90° rotation search (the camera is mounted upright)."""
    results = zxingcpp.read_barcodes(
        gray, formats=_QR, try_rotate=False, try_downscale=downscale, try_invert=invert,
        text_mode=zxingcpp.TextMode.Plain, binarizer=_BINARIZERS[binarizer],
    )
    reads = []
    for r in results:
        if not r.valid:
            continue
        p = r.position
        corners = (p.top_left, p.top_right, p.bottom_right, p.bottom_left)
        version = str(r.extra.get("Version", "")) if isinstance(r.extra, dict) else ""
        modules = 17 + 4 * int(version) if version.isdigit() else 0
        reads.append(RawRead(r.text, tuple((c.x * scale, c.y * scale) for c in corners),
                             "zxing", modules))
    return reads


def zbar_read(gray: Gray, *, invert_retry: bool = True, scale: int = 1) -> list[RawRead]:
    """ZBar via pyzbar, QR only, with an inverted retry; ASCII results only."""
    from pyzbar import pyzbar  # loads libzbar0; imported lazily so a lane without it still runs

    reads: list[RawRead] = []
    for img in (gray, 255 - gray) if invert_retry else (gray,):
        for sym in pyzbar.decode(img, symbols=[pyzbar.ZBarSymbol.QRCODE]):
            try:
                text = sym.data.decode("ascii")
            except UnicodeDecodeError:
                continue
            poly = tuple((int(x) * scale, int(y) * scale) for x, y in sym.polygon)
            reads.append(RawRead(text, poly, "zbar"))
        if reads:
            break
    return reads
