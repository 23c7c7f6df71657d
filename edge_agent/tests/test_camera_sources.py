"""Frame sources by URL: the camera simulator over TCP, folder replay, errors and reconnects."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_agent.drivers.camera import (
    FRAME_HEADER,
    CameraLost,
    DirFrameSource,
    encode_frame,
    open_frame_source,
)
from edge_agent.errors import ConfigError
from edge_agent.vision.pipeline import QrPipeline
from simulators.camera import CameraSim

PASS = "GP1:HELLO LANE 0123456789 $%*+-./:"


@pytest.fixture
def camera() -> CameraSim:
    sim = CameraSim(fps=20, seed=3, size=(640, 360))
    sim.start()
    yield sim
    sim.stop()


def read_until(source, predicate, deadline_s: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            frame = source.read(0.5)
        except CameraLost:
            time.sleep(0.05)
            continue
        if frame is not None and predicate(frame):
            return frame
    raise AssertionError("condition not met before the deadline")


def test_sim_to_pipeline_end_to_end(camera: CameraSim) -> None:
    camera.show(PASS, px_per_module=3.5)
    pipe = QrPipeline()
    confirmed: list[str] = []
    with open_frame_source(camera.url) as source:
        read_until(source, lambda f: bool(confirmed.extend(
            r.text for r in pipe.process(f.image, f.at))) or bool(confirmed))
        frame = source.read(2.0)
    assert confirmed == [PASS]
    assert frame is not None and frame.image.shape == (360, 640)


def test_sim_source_drops_stale_frames(camera: CameraSim) -> None:
    with open_frame_source(camera.url) as source:
        first = read_until(source, lambda f: True)
        deadline = time.monotonic() + 5
        while source.dropped < 2 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.02)  # not reading: frames arrive and replace each other
        newest = source.read(2.0)
        assert newest is not None and newest.seq > first.seq + 1
        assert source.dropped >= 1  # type: ignore[attr-defined]


def test_lost_camera_is_reported_then_reconnects(camera: CameraSim) -> None:
    with open_frame_source(camera.url) as source:
        read_until(source, lambda f: True)
        camera.drop_clients()
        deadline = time.monotonic() + 5
        lost = False
        while time.monotonic() < deadline and not lost:
            try:
                source.read(0.2)
            except CameraLost as exc:
                lost = exc.code == "lane.camera_lost"
        assert lost
        assert read_until(source, lambda f: True) is not None


def test_unreachable_sim_raises_camera_lost() -> None:
    sim = CameraSim()
    url = sim.url
    sim.stop()  # nothing listens there any more
    source = open_frame_source(url)
    try:
        with pytest.raises(CameraLost, match="not connected"):
            source.read(0.2)
    finally:
        source.close()


def test_wire_format() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    data = encode_frame(image, 12.5)
    magic, w, h, at, length = FRAME_HEADER.unpack(data[: FRAME_HEADER.size])
    assert (magic, w, h, at, length) == (b"GLF1", 4, 3, 12.5, 12)
    assert data[FRAME_HEADER.size :] == image.tobytes()


def test_dir_source_replays_in_order(tmp_path: Path) -> None:
    for i, value in enumerate((10, 20, 30)):
        Image.new("RGB", (8, 6), (value, value, value)).save(tmp_path / f"f{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_frame_source(f"dir://{tmp_path}")
    assert isinstance(source, DirFrameSource)
    values = []
    while (frame := source.read(0.1)) is not None:
        assert frame.image.shape == (6, 8) and frame.image.dtype == np.uint8
        values.append(int(frame.image[0, 0]))
    assert values == [10, 20, 30] and source.ended


def test_dir_source_loops(tmp_path: Path) -> None:
    Image.new("L", (4, 4), 7).save(tmp_path / "a.png")
    source = open_frame_source(f"dir://{tmp_path}?loop=1")
    assert all(source.read(0.1) is not None for _ in range(5))
    source.close()
    assert source.read(0.1) is None


@pytest.mark.parametrize(("url", "match"), [
    ("sim://nohost", "HOST:PORT"), ("rtsp://cam/1", "unknown frame source"),
    ("dir:///definitely/not/here", "not a directory"), ("uvc:front", "device index"),
    ("file:///video.mp4", "not supported"),
])
def test_bad_urls_name_the_problem(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        open_frame_source(url)


def test_empty_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no images"):
        open_frame_source(f"dir://{tmp_path}")
