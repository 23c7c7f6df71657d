"""The real camera sources: UVC through OpenCV on a recorded MJPG video, a device node that is
not there, and a missing camera library stopping the agent at start with one line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.drivers.camera import (
    CameraLibraryMissing,
    CameraLost,
    Frame,
    FrameSource,
    check_frame_source,
    open_frame_source,
)
from edge_agent.errors import ConfigError
from edge_agent.protocols import gp1
from edge_agent.vision.pipeline import decode_frame
from simulators.qr_corpus import CORPUS

SIZE = (640, 480)  # width, height of the recorded video
# Photos of the corpus that still decode after MJPG at quality 90 (checked in the test).
PHOTOS = ("qrcode-1/1.webp", "qrcode-1/13.webp", "qrcode-1/17.webp")
FRAMES_EACH = 40


def photo_frame(path: Path) -> np.ndarray:
    """The photo's greyscale pixels on a white 640x480 canvas, top left."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert gray is not None, path
    canvas = np.full((SIZE[1], SIZE[0]), 255, np.uint8)
    canvas[: gray.shape[0], : gray.shape[1]] = gray
    return canvas


def write_mjpg(path: Path, frames: list[np.ndarray]) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, SIZE)
    assert writer.isOpened(), "OpenCV cannot write MJPG AVI"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def read_or_lost(source: FrameSource, timeout: float) -> Frame | CameraLost | None:
    try:
        return source.read(timeout)
    except CameraLost as exc:
        return exc


def test_uvc_source_plays_a_recorded_mjpg_video_through_opencv(tmp_path: Path) -> None:
    expected = {(CORPUS / name).with_suffix(".txt").read_bytes().decode() for name in PHOTOS}
    video = tmp_path / "gate.avi"
    write_mjpg(video, [photo_frame(CORPUS / name) for name in PHOTOS for _ in range(FRAMES_EACH)])

    seen: set[str] = set()
    losses = frames_after_loss = 0
    source = open_frame_source(f"uvc:{video}")
    try:
        deadline = time.monotonic() + 30  # a guard against a hang, not a speed target
        while time.monotonic() < deadline and (seen != expected or not frames_after_loss):
            got = read_or_lost(source, 0.5)
            if isinstance(got, CameraLost):
                # The end of the file: the camera is lost, then reopened from the start.
                assert got.code == "lane.camera_lost" and str(video) in str(got)
                losses += 1
                continue
            if got is None:
                continue
            assert got.image.dtype == np.uint8 and got.image.shape == (SIZE[1], SIZE[0])
            frames_after_loss += losses > 0
            seen |= {read.text for read in decode_frame(got.image)}
    finally:
        source.close()
    assert seen == expected
    assert losses >= 1 and frames_after_loss >= 1


def test_a_uvc_device_node_that_is_not_there_is_a_lost_camera() -> None:
    source = open_frame_source("uvc:/dev/video-not-plugged")
    try:
        deadline = time.monotonic() + 10
        got = read_or_lost(source, 0.5)
        while got is None and time.monotonic() < deadline:
            got = read_or_lost(source, 0.5)
    finally:
        source.close()
    assert isinstance(got, CameraLost)
    assert "cannot open /dev/video-not-plugged" in str(got)


@pytest.mark.parametrize("url", ["uvc:front", "uvc:video0"])
def test_a_uvc_url_without_an_index_or_a_device_node_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="device index or uvc:/dev/videoN"):
        check_frame_source(url)


@pytest.mark.parametrize(("url", "match"), [
    ("rtsp://camera/1", "unknown frame source"), ("file:///gate.mp4", "not supported"),
    ("sim://no-port", "expected sim://HOST:PORT"),
])
def test_the_start_check_refuses_what_would_never_open(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_frame_source(url)


def test_opencv_present_passes_the_start_check() -> None:
    check_frame_source("uvc:0")
    check_frame_source("uvc:/dev/video0")


# -- a missing library, for real: the module made unimportable in a fresh interpreter ------


def blocked(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``import module`` fails."""
    prelude = f"import sys; sys.modules[{module!r}] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(("url", "module", "remedy"), [
    ("picamera2:", "picamera2", "apt install python3-picamera2"),
    ("uvc:0", "cv2", "install gatelane[uvc] (opencv-python-headless)"),
])
def test_a_missing_camera_library_is_named_with_what_to_install(
    url: str, module: str, remedy: str
) -> None:
    done = blocked(module, f"""
from edge_agent.drivers.camera import CameraLibraryMissing, open_frame_source
try:
    open_frame_source({url!r})
except CameraLibraryMissing as exc:
    print(exc)
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"camera {url}: the {module} library is not installed " \
        f"(import of {module} halted; None in sys.modules); {remedy}"


def lane_config(tmp_path: Path, camera: str) -> Path:
    _key, trust = gp1.write_keypair(tmp_path / "keys", "ed25519")
    state = tmp_path / "state"
    path = tmp_path / "agent.toml"
    path.write_text(f"""[lane]
site = "BZ01"
lane = "exit-03"
gate = "G3"
direction = "exit"
state_dir = "{state}"

[io_board]
url = "fake-ioboard://camera-check"

[weighbridge]
url = "fake-indicator://camera-check"
protocol = "yaohua-tf0"

[camera]
source = "{camera}"

[passes]
trust_list = "{trust}"
ledger = "{state / 'passes.sqlite'}"

[mqtt]
broker = "mqtt://127.0.0.1:9"
lab = true

[control]
socket = "{tmp_path / 'control.sock'}"
""", encoding="utf-8")
    return path


@pytest.mark.parametrize(("url", "module", "remedy"), [
    ("picamera2:", "picamera2", "apt install python3-picamera2"),
    ("uvc:/dev/video0", "cv2", "install gatelane[uvc] (opencv-python-headless)"),
])
def test_the_agent_stops_at_start_with_one_line_when_the_camera_library_is_missing(
    tmp_path: Path, url: str, module: str, remedy: str
) -> None:
    config = lane_config(tmp_path, url)
    done = blocked(module, f"""
from edge_agent.service import main
sys.exit(main(["--config", {str(config)!r}]))
""")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output
    assert [line for line in output.splitlines() if remedy in line] != []
    assert len([line for line in output.splitlines() if remedy in line]) == 1
    # Stopped when the devices were opened: no store was created, no lane ran.
    assert not (tmp_path / "state" / "outbox.sqlite").exists()
    assert not (tmp_path / "state" / "passes.sqlite").exists()


def test_the_start_check_raises_the_library_error_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraLibraryMissing, match="apt install python3-picamera2"):
        check_frame_source("picamera2:")
