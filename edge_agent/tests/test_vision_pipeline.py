"""The decoding cascade and the live pipeline: real photos, rendered gate frames, confirmation."""

from __future__ import annotations

import numpy as np
import pytest
import zxingcpp

from edge_agent.vision.engines import as_gray, zbar_read, zxing_read
from edge_agent.vision.pipeline import FrameDecoder, QrPipeline, decode_frame, module_px
from simulators.pass_render import render_pass_frame
from simulators.qr_corpus import load_corpus

PASS = "GP1:" + "6BFOXN*TS0BI$ZDFRH AX4-CK.S0D %Y:9 3-%LP$WFE2 *3DSG2HXZ" * 5




def test_photo_corpus_beats_zxing_alone() -> None:
    items = load_corpus()
    assert len(items) == 137
    qr = zxingcpp.BarcodeFormat.QRCode
    raw = sum(exp in [r.text for r in zxingcpp.read_barcodes(g, formats=qr)]
              for _, exp, g in items)
    ours = sum(exp in [r.text for r in decode_frame(g)] for _, exp, g in items)
    assert ours >= raw
    assert ours >= 128, f"pipeline read {ours}/137"


def _frame(seed: int, text: str | None = PASS, **kw: object) -> np.ndarray:
    return render_pass_frame(text, rng=np.random.default_rng(seed), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [
    {}, {"style": "paper"}, {"invert": True}, {"rotation_deg": 18, "perspective": 0.2},
    {"blur": 1.0, "noise": 5}, {"contrast": 0.5}, {"glare": 0.3}, {"px_per_module": 3},
])
def test_rendered_frames_decode(kw: dict[str, object]) -> None:
    reads = decode_frame(_frame(3, **kw))
    assert [r.text for r in reads] == [PASS]
    assert len(reads[0].polygon) == 4


def test_empty_scenes_read_nothing() -> None:
    for seed in range(5):
        assert decode_frame(_frame(seed, None)) == []
        assert decode_frame(_frame(seed, None, style="paper")) == []


def test_zbar_engine_reads_and_inverts() -> None:
    frame = _frame(1, px_per_module=5)
    assert [r.text for r in zbar_read(frame)] == [PASS]
    inverted = 255 - frame
    assert [r.text for r in zbar_read(inverted)] == [PASS]
    assert zbar_read(inverted, invert_retry=False) == []


def test_zxing_polygon_is_scaled_back() -> None:
    frame = _frame(2, px_per_module=6)
    full = zxing_read(frame)[0].polygon
    half = zxing_read(np.ascontiguousarray(frame[::2, ::2]), scale=2)[0].polygon
    assert np.allclose(np.array(full), np.array(half), atol=8)
    assert module_px(full, 69) == pytest.approx(6, rel=0.1)


def test_colour_and_bad_arrays() -> None:
    frame = _frame(4)
    rgb = np.dstack([frame] * 3)
    assert np.array_equal(as_gray(rgb), frame) or np.abs(
        as_gray(rgb).astype(int) - frame).max() <= 1
    with pytest.raises(ValueError, match="uint8"):
        as_gray(frame.astype(np.float32))


# -- live pipeline ------------------------------------------------------------------------------
def test_confirmation_needs_two_reads_then_debounces() -> None:
    pipe = QrPipeline(confirm_frames=2, debounce_s=10)
    frame = _frame(5)
    assert pipe.process(frame, 0.0) == []
    assert [r.text for r in pipe.last_raw] == [PASS]  # seen, not yet confirmed
    confirmed = pipe.process(frame, 0.1)
    assert [r.text for r in confirmed] == [PASS] and confirmed[0].at == 0.1
    # Held in view: never handed out again.
    for i in range(2, 30):
        assert pipe.process(frame, i * 0.1) == []
    # Out of view for longer than the debounce: it can be read again.
    empty = _frame(5, None)
    for t in (3.0, 8.0, 13.5):
        assert pipe.process(empty, t) == []
    assert pipe.process(frame, 14.0) == []
    assert [r.text for r in pipe.process(frame, 14.1)] == [PASS]


