"""Decoding in a supervised child process: crashes and hangs cost one frame, not the lane."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.vision.pipeline import FrameDecoder, QrPipeline
from edge_agent.vision.worker import DecoderFailed, DecodeWorker
from simulators.pass_render import render_pass_frame

TEXT = "GP1:WORKER TEST 0042"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return render_pass_frame(TEXT, rng=np.random.default_rng(0))


@pytest.fixture
def worker() -> DecodeWorker:
    w = DecodeWorker(timeout_s=1.0, allow_faults=True)
    yield w
    w.close()


def test_worker_decodes_like_the_local_cascade(worker: DecodeWorker, frame: np.ndarray) -> None:
    reads = worker.run(frame, ("zxing",))
    assert [r.text for r in reads] == [TEXT]
    assert len(reads[0].polygon) == 4 and reads[0].modules > 0


def test_crash_is_reported_and_the_worker_restarts(worker: DecodeWorker,
                                                   frame: np.ndarray) -> None:
    first_pid = worker.pid
    with pytest.raises(DecoderFailed, match="exit code"):
        worker.run(frame, ("fault-abort",))
    assert [r.text for r in worker.run(frame, ("zxing",))] == [TEXT]
    assert worker.pid != first_pid and worker.restarts == 1 and worker.failures == 1


def test_hang_is_cut_off(worker: DecodeWorker, frame: np.ndarray) -> None:
    with pytest.raises(DecoderFailed, match="no answer"):
        worker.run(frame, ("fault-hang",))
    assert [r.text for r in worker.run(frame, ("zxing",))] == [TEXT]


def test_fault_stages_are_ignored_unless_allowed(frame: np.ndarray) -> None:
    with DecodeWorker(timeout_s=2.0) as plain:
        assert [r.text for r in plain.run(frame, ("fault-abort", "zxing"))] == [TEXT]


def test_pipeline_survives_a_decoder_crash(worker: DecodeWorker, frame: np.ndarray) -> None:
    decoder = FrameDecoder(worker=worker)
    pipe = QrPipeline(confirm_frames=2, decoder=decoder, motion_gate=False)
    with pytest.raises(DecoderFailed):  # the child dies; the pipeline's next call restarts it
        worker.run(frame, ("fault-abort",))
    reads = [r for t in range(4) for r in pipe.process(frame, t * 0.1)]
    assert [r.text for r in reads] == [TEXT]


def test_isolated_pipeline_end_to_end(frame: np.ndarray) -> None:
    pipe = QrPipeline(isolate=True, motion_gate=False)
    try:
        reads = [r for t in range(3) for r in pipe.process(frame, t * 0.1)]
        assert [r.text for r in reads] == [TEXT]
    finally:
        pipe.close()
