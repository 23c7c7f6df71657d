"""Render what a lane camera sees: a pass QR on a phone or paper, in a noisy gate scene.

One frame is a 1280x720 greyscale numpy array made in a few milliseconds: the QR raster is
cached per text, the phone/paper card per (text, style, scale), and only the card's
neighbourhood is warped, blurred and lit. Every random choice comes from the caller's
``numpy.random.Generator``, so a seed reproduces a frame exactly.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import segno
from PIL import Image, ImageDraw, ImageFilter

from edge_agent.protocols.base45 import ALPHABET
from simulators.errors import SimulatorSetupError
from simulators.perspective import perspective_coeffs

QUIET_MODULES = 4
STYLES = ("phone", "paper")


@lru_cache(maxsize=64)
def qr_modules(text: str, error: str = "q") -> np.ndarray:
    """The QR symbol as a bool matrix (True = dark), without quiet zone.

    Pass texts use QR alphanumeric mode (the Base45 alphabet is exactly that mode's charset).
    """
    alnum = all(c in ALPHABET for c in text)
    qr = segno.make_qr(text, error=error, mode="alphanumeric" if alnum else None,
                       boost_error=False)
    return np.array([list(row) for row in qr.matrix], dtype=bool)


@lru_cache(maxsize=32)
def _card(text: str | None, style: str, px_per_module: float, invert: bool) -> np.ndarray:
    """The flat phone screen or paper sheet holding the code (or no code), uint8."""
    if text is None:
        side = round(33 * px_per_module)
    else:
        modules = qr_modules(text)
        n = modules.shape[0] + 2 * QUIET_MODULES
        side = round(n * px_per_module)
        symbol = np.pad(modules, QUIET_MODULES)
    if style == "phone":
        paper, ink, bezel = 238, 18, max(8, side // 10)
        h, w = side + 2 * bezel + side // 2, side + 2 * bezel
        card = np.full((h, w), 25, np.uint8)
        card[bezel:-bezel, bezel:-bezel] = paper
        top, left = bezel + side // 6, bezel
        # A text line or two on the screen above and below the code.
        card[bezel + side // 24 : bezel + side // 12, left + side // 8 : left + side // 2] = 90
        lines_at = top + side + side // 12
    elif style == "paper":
        paper, ink, margin = 212, 35, max(6, side // 8)
        h, w = side + 2 * margin + side // 3, side + 2 * margin
        card = np.full((h, w), paper, np.uint8)
        top, left = margin, margin
        lines_at = top + side + margin // 2
    else:
        raise SimulatorSetupError(f"style must be one of {STYLES}, not {style!r}")
    for i in range(2):
        y = lines_at + i * max(4, side // 14)
        if y + 3 < h:
            card[y : y + max(2, side // 40), left + side // 10 : left + side - side // 5] = 110
    if text is not None:
        raster = np.where(symbol, ink, paper).astype(np.uint8)
        img = Image.fromarray(raster).resize((side, side), Image.Resampling.NEAREST)
        card[top : top + side, left : left + side] = np.asarray(img)
    if invert:  # dark mode: light modules on a dark screen
        region = card[top : top + side, left : left + side]
        card[top : top + side, left : left + side] = 255 - region
    return card


@lru_cache(maxsize=8)
def _scene_base(size: tuple[int, int], seed: int) -> np.ndarray:
    """A lane-like background: a cab, a window, shadows; built once per size and seed."""
    w, h = size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 150, size=(9, 16)).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR)).copy()
    for _ in range(6):  # hard-edged structure so there is something for a finder to chew on
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        x1, y1 = x0 + int(rng.integers(40, w // 3)), y0 + int(rng.integers(20, h // 3))
        img[y0:y1, x0:x1] = int(rng.integers(20, 200))
    for x in range(0, w, int(rng.integers(60, 140))):  # grille bars
        img[h * 3 // 4 :, x : x + 6] = 30
    return img


_NOISE_MARGIN = 97


@lru_cache(maxsize=4)
def _noise_tile(size: tuple[int, int]) -> np.ndarray:
    """Unit Gaussian sensor noise, a bit larger than a frame; windows of it are reused."""
    w, h = size
    rng = np.random.default_rng(w * 7919 + h)
    return rng.standard_normal((h + _NOISE_MARGIN, w + _NOISE_MARGIN), dtype=np.float32)


def render_pass_frame(
    text: str | None, *, rng: np.random.Generator, style: str = "phone",
    px_per_module: float = 4, rotation_deg: float = 0, perspective: float = 0,
    blur: float = 0, motion_blur: float = 0, glare: float = 0, contrast: float = 1,
    noise: float = 0, invert: bool = False, occlusion: float = 0,
    size: tuple[int, int] = (1280, 720), scene_seed: int = 0,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """One greyscale camera frame (``size`` = (width, height)) showing ``text`` as a QR.

    ``text=None`` shows the card without a code (a driver holding up something else).
    ``perspective`` -0.5..0.5 shortens the right (positive) or left (negative) edge;
    ``blur`` is a Gaussian sigma in px; ``motion_blur`` a horizontal smear in px;
    ``glare`` 0..1 a saturating highlight;
    ``contrast`` scales around mid-grey; ``noise`` a sensor noise sigma in grey levels;
    ``occlusion`` 0..1 the fraction of the code's width covered by a thumb;
    ``center`` the card's centre as fractions of the frame (default: random placement).
    """
    w, h = size
    frame = Image.fromarray(_scene_base(size, scene_seed))
    card = _card(text, style, float(px_per_module), bool(invert))
    ch, cw = card.shape
    # Card corners around its centre, then perspective, rotation and placement.
    corners = np.array([[-cw / 2, -ch / 2], [cw / 2, -ch / 2], [cw / 2, ch / 2],
                        [-cw / 2, ch / 2]])
    if perspective:
        far = [1, 2] if perspective > 0 else [0, 3]  # which vertical edge is farther away
        corners[far, 1] *= 1 - abs(perspective)
        corners[far, 0] *= 1 - abs(perspective) / 2
    angle = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rot.T
    span = corners.max(axis=0) - corners.min(axis=0)
    if center is None:
        cx = w / 2 + rng.uniform(-1, 1) * max(0.0, (w - span[0]) / 2 - 8) * 0.8
        cy = h / 2 + rng.uniform(-1, 1) * max(0.0, (h - span[1]) / 2 - 8) * 0.8
    else:
        cx, cy = center[0] * w, center[1] * h
    corners += [cx, cy]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    local = corners - [x0, y0]
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], float)
    coeffs = perspective_coeffs(local, src)
    patch_size = (int(x1 - x0), int(y1 - y0))
    card_img = Image.fromarray(card)
    patch = card_img.transform(patch_size, Image.Transform.PERSPECTIVE, coeffs,
                               Image.Resampling.BILINEAR)
    mask = Image.new("L", patch_size, 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in local.tolist()], fill=255)
    frame.paste(patch, (int(x0), int(y0)), mask)

    # Effects are applied to the card's neighbourhood only: cheap, and the scene is far anyway.
    pad = int(3 * max(blur, motion_blur, 1)) + 2
    bx0, by0 = max(0, int(x0) - pad), max(0, int(y0) - pad)
    bx1, by1 = min(w, int(x1) + pad), min(h, int(y1) + pad)
    out = np.asarray(frame).copy()
    if bx1 <= bx0 or by1 <= by0:
        return out
    region: np.ndarray = out[by0:by1, bx0:bx1].astype(np.float32)
    rh, rw = region.shape
    if occlusion > 0:
        thumb_w = int(occlusion * (x1 - x0) * 0.8)
        tx = int(local[:, 0].min()) + pad + int((x1 - x0) * 0.18)
        ty = int(local[:, 1].mean()) + pad
        top, left = max(0, ty - thumb_w // 2), max(0, tx - thumb_w // 3)
        region[top : ty + thumb_w, left : tx + thumb_w] = rng.uniform(60, 120)
    if glare > 0:
        gy, gx = np.ogrid[:rh, :rw]
        gcx, gcy = rng.uniform(0.3, 0.7) * rw, rng.uniform(0.3, 0.7) * rh
        radius = max(rw, rh) * 0.22
        spot = np.exp(-((gx - gcx) ** 2 + (gy - gcy) ** 2) / (2 * radius**2))
        region += 255 * glare * 1.6 * spot
    if blur > 0:
        region = np.asarray(Image.fromarray(np.clip(region, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(float(blur))), np.float32)
    if motion_blur >= 1:
        k = round(motion_blur)
        csum = np.cumsum(np.pad(region, ((0, 0), (k, 0)), mode="edge"), axis=1)
        region = (csum[:, k:] - csum[:, :-k]) / k
    if contrast != 1:
        region = 128 + (region - 128) * contrast
    if noise > 0:
        tile = _noise_tile(size)
        oy, ox = (int(v) for v in rng.integers(0, _NOISE_MARGIN, 2))
        region += noise * tile[oy : oy + rh, ox : ox + rw]
    out[by0:by1, bx0:bx1] = np.clip(region, 0, 255).astype(np.uint8)
    return out
