"""The pass renderer and the camera simulator."""

from __future__ import annotations

import numpy as np
import pytest
import segno
import zxingcpp

from simulators.camera import CameraSim
from simulators.pass_render import qr_modules, render_pass_frame

PASS = "GP1:6BFOXN*TS0BI$ZDFRH AX4-CK.S0D %Y:9 3-%LP$WFE2"


def test_pass_text_uses_alphanumeric_mode() -> None:
    qr = segno.make_qr(PASS, error="q", mode="alphanumeric", boost_error=False)
    assert qr.mode == "alphanumeric"
    assert qr_modules(PASS).shape == (qr.symbol_size(border=0)[0],) * 2


def test_same_seed_same_frame() -> None:
    kw = dict(rotation_deg=7, perspective=0.1, blur=0.8, noise=4, glare=0.2)
    a = render_pass_frame(PASS, rng=np.random.default_rng(5), **kw)  # type: ignore[arg-type]
    b = render_pass_frame(PASS, rng=np.random.default_rng(5), **kw)  # type: ignore[arg-type]
    c = render_pass_frame(PASS, rng=np.random.default_rng(6), **kw)  # type: ignore[arg-type]
    assert a.shape == (720, 1280) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("style", ["phone", "paper"])
def test_rendered_code_is_readable_and_located(style: str) -> None:
    frame = render_pass_frame(PASS, rng=np.random.default_rng(1), style=style,
                              center=(0.25, 0.5), size=(800, 600))
    results = zxingcpp.read_barcodes(frame, formats=zxingcpp.BarcodeFormat.QRCode)
    assert [r.text for r in results] == [PASS]
    assert results[0].position.top_left.x < 400


def test_effects_change_the_frame() -> None:
    base = render_pass_frame(PASS, rng=np.random.default_rng(2), center=(0.5, 0.5))
    for kw in ({"invert": True}, {"occlusion": 0.3}, {"motion_blur": 5}, {"contrast": 0.4}):
        other = render_pass_frame(PASS, rng=np.random.default_rng(2), center=(0.5, 0.5),
                                  **kw)  # type: ignore[arg-type]
        assert not np.array_equal(base, other), kw


def test_unknown_style_is_refused() -> None:
    with pytest.raises(ValueError, match="style"):
        render_pass_frame(PASS, rng=np.random.default_rng(0), style="tablet")


def test_camera_sim_renders_what_is_shown() -> None:
    sim = CameraSim(seed=4, size=(640, 480))
    try:
        assert sim.url.startswith("sim://127.0.0.1:")
        sim.show(PASS, px_per_module=3.5)
        frame = sim.render()
        texts = [r.text for r in zxingcpp.read_barcodes(frame)]
        assert texts == [PASS]
        sim.show(None)
        assert zxingcpp.read_barcodes(sim.render()) == []
    finally:
        sim.stop()


def test_camera_sim_refuses_unknown_style() -> None:
    sim = CameraSim()
    try:
        with pytest.raises(ValueError, match="style"):
            sim.show("GP1:X", style="billboard")
    finally:
        sim.stop()
