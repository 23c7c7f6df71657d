"""Plate reading in a supervised child process: a crash or hang costs one frame, not the lane;
an engine that cannot run here is said so once, at start."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from edge_agent.vision.plate_worker import PlateReadFailed, PlateWorker
from edge_agent.vision.plates import PlateEngineMissing
from edge_agent.vision.plates_fake import ABORT_MARK, HANG_MARK

pytestmark = pytest.mark.process

FAULTY = "edge_agent.vision.plates_fake:faulty_engine"


def image(mark: int = 0, channels: int = 3) -> np.ndarray:
    shape = (48, 120, channels) if channels > 1 else (48, 120)
    out = np.full(shape, 100, dtype=np.uint8)
    out.reshape(-1)[0] = mark
    return out


@pytest.fixture
def worker() -> Iterator[PlateWorker]:
    with PlateWorker(engine=FAULTY, timeout_s=1.0) as w:
        yield w


def test_reads_come_back_from_the_child(worker: PlateWorker) -> None:
    [read] = worker.read(image())
    assert (read.text, read.confidence, read.box) == ("沪A12345", 0.9, (1, 1, 10, 5))
    assert [r.text for r in worker.read(image(channels=1))] == ["沪A12345"]


@pytest.mark.parametrize("mark", [ABORT_MARK, HANG_MARK])
def test_a_crash_or_a_hang_costs_one_frame_and_the_next_one_is_read(
    worker: PlateWorker, mark: int,
) -> None:
    first = worker.pid
    with pytest.raises(PlateReadFailed, match="restarting"):
        worker.read(image(mark))
    assert [r.text for r in worker.read(image())] == ["沪A12345"]
    assert worker.restarts == 1 and worker.failures == 1 and worker.pid != first


def test_an_engine_that_cannot_run_here_says_why_at_start() -> None:
    with pytest.raises(PlateEngineMissing, match="models not installed"):
        PlateWorker(engine="edge_agent.vision.plates_fake:missing_engine")


def test_the_real_engine_either_runs_or_says_why() -> None:
    try:
        worker = PlateWorker(timeout_s=30.0)
    except PlateEngineMissing as exc:
        assert str(exc)  # e.g. OpenCV without its Caffe importer: the reason is given
        return
    with worker:
        assert worker.read(np.zeros((360, 640, 3), dtype=np.uint8)) == []
