"""Frame sources by URL: the camera simulator over TCP, folder replay, the in-process fake,
errors and reconnects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from edge_agent.backoff import Backoff
from edge_agent.drivers.camera import (
    FRAME_HEADER,
    CameraLost,
    DirFrameSource,
    Frame,
    SimFrameSource,
    encode_frame,
    open_frame_source,
)
from edge_agent.drivers.camera_fake import CAMERAS, FakeCamera
from edge_agent.errors import ConfigError
from edge_agent.vision.pipeline import QrPipeline
from simulators.camera import CameraSim
from simulators.pass_render import render_pass_frame

PASS = "GP1:HELLO LANE 0123456789 $%*+-./:"


@pytest.fixture
def camera() -> Iterator[CameraSim]:
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

    def decode(frame: Frame) -> bool:
        confirmed.extend(r.text for r in pipe.process(frame.image, frame.at))
        return bool(confirmed)

    with open_frame_source(camera.url) as source:
        read_until(source, decode)
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


# ---- the fake camera, in virtual time -------------------------------------------------------
class Clock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[tuple[FakeCamera, Clock]]:
    clock = Clock()
    camera = CAMERAS.register("test-cam", FakeCamera(clock=clock, fps=10, size=(32, 24)))
    yield camera, clock
    CAMERAS.unregister("test-cam")


def test_fake_camera_by_url_shows_what_it_is_shown(fake: tuple[FakeCamera, Clock]) -> None:
    camera, clock = fake
    source = open_frame_source("fake-camera://test-cam")
    assert source is camera and source.url == "fake-camera://test-cam"
    first = source.read(5.0)  # the frame due at the open
    assert first is not None and first.image.shape == (24, 32) and first.at == 500.0
    assert source.read(5.0) is None  # nothing new yet, and a virtual clock never blocks
    image = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32).astype(np.uint8)
    clock.now = 500.05
    camera.show(image)
    assert source.read(0) is None  # the next frame is due at 500.1
    clock.now = 500.1
    frame = source.read(0)
    assert frame is not None and frame.at == pytest.approx(500.1) and frame.seq > first.seq
    assert np.array_equal(frame.image, image) and not frame.image.flags.writeable
    camera.blank()
    clock.now = 500.2
    blank = source.read(0)
    assert blank is not None and set(np.unique(blank.image)) == {128}


def test_fake_camera_keeps_only_the_newest_frame(fake: tuple[FakeCamera, Clock]) -> None:
    camera, clock = fake
    source = open_frame_source("fake-camera://test-cam")
    source.read(0)
    camera.show(np.zeros((24, 32), np.uint8))
    clock.now += 0.35  # three frames due: the newest is read, the two before it replaced
    newest = source.read(0)
    assert newest is not None and newest.at == pytest.approx(500.3)
    assert camera.dropped == 2 and source.read(0) is None


def test_fake_camera_frame_taken_before_a_show_keeps_the_old_scene(
    fake: tuple[FakeCamera, Clock],
) -> None:
    camera, clock = fake
    source = open_frame_source("fake-camera://test-cam")
    source.read(0)
    clock.now = 500.15  # the 500.1 frame was taken, not yet read
    camera.show(np.zeros((24, 32), np.uint8))
    frame = source.read(0)
    assert frame is not None and frame.at == pytest.approx(500.1)
    assert set(np.unique(frame.image)) == {128}


def test_fake_camera_glitch_loss_and_reopen(fake: tuple[FakeCamera, Clock]) -> None:
    camera, clock = fake
    source = open_frame_source("fake-camera://test-cam")
    camera.fail("cable shaken")
    with pytest.raises(CameraLost, match="cable shaken") as lost:
        source.read(0)
    assert lost.value.code == "lane.camera_lost"
    assert source.read(0) is not None  # a glitch costs one read
    camera.lose("unplugged")
    clock.now += 1
    with pytest.raises(CameraLost, match="unplugged"):
        source.read(0)
    source.close()
    with pytest.raises(CameraLost, match="unplugged"):
        open_frame_source("fake-camera://test-cam")
    camera.restore()
    with pytest.raises(CameraLost, match="closed"):
        source.read(0)
    reopened = open_frame_source("fake-camera://test-cam")
    clock.now += 0.1
    assert reopened.read(0) is not None


def test_fake_camera_refuses_what_is_not_a_greyscale_image() -> None:
    camera = FakeCamera(clock=Clock())
    with pytest.raises(ValueError, match="greyscale"):
        camera.show(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="greyscale"):
        camera.show(np.zeros((4, 4), np.float32))


def test_fake_camera_to_pipeline_end_to_end() -> None:
    clock = Clock()
    camera = CAMERAS.register("pipeline-cam", FakeCamera(clock=clock, fps=8))
    try:
        source = open_frame_source("fake-camera://pipeline-cam")
        rng = np.random.default_rng(4)
        camera.show(render_pass_frame(PASS, rng=rng, px_per_module=4, size=(640, 360),
                                      center=(0.5, 0.5)))
        pipe = QrPipeline()
        confirmed: list[tuple[str, float]] = []
        for _ in range(6):
            clock.now += 0.125
            frame = source.read(0)
            assert frame is not None
            confirmed += [(r.text, frame.at) for r in pipe.process(frame.image, frame.at)]
    finally:
        CAMERAS.unregister("pipeline-cam")
    assert [text for text, _ in confirmed] == [PASS]
    assert confirmed[0][1] == pytest.approx(500.25)  # the second frame confirms it


def test_a_fake_camera_on_the_wall_clock_waits_for_its_frames() -> None:
    camera = FakeCamera(fps=50)
    frames = [camera.read(1.0) for _ in range(3)]
    assert all(f is not None for f in frames)
    stamps = [f.at for f in frames if f is not None]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_sim_source_backs_off_and_starts_over_after_a_frame(camera: CameraSim) -> None:
    class Recording(Backoff):
        def __init__(self) -> None:
            super().__init__(0.05, 0.2, jitter=0.0)
            self.calls: list[str] = []

        def next(self) -> float:
            self.calls.append("next")
            return super().next()

        def reset(self) -> None:
            self.calls.append("reset")
            super().reset()

    backoff = Recording()
    parts = urlsplit(camera.url)
    assert parts.hostname and parts.port
    source = SimFrameSource(parts.hostname, parts.port, backoff=backoff)
    try:
        read_until(source, lambda f: True)
        camera.drop_clients()
        read_until(source, lambda f: f.seq > 1 and "next" in backoff.calls)
    finally:
        source.close()
    assert backoff.calls[0] == "reset"  # the first frame
    first_next = backoff.calls.index("next")
    assert "reset" in backoff.calls[first_next:]  # frames again after the reconnect