def test_short_absence_does_not_rearm() -> None:
    pipe = QrPipeline(confirm_frames=1, debounce_s=10, motion_gate=False)
    frame, empty = _frame(6), _frame(6, None)
    assert len(pipe.process(frame, 0.0)) == 1
    assert pipe.process(empty, 2.0) == []
    assert pipe.process(frame, 4.0) == []


def test_a_different_code_breaks_the_streak() -> None:
    pipe = QrPipeline(confirm_frames=2, motion_gate=False)
    a, b = _frame(7, "GP1:AAAA1111"), _frame(7, "GP1:BBBB2222")
    assert pipe.process(a, 0.0) == []
    assert pipe.process(b, 0.1) == []
    assert [r.text for r in pipe.process(b, 0.2)] == ["GP1:BBBB2222"]
    assert pipe.process(a, 0.3) == []


def test_stale_candidate_expires() -> None:
    pipe = QrPipeline(confirm_frames=2, confirm_window_s=1.0, motion_gate=False)
    frame = _frame(8)
    assert pipe.process(frame, 0.0) == []
    assert pipe.process(frame, 5.0) == []
    assert len(pipe.process(frame, 5.1)) == 1


def test_forget_rearms_a_text() -> None:
    pipe = QrPipeline(confirm_frames=1)
    frame = _frame(9)
    assert len(pipe.process(frame, 0.0)) == 1
    pipe.forget(PASS)
    assert len(pipe.process(frame, 0.1)) == 1


def test_motion_gate_skips_still_frames_but_decodes_every_nth() -> None:
    pipe = QrPipeline(decode_every_n=4)
    empty = _frame(10, None)
    for i in range(12):
        pipe.process(empty, i * 0.1)
    assert pipe.frames == 12
    assert 3 <= pipe.decoded_frames <= 4
    assert len(pipe.timings()) == 12


def test_code_in_view_keeps_being_decoded() -> None:
    pipe = QrPipeline(decode_every_n=50)
    frame = _frame(11)
    for i in range(6):
        pipe.process(frame, i * 0.1)
    assert pipe.decoded_frames == 6


def test_roi_limits_the_search_and_reports_frame_coordinates() -> None:
    frame = _frame(12, center=(0.3, 0.5))
    h, w = frame.shape
    left = QrPipeline(confirm_frames=1, roi=(0, 0, w // 2 + 100, h))
    right = QrPipeline(confirm_frames=1, roi=(w // 2 + 100, 0, w // 2 - 100, h))
    reads = left.process(frame, 0.0)
    assert [r.text for r in reads] == [PASS]
    assert min(x for x, _ in reads[0].polygon) > 100
    assert right.process(frame, 0.0) == []


def test_pipeline_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        QrPipeline(confirm_frames=0)


def test_resolution_guard_keeps_three_px_per_module() -> None:
    text = "GP1:GUARD TEST 1234567890"
    decoder = FrameDecoder(max_downscale=4)
    big = render_pass_frame(text, rng=np.random.default_rng(1), px_per_module=8,
                            size=(1920, 1080))
    assert decoder.downscale() == 1  # nothing known yet: full resolution
    full = decoder.decode(big)
    assert [r.text for r in full] == [text]
    assert decoder.downscale() == 2  # 8 px/module: stride 2 leaves 4, stride 3 would leave 2.7
    reduced = decoder.decode(big)
    assert [r.text for r in reduced] == [text]
    assert np.allclose(np.array(reduced[0].polygon), np.array(full[0].polygon), atol=6)
    assert decoder.decode(_frame(1, None, size=(1920, 1080))) == []
    assert decoder.downscale() == 1  # code lost: search at full resolution again


def test_frames_too_small_for_a_code_are_not_decoded() -> None:
    from edge_agent.vision.pipeline import QrPipeline

    pipeline = QrPipeline(confirm_frames=1)
    try:
        for shape in ((0, 0), (1, 1), (1, 4000), (20, 640)):
            assert pipeline.process(np.zeros(shape, np.uint8), 1.0) == []
        assert pipeline.decoded_frames == 0
    finally:
        pipeline.close()
