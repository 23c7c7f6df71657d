"""Render licence plates as a lane's plate camera sees them: on a truck front, in bad conditions.

Plates follow their real layout in millimetres (GA 36 for Chinese plates): blue and yellow
plates are 440x140 mm with 7 glyphs of 45x90 mm (province character, letter, a separator dot,
5 characters); green new-energy plates are 480x140 mm with 8 glyphs on a green gradient; the
EU-style Latin plate is 520x110 mm, black on white with a blue band. Each glyph is stretched
to fill its box, as plate lettering is, not drawn at the font's natural width.

Pure functions: every random choice comes from the caller's ``numpy.random.Generator``, so a
seed reproduces a frame exactly. ``draw_condition`` picks one condition's parameters once per
sighting; ``render_plate_frame`` then renders any number of frames of that sighting (only the
sensor noise and a sub-pixel jitter differ between them, as between a camera's frames).
Frames are BGR uint8, the layout OpenCV and the plate engine take; ``to_gray`` gives the
greyscale a ``sim://`` camera sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from simulators.errors import SimulatorSetupError
from simulators.perspective import perspective_coeffs

FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")  # Debian: fonts-wqy-zenhei
PROVINCES = "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # Chinese plates use neither I nor O
DIGITS = "0123456789"
LATIN = "ABCDEFGHJKLMNPQRSTVWXYZ"  # the French SIV series leaves out I, O and U
KINDS = ("blue", "yellow", "green", "eu")
CONDITIONS = ("clean", "perspective", "blur", "night", "dirt", "occlusion")
SEPARATOR = "·"

RGB = tuple[int, int, int]
Box = tuple[float, float, float, float]  # x, y, width, height in millimetres
Image8 = NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class PlateLayout:
    size_mm: tuple[float, float]
    glyphs: tuple[Box, ...]  # one box per character of the plate text
    dot: tuple[float, float, float] | None  # separator dot: centre x, centre y, diameter
    background: RGB
    ink: RGB
    rim: RGB | None  # the thin frame line inside the edge


def _row(x0: float, widths: Sequence[float], gaps: Sequence[float], y: float,
         h: float) -> list[Box]:
    boxes, x = [], x0
    for i, w in enumerate(widths):
        boxes.append((x, y, w, h))
        x += w + (gaps[i] if i < len(gaps) else 0)
    return boxes


def plate_layout(kind: str, text: str) -> PlateLayout:
    """Where each glyph of ``text`` goes on a ``kind`` plate (``text`` without the dot)."""
    if kind in ("blue", "yellow"):
        # 15.5 mm margins, 12 mm between glyphs, 34 mm around the dot: 440 mm exactly.
        boxes = _row(15.5, [45] * 7, [12, 34, 12, 12, 12, 12], 25, 90)
        blue = kind == "blue"
        return PlateLayout((440, 140), tuple(boxes), (134.5, 70, 10),
                           (10, 60, 175) if blue else (240, 190, 20),
                           (245, 245, 245) if blue else (15, 15, 15),
                           (245, 245, 245) if blue else (15, 15, 15))
    if kind == "green":
        # Province 45 mm, the others 43 mm, 9 mm between glyphs, 49 mm around the dot.
        boxes = _row(15.5, [45] + [43] * 7, [9, 49, 9, 9, 9, 9, 9], 25, 90)
        return PlateLayout((480, 140), tuple(boxes), (137, 70, 10), (90, 200, 120),
                           (15, 15, 15), None)
    if kind == "eu":
        widths = [20.0 if ch == "-" else 44.0 for ch in text]
        span = sum(widths) + 4 * (len(widths) - 1)
        x0 = 40 + (480 - span) / 2  # centred right of the 40 mm blue band
        return PlateLayout((520, 110), tuple(_row(x0, widths, [4] * len(widths), 17.5, 75)),
                           None, (240, 240, 236), (15, 15, 15), (30, 30, 30))
    raise SimulatorSetupError(f"plate kind must be one of {KINDS}, not {kind!r}")


def random_plate_text(kind: str, rng: np.random.Generator) -> str:
    """A valid plate string of ``kind`` (Chinese plates without the separator dot)."""

    def pick(chars: str, n: int = 1) -> str:
        return "".join(chars[int(i)] for i in rng.integers(0, len(chars), n))

    if kind in ("blue", "yellow"):
        # Five serial characters, at most two of them letters.
        serial = list(pick(DIGITS, 5))
        for pos in rng.choice(5, size=int(rng.integers(0, 3)), replace=False):
            serial[int(pos)] = pick(LETTERS)
        return pick(PROVINCES) + pick(LETTERS) + "".join(serial)
    if kind == "green":
        # Small new-energy cars: D (electric) or F (hybrid), a letter or digit, four digits.
        return pick(PROVINCES) + pick(LETTERS) + pick("DF") + pick(LETTERS + DIGITS) + \
            pick(DIGITS, 4)
    if kind == "eu":
        return f"{pick(LATIN, 2)}-{pick(DIGITS, 3)}-{pick(LATIN, 2)}"
    raise SimulatorSetupError(f"plate kind must be one of {KINDS}, not {kind!r}")


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    if not FONT_PATH.is_file():
        raise SimulatorSetupError(f"plate font {FONT_PATH} is missing: apt-get install "
                                  "fonts-wqy-zenhei (tools/setup-system.sh does it)")
    return ImageFont.truetype(str(FONT_PATH), 240)


@lru_cache(maxsize=512)
def _glyph(ch: str, width: int, height: int) -> Image.Image:
    """The character's ink, cropped to its bounding box and stretched to fill the box (L).

    Strokes are thickened towards the plate lettering's weight (about a fifth of the glyph
    width); the font's regular weight is thinner. The GA 36 ``1`` is one stroke with a flag
    and no foot, so it is drawn rather than stretched from the font's footed ``1``.
    """
    if ch in "-1":
        mask = Image.new("L", (width * 4, height * 4), 0)
        draw = ImageDraw.Draw(mask)
        w4, h4 = width * 4, height * 4
        if ch == "-":
            draw.rectangle([0, h4 * 0.45, w4, h4 * 0.57], fill=255)
        else:
            stroke, right = w4 * 0.24, w4 * 0.68
            draw.rectangle([right - stroke, 0, right, h4], fill=255)
            draw.polygon([(right - stroke, 0), (right - stroke, h4 * 0.12),
                          (w4 * 0.2, h4 * 0.26), (w4 * 0.2, h4 * 0.14)], fill=255)
        return mask.resize((width, height), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (320, 320), 0)
    ImageDraw.Draw(canvas).text((40, 10), ch, font=_font(), fill=255)
    bbox = canvas.getbbox()
    if bbox is None:
        raise SimulatorSetupError(f"the plate font has no glyph for {ch!r}")
    bold = canvas.filter(ImageFilter.MaxFilter(3 if ch >= "\u4e00" else 7))
    return bold.crop(bold.getbbox()).resize((width, height), Image.Resampling.LANCZOS)


def plate_text_chars(text: str) -> str:
    return text.replace(SEPARATOR, "").replace(" ", "")


@lru_cache(maxsize=64)
def render_plate(text: str, kind: str, px_per_mm: float) -> Image8:
    """The flat plate, RGB uint8 of (height, width, 3) at ``px_per_mm``."""
    chars = plate_text_chars(text)
    layout = plate_layout(kind, chars)
    if len(chars) != len(layout.glyphs):
        raise SimulatorSetupError(
            f"a {kind} plate holds {len(layout.glyphs)} characters, {chars!r} has {len(chars)}")
    s = px_per_mm
    w_mm, h_mm = layout.size_mm
    w, h = round(w_mm * s), round(h_mm * s)
    if kind == "green":  # light at the top, deeper green at the bottom
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        top, bottom = np.array([225, 245, 230], np.float32), np.array([40, 175, 90], np.float32)
        grad = top + (bottom - top) * t
        plate = Image.fromarray(np.broadcast_to(grad, (h, w, 3)).astype(np.uint8))
    else:
        plate = Image.new("RGB", (w, h), layout.background)
    draw = ImageDraw.Draw(plate)
    if layout.rim is not None:
        inset, line = 3 * s, max(1, round(1.5 * s))
        draw.rounded_rectangle([inset, inset, w - 1 - inset, h - 1 - inset], radius=5 * s,
                               outline=layout.rim, width=line)
    if kind == "eu":
        draw.rectangle([4 * s, 4 * s, 40 * s, h - 1 - 4 * s], fill=(20, 60, 160))
        for i in range(12):  # the ring of stars, as dots
            a = i * np.pi / 6
            cx, cy = 22 * s + 9 * s * np.cos(a), 35 * s + 9 * s * np.sin(a)
            draw.ellipse([cx - 1.3 * s, cy - 1.3 * s, cx + 1.3 * s, cy + 1.3 * s],
                         fill=(250, 210, 0))
        code = _glyph("F", round(12 * s), round(22 * s))
        draw.bitmap((round(16 * s), round(70 * s)), code, fill=(245, 245, 245))
    for ch, (x, y, bw, bh) in zip(chars, layout.glyphs, strict=True):
        glyph = _glyph(ch, max(1, round(bw * s)), max(1, round(bh * s)))
        draw.bitmap((round(x * s), round(y * s)), glyph, fill=layout.ink)
    if layout.dot is not None:
        cx, cy, d = (v * s for v in layout.dot)
        draw.ellipse([cx - d / 2, cy - d / 2, cx + d / 2, cy + d / 2], fill=layout.ink)
    out = np.asarray(plate).copy()
    out.flags.writeable = False  # cached: callers must copy before drawing on it
    return out


@dataclass(frozen=True, slots=True)
class Condition:
    """One sighting's conditions, drawn once; ``render_plate_frame`` applies them per frame."""

    name: str = "clean"
    variant: str = ""  # which kind of blur or night
    rotation_deg: float = 0.0
    tilt: float = 0.0  # -0.5..0.5: the right (positive) or left edge is farther away
    motion_px: float = 0.0  # smear length, in px per 220 px of plate width
    motion_vertical: bool = False
    defocus: float = 0.0  # Gaussian sigma, in px per 220 px of plate width
    light: float = 1.0  # scene gain
    noise: float = 2.0  # sensor noise sigma, grey levels
    ir: bool = False  # grey, with a bright retro-reflective plate and bloom
    # Mud blotches: centre x, y and radius as fractions of the plate, height/width, opacity.
    dirt: tuple[tuple[float, float, float, float, float], ...] = ()
    bar: tuple[float, float] | None = None  # occluding bar's left and right, plate fractions


