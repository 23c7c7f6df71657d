"""The plate renderer: layout, determinism, conditions, and what the real engine reads of it."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.identity.plate_match import plates_match
from simulators.camera import CameraSim
from simulators.errors import SimulatorSetupError
from simulators.plate_render import (
    CONDITIONS,
    KINDS,
    PROVINCES,
    PlateSighting,
    draw_condition,
    plate_layout,
    random_plate_text,
    render_plate,
    render_plate_frame,
)
from simulators.scenarios import DEMO, TruckPlan


def _text(kind: str, seed: int = 0) -> str:
    return random_plate_text(kind, np.random.default_rng(seed))


@pytest.mark.parametrize("kind", KINDS)
def test_random_plate_strings_are_valid_for_their_kind(kind: str) -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        text = random_plate_text(kind, rng)
        if kind == "eu":
            assert len(text) == 9 and text[2] == text[6] == "-"
            assert text.replace("-", "").isalnum() and text.isascii()
        else:
            assert len(text) == (8 if kind == "green" else 7)
            assert text[0] in PROVINCES and text[1].isascii() and text[1].isalpha()
            assert not set(text[1:]) & set("IO")
        if kind == "green":
            assert text[2] in "DF" and text[4:].isdigit()
        if kind in ("blue", "yellow"):
            assert sum(c.isalpha() for c in text[2:]) <= 2


@pytest.mark.parametrize(("kind", "size_mm", "glyphs"), [
    ("blue", (440, 140), 7), ("yellow", (440, 140), 7), ("green", (480, 140), 8),
    ("eu", (520, 110), 9)])
def test_layout_follows_the_plate_standard(kind: str, size_mm: tuple[int, int],
                                           glyphs: int) -> None:
    layout = plate_layout(kind, _text(kind))
    assert layout.size_mm == size_mm and len(layout.glyphs) == glyphs
    w_mm, h_mm = size_mm
    for x, y, w, h in layout.glyphs:  # every glyph inside the plate, none overlapping
        assert x > 0 and x + w < w_mm and y > 0 and y + h < h_mm
    for (x0, _, w0, _), (x1, _, _, _) in zip(layout.glyphs, layout.glyphs[1:], strict=False):
        assert x0 + w0 < x1
    if kind in ("blue", "yellow"):
        assert all((w, h) == (45, 90) for _, _, w, h in layout.glyphs)
        dot_x = layout.dot[0] if layout.dot else 0
        assert layout.glyphs[1][0] + 45 < dot_x < layout.glyphs[2][0]  # the dot after letter


@pytest.mark.parametrize("kind", KINDS)
def test_ink_stays_in_the_glyph_boxes(kind: str) -> None:
    text = _text(kind, 5)
    px_per_mm = 2.0
    plate = render_plate(text, kind, px_per_mm).astype(int)
    layout = plate_layout(kind, text)
    assert plate.shape == (round(layout.size_mm[1] * 2), round(layout.size_mm[0] * 2), 3)
    ink = np.abs(plate - np.array(layout.ink)).sum(axis=2) < 60
    inside = np.zeros(ink.shape, bool)
    for x, y, w, h in layout.glyphs:
        inside[int(y * 2) - 1:int((y + h) * 2) + 2, int(x * 2) - 1:int((x + w) * 2) + 2] = True
    if layout.dot:
        cx, cy, d = (v * 2 for v in layout.dot)
        inside[int(cy - d):int(cy + d), int(cx - d):int(cx + d)] = True
    rim = np.zeros(ink.shape, bool)  # the frame line and the EU band are not text
    rim[:12, :], rim[-12:, :], rim[:, :12], rim[:, -12:] = True, True, True, True
    if kind == "eu":
        rim[:, :int(42 * px_per_mm)] = True
    assert ink[~inside & ~rim].sum() == 0
    for x, y, w, h in layout.glyphs:  # and every box holds ink reaching its full width
        box = ink[int(y * 2):int((y + h) * 2), int(x * 2):int((x + w) * 2)]
        cols = np.flatnonzero(box.any(axis=0))
        assert box.any() and (cols[-1] - cols[0]) > 0.5 * box.shape[1]


def test_glyphs_are_stretched_to_their_box_not_drawn_at_natural_width() -> None:
    plate = render_plate("京A88888", "blue", 2.0).astype(int)
    layout = plate_layout("blue", "京A88888")
    ink = np.abs(plate - np.array(layout.ink)).sum(axis=2) < 60
    for x, y, w, h in layout.glyphs[2:]:
        box = ink[int(y * 2):int((y + h) * 2), int(x * 2):int((x + w) * 2)]
        cols, rows = np.flatnonzero(box.any(axis=0)), np.flatnonzero(box.any(axis=1))
        assert cols[-1] - cols[0] >= 0.9 * w * 2 and rows[-1] - rows[0] >= 0.9 * h * 2


def test_frames_have_the_asked_size_and_are_deterministic_per_seed() -> None:
    text = _text("blue")
    a = render_plate_frame(text, "blue", rng=np.random.default_rng(4), condition="dirt")
    b = render_plate_frame(text, "blue", rng=np.random.default_rng(4), condition="dirt")
    c = render_plate_frame(text, "blue", rng=np.random.default_rng(5), condition="dirt")
    assert a.image.shape == (720, 1280, 3) and a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    small = render_plate_frame(_text("green"), "green", rng=np.random.default_rng(1),
                               size=(640, 480), plate_width_px=120)
    assert small.image.shape == (480, 640, 3)


def test_the_plate_is_where_the_frame_says_at_the_asked_width() -> None:
    frame = render_plate_frame(_text("yellow"), "yellow", rng=np.random.default_rng(2),
                               plate_width_px=200, centre=(0.3, 0.6))
    (x0, y0), (x1, y1) = frame.quad.min(axis=0), frame.quad.max(axis=0)
    assert abs((x1 - x0) - 200) < 2 and abs((y1 - y0) - 200 * 140 / 440) < 2
    assert abs((x0 + x1) / 2 - 0.3 * 1280) < 2
    patch = frame.image[int(y0) + 3:int(y1) - 3, int(x0) + 3:int(x1) - 3].astype(int)
    yellow = (patch[..., 2] > 180) & (patch[..., 1] > 140) & (patch[..., 0] < 90)  # BGR
    assert yellow.mean() > 0.4


@pytest.mark.parametrize("condition", [c for c in CONDITIONS if c != "clean"])
def test_each_condition_changes_the_plate(condition: str) -> None:
    text = _text("blue", 9)
    clean = render_plate_frame(text, "blue", rng=np.random.default_rng(7),
                               condition=draw_condition("clean", np.random.default_rng(0)))
    other = render_plate_frame(text, "blue", rng=np.random.default_rng(7),
                               condition=draw_condition(condition, np.random.default_rng(0)))
    (x0, y0), (x1, y1) = clean.quad.min(axis=0).astype(int), clean.quad.max(axis=0).astype(int)
    diff = np.abs(clean.image[y0:y1, x0:x1].astype(int) - other.image[y0:y1, x0:x1])
    assert (diff.max(axis=2) > 40).mean() > 0.05, condition  # a part of the plate, not noise


def test_night_ir_is_grey_and_low_light_is_dark() -> None:
    rng = np.random.default_rng(0)
    ir = next(c for c in (draw_condition("night", rng) for _ in range(20)) if c.ir)
    low = next(c for c in (draw_condition("night", rng) for _ in range(20)) if not c.ir)
    text = _text("blue")
    ir_img = render_plate_frame(text, "blue", rng=rng, condition=ir).image.astype(int)
    assert np.array_equal(ir_img[..., 0], ir_img[..., 1])  # one channel, like an IR camera
    clean = render_plate_frame(text, "blue", rng=rng).image
    dark = render_plate_frame(text, "blue", rng=rng, condition=low).image
    assert dark.mean() < 0.5 * clean.mean()


def test_bad_requests_are_refused_with_a_clear_message() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(SimulatorSetupError, match="plate kind"):
        random_plate_text("purple", rng)
    with pytest.raises(SimulatorSetupError, match="condition"):
        draw_condition("fog", rng)
    with pytest.raises(SimulatorSetupError, match="holds 7 characters"):
        render_plate("京A1234", "blue", 1.0)
    with pytest.raises(SimulatorSetupError, match="fit a green plate"):
        PlateSighting("京A12345", "green")


def test_a_scenario_truck_can_carry_a_plate_the_camera_shows() -> None:
    plan = TruckPlan("plated", DEMO.trucks[0].truck,
                     plate_view=PlateSighting("苏E90217", "blue", "perspective"))
    assert all(t.plate_view is None for t in DEMO.trucks)  # existing scenarios unchanged
    sim = CameraSim(seed=3, size=(960, 540))
    try:
        empty = sim.render()
        assert plan.plate_view is not None
        sim.show_plate(plan.plate_view)
        gray, colour = sim.render(), sim.render_color()
        assert gray.shape == (540, 960) and colour.shape == (540, 960, 3)
        assert not np.array_equal(gray, empty)
        second = sim.render()  # the same truck, another frame: only noise and vibration
        assert 0 < np.abs(second.astype(int) - gray).mean() < 10
        sim.show_plate(None)
        assert sim.render().shape == (540, 960)
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def engine() -> object:
    from edge_agent.vision.plates import PlateEngineMissing, default_engine

    try:
        return default_engine()
    except PlateEngineMissing as exc:
        pytest.skip(f"plate engine not installed here: {exc}")


@pytest.mark.parametrize("plate", ["沪B7K520", "苏E90217", "浙C4H871"])
def test_engine_reads_clean_blue_plates_at_a_realistic_size(engine: object,
                                                            plate: str) -> None:
    for scene in range(3):  # a 220 px wide plate in a 1280x720 frame, as at the lane
        frame = render_plate_frame(plate, "blue", rng=np.random.default_rng(scene),
                                   plate_width_px=220, scene_seed=scene)
        reads = engine.read(frame.image)  # type: ignore[attr-defined]
        assert [r.text for r in reads] == [plate]
        x1, y1, x2, y2 = reads[0].box
        assert x1 < frame.quad[:, 0].mean() < x2 and y1 < frame.quad[:, 1].mean() < y2


def test_engine_reads_most_random_clean_blue_plates(engine: object) -> None:
    rng = np.random.default_rng(11)
    matched = 0
    for i in range(10):
        text = random_plate_text("blue", rng)
        frame = render_plate_frame(text, "blue", rng=rng, scene_seed=i)
        reads = [r.text for r in engine.read(frame.image)]  # type: ignore[attr-defined]
        matched += any(plates_match(r, text) for r in reads)
    assert matched >= 5