def draw_condition(name: str, rng: np.random.Generator) -> Condition:
    """Random parameters for the named condition (one of ``CONDITIONS``)."""
    if name == "clean":
        return Condition(noise=float(rng.uniform(1, 3)))
    if name == "perspective":
        sign = 1 if rng.random() < 0.5 else -1
        return Condition(name, rotation_deg=float(rng.uniform(-12, 12)),
                         tilt=sign * float(rng.uniform(0.12, 0.3)))
    if name == "blur":
        if rng.random() < 0.5:
            return Condition(name, "motion", motion_px=float(rng.uniform(5, 12)),
                             motion_vertical=bool(rng.random() < 0.5))
        return Condition(name, "defocus", defocus=float(rng.uniform(1.4, 2.6)))
    if name == "night":
        if rng.random() < 0.5:
            return Condition(name, "low-light", light=float(rng.uniform(0.18, 0.35)),
                             noise=float(rng.uniform(5, 9)), defocus=0.6)
        return Condition(name, "ir", light=float(rng.uniform(0.3, 0.5)),
                         noise=float(rng.uniform(4, 7)), ir=True)
    if name == "dirt":
        blotches = tuple((float(rng.uniform(0.03, 0.97)), float(rng.uniform(0.1, 0.9)),
                          float(rng.uniform(0.03, 0.08)), float(rng.uniform(0.5, 1.0)),
                          float(rng.uniform(0.5, 0.9)))
                         for _ in range(int(rng.integers(5, 11))))
        return Condition(name, dirt=blotches)
    if name == "occlusion":
        width = float(rng.uniform(0.06, 0.13))  # about one glyph
        left = float(rng.uniform(0.05, 0.95 - width))
        return Condition(name, bar=(left, left + width))
    raise SimulatorSetupError(f"condition must be one of {CONDITIONS}, not {name!r}")


TRUCK_COLOURS: tuple[RGB, ...] = ((170, 30, 30), (225, 225, 220), (30, 70, 140),
                                  (40, 110, 60), (120, 120, 125), (200, 150, 30))


@lru_cache(maxsize=16)
def _truck_scene(size: tuple[int, int], seed: int, px_per_mm: float,
                 plate_centre: tuple[int, int]) -> Image8:
    """A truck front around the plate's spot: cab, windscreen, grille, bumper, lamps, road."""
    w, h = size
    rng = np.random.default_rng(seed)
    sky = np.linspace(170, 120, h, dtype=np.float32)[:, None, None] * np.array(
        [0.85, 0.9, 1.0], np.float32)
    img = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    s = px_per_mm
    px, py = plate_centre
    road_y = py + 700 * s  # the bumper's plate sits ~0.7 m above the road
    if road_y < h:
        draw.rectangle([0, road_y, w, h], fill=(70, 70, 72))
    cx = px + float(rng.uniform(-150, 150)) * s  # plates are not always centred
    colour = TRUCK_COLOURS[int(rng.integers(0, len(TRUCK_COLOURS)))]
    half = 1250 * s
    draw.rectangle([cx - half, py - 2200 * s, cx + half, py + 350 * s], fill=colour)
    draw.rectangle([cx - half * 0.9, py - 2100 * s, cx + half * 0.9, py - 1250 * s],
                   fill=(35, 45, 55))  # windscreen
    draw.rectangle([cx - half * 0.6, py - 1100 * s, cx + half * 0.6, py - 200 * s],
                   fill=(40, 40, 42))  # grille
    for y in np.arange(py - 1050 * s, py - 250 * s, 90 * s):
        draw.rectangle([cx - half * 0.58, y, cx + half * 0.58, y + 30 * s], fill=(95, 95, 98))
    draw.rectangle([cx - half, py - 150 * s, cx + half, py + 150 * s], fill=(55, 55, 58))
    for side in (-1, 1):  # headlamps on the bumper's ends, wheels below
        lx = cx + side * half * 0.8
        draw.rectangle([lx - 160 * s, py - 120 * s, lx + 160 * s, py + 20 * s],
                       fill=(235, 235, 225))
        wx = cx + side * half * 0.75
        draw.rectangle([wx - 200 * s, py + 200 * s, wx + 200 * s, road_y + 20 * s],
                       fill=(20, 20, 20))
    out = np.asarray(img).copy()
    out.flags.writeable = False
    return out


_NOISE_MARGIN = 61


@lru_cache(maxsize=4)
def _noise_tile(size: tuple[int, int]) -> NDArray[np.float32]:
    w, h = size
    rng = np.random.default_rng(w * 7919 + h)
    return rng.standard_normal((h + _NOISE_MARGIN, w + _NOISE_MARGIN, 3), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class PlateSighting:
    """What a plate camera sees of one truck: its plate, and in which condition."""

    text: str
    kind: str = "blue"
    condition: str = "clean"
    plate_width_px: float = 220
    centre: tuple[float, float] = (0.5, 0.62)

    def __post_init__(self) -> None:
        chars = plate_text_chars(self.text)
        if len(chars) != len(plate_layout(self.kind, chars).glyphs):
            raise SimulatorSetupError(f"{self.text!r} does not fit a {self.kind} plate")
        if self.condition not in CONDITIONS:
            raise SimulatorSetupError(
                f"condition must be one of {CONDITIONS}, not {self.condition!r}")


@dataclass(frozen=True, slots=True)
class PlateFrame:
    image: Image8  # BGR uint8, (height, width, 3)
    quad: NDArray[np.float64]  # the plate's corners in the frame: TL, TR, BR, BL (x, y)
    text: str
    kind: str
    condition: Condition


def to_gray(bgr: Image8) -> Image8:
    """ITU-R 601 luma, as a greyscale camera would record the scene."""
    f = bgr.astype(np.float32)
    gray = 0.114 * f[..., 0] + 0.587 * f[..., 1] + 0.299 * f[..., 2]
    out: Image8 = np.clip(gray + 0.5, 0, 255).astype(np.uint8)
    return out


def _dirty(plate: Image8, dirt: tuple[tuple[float, float, float, float, float], ...]) -> Image8:
    h, w = plate.shape[:2]
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    for x, y, r, aspect, alpha in dirt:
        rx, ry = r * w, r * w * aspect
        draw.ellipse([x * w - rx, y * h - ry, x * w + rx, y * h + ry], fill=int(255 * alpha))
    soft = np.asarray(mask.filter(ImageFilter.GaussianBlur(max(1.0, w / 200))), np.float32)
    a = soft[..., None] / 255
    mud = np.array([95, 80, 55], np.float32)
    return (plate * (1 - a) + mud * a).astype(np.uint8)


def render_plate_frame(
    text: str, kind: str, *, rng: np.random.Generator, condition: Condition | str = "clean",
    plate_width_px: float = 220, size: tuple[int, int] = (1280, 720),
    centre: tuple[float, float] = (0.5, 0.62), scene_seed: int = 0,
) -> PlateFrame:
    """One camera frame of a truck front carrying ``text`` on a ``kind`` plate.

    ``condition`` is a name of ``CONDITIONS`` (parameters drawn from ``rng``) or a ``Condition``
    from ``draw_condition`` to render several frames of one sighting. ``plate_width_px`` is
    the plate's width in the frame before perspective; ``centre`` its centre in frame
    fractions; ``scene_seed`` picks the truck.
    """
    cond = draw_condition(condition, rng) if isinstance(condition, str) else condition
    w, h = size
    width_mm = plate_layout(kind, plate_text_chars(text)).size_mm[0]
    scale = plate_width_px / width_mm  # px per mm in the frame
    flat = render_plate(text, kind, round(2 * scale, 3))  # drawn at twice the size, then warped
    if cond.dirt:
        flat = _dirty(flat, cond.dirt)
    ph, pw = flat.shape[:2]
    cx, cy = centre[0] * w, centre[1] * h
    scene = Image.fromarray(_truck_scene(size, scene_seed, round(scale, 4),
                                         (round(cx), round(cy))))

    hw, hh = pw / 4, ph / 4
    corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
    if cond.tilt:
        far = [1, 2] if cond.tilt > 0 else [0, 3]
        corners[far, 1] *= 1 - abs(cond.tilt)
        corners[far, 0] *= 1 - abs(cond.tilt) / 2
    angle = np.deg2rad(cond.rotation_deg)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rot.T + [cx, cy] + rng.normal(0, 0.25, 2)  # vibration between frames
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    local = corners - [x0, y0]
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], float)
    patch_size = (int(x1 - x0), int(y1 - y0))
    patch = Image.fromarray(flat).transform(patch_size, Image.Transform.PERSPECTIVE,
                                            perspective_coeffs(local, src),
                                            Image.Resampling.BILINEAR)
    mask = Image.new("L", patch_size, 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in local.tolist()], fill=255)
    scene.paste(patch, (int(x0), int(y0)), mask)
    if cond.bar is not None:  # a bar in front of the plate: tow hitch, bike rack, a strap
        left, right = (float(np.interp(f, [0, 1], [corners[0, 0], corners[1, 0]]))
                       for f in cond.bar)
        top, bottom = corners[:, 1].min() - 0.3 * hh, corners[:, 1].max() + 0.3 * hh
        ImageDraw.Draw(scene).rectangle([left, top, right, bottom], fill=(50, 52, 55))

    out = np.asarray(scene, np.float32)
    if cond.ir:  # IR: grey; the retro-reflective plate returns the illuminator's light
        gray = out @ np.array([0.299, 0.587, 0.114], np.float32)
        plate_mask = np.asarray(mask, np.float32) / 255
        # The plate may reach past the frame's edge: brighten the part inside it.
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if fx1 > fx0 and fy1 > fy0:
            region = gray[fy0:fy1, fx0:fx1]
            lit = plate_mask[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            region += lit * (region * 0.9 + 40)
        out = np.repeat(gray[..., None], 3, axis=2)
    out *= cond.light
    # Blur and bloom act on the plate's neighbourhood only: cheap, and the rest is far anyway.
    factor = plate_width_px / 220
    pad = int(3 * max(cond.motion_px, cond.defocus, 1) * factor) + 4
    bx0, by0, bx1, by1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    region = out[by0:by1, bx0:bx1]
    if cond.ir:
        bright = np.clip(region - 150, 0, 255).astype(np.uint8)
        glow = np.asarray(Image.fromarray(bright).filter(ImageFilter.GaussianBlur(6 * factor)),
                          np.float32)
        region += 1.5 * glow
    if cond.defocus > 0:
        region = np.asarray(Image.fromarray(np.clip(region, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(cond.defocus * factor)), np.float32)
    if cond.motion_px >= 1:
        k = max(1, round(cond.motion_px * factor))
        axis = 0 if cond.motion_vertical else 1
        widths = ((k, 0), (0, 0), (0, 0)) if axis == 0 else ((0, 0), (k, 0), (0, 0))
        csum = np.cumsum(np.pad(region, widths, mode="edge"), axis=axis)
        smeared = (csum[k:] - csum[:-k]) if axis == 0 else (csum[:, k:] - csum[:, :-k])
        region = (smeared / k).astype(np.float32)
    out[by0:by1, bx0:bx1] = region
    if cond.noise > 0:
        tile = _noise_tile(size)
        oy, ox = (int(v) for v in rng.integers(0, _NOISE_MARGIN, 2))
        noise = tile[oy:oy + h, ox:ox + w]
        out += cond.noise * (noise[..., :1] if cond.ir else noise)
    image = np.clip(out[..., ::-1], 0, 255).astype(np.uint8)  # RGB -> BGR
    return PlateFrame(image, corners, plate_text_chars(text), kind, cond)
