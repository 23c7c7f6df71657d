"""Frame sources chosen by URL: the same lane code reads a simulator, a folder, or a camera.

    sim://HOST:PORT          the camera simulator's TCP stream (length-prefixed greyscale frames)
    dir:///path/to/images    replay image files in name order (``?fps=8&loop=1``)
    fake-camera://NAME       an in-process fake the test shows images to (``camera_fake``)
    picamera2:               Raspberry Pi camera (YUV420 stream, Y plane = greyscale)
    uvc:0  uvc:/dev/video0   USB UVC camera through OpenCV, by index or device node
                             (a recorded video file's path plays as a camera the same way)

The Pi camera and UVC sources need a library the agent does not bring along (Debian's
python3-picamera2; OpenCV from the ``uvc`` extra). ``check_frame_source`` is called when the
lane's devices are opened, so a missing library stops the agent at start with one line
naming what to install, instead of a camera that is lost at every grab.

Every source has latest-frame semantics: a slow consumer gets the newest frame, never a queue
of stale ones. ``read(timeout)`` returns a new ``Frame`` or None on timeout; while a live
source is disconnected it raises ``CameraLost`` (the lane reports ``lane.camera_lost``) and
keeps reconnecting in the background.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import struct
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import numpy.typing as npt

from edge_agent.backoff import Backoff
from edge_agent.errors import ConfigError, DeviceError

# Wire format of sim:// (one frame): header, then width*height greyscale bytes, row-major.
FRAME_MAGIC = b"GLF1"
FRAME_HEADER = struct.Struct(">4sHHdI")  # magic, width, height, capture time, payload length
MAX_FRAME_BYTES = 4096 * 3072
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".pgm", ".tif", ".tiff"}


class CameraLost(DeviceError):
    """The frame source is gone; the lane reports ``lane.camera_lost`` and retries."""

    code = "lane.camera_lost"


class CameraLibraryMissing(ConfigError):
    """The configured camera needs a library that is not installed; the message says which."""


# scheme -> (module imported, what to install); the remedy is what a technician types.
CAMERA_LIBRARIES = {
    "picamera2": ("picamera2", "apt install python3-picamera2"),
    "uvc": ("cv2", "install gatelane[uvc] (opencv-python-headless)"),
}


def camera_library(scheme: str, url: str) -> ModuleType:
    """The library a ``picamera2:`` or ``uvc:`` source drives its camera with.

    Raises:
        CameraLibraryMissing: it cannot be imported (not installed, or blocked).
    """
    module, remedy = CAMERA_LIBRARIES[scheme]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CameraLibraryMissing(
            f"camera {url}: the {module} library is not installed ({exc}); {remedy}"
        ) from None


@dataclass(frozen=True, slots=True)
class Frame:
    image: npt.NDArray[np.uint8]  # greyscale, H x W
    at: float  # monotonic seconds when the frame arrived
    seq: int = 0


def encode_frame(image: npt.NDArray[np.uint8], at: float) -> bytes:
    """One sim:// frame on the wire (used by the camera simulator)."""
    h, w = image.shape
    payload = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    return FRAME_HEADER.pack(FRAME_MAGIC, w, h, at, len(payload)) + payload


class FrameSource(ABC):
    url: str = ""

    @abstractmethod
    def read(self, timeout: float) -> Frame | None:
        """The next new frame, or None when none arrived within ``timeout`` seconds."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    def ended(self) -> bool:
        """True when a finite source (a folder) has nothing more to give."""
        return False

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LatestFrame:
    """A one-slot mailbox: writers replace, the reader waits for something newer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._taken_seq = 0
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None and self._frame.seq > self._taken_seq:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def take(self, timeout: float, give_up: Any) -> Frame | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._frame is None or self._frame.seq <= self._taken_seq:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or give_up():
                    return None
                self._cond.wait(remaining)
            self._taken_seq = self._frame.seq
            return self._frame


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError("stream closed")
        buf += chunk
    return bytes(buf)


def reconnect_backoff() -> Backoff:
    """Reconnecting to a frame stream: 0.5 s doubling to 5 s."""
    return Backoff(0.5, 5.0)


class SimFrameSource(FrameSource):
    """Client of the camera simulator; a background thread keeps the newest frame.

    Reconnects follow ``backoff``, which starts over once a connection delivered a frame
    (a server that accepts and drops at once is not hammered).
    """

    def __init__(self, host: str, port: int, *, backoff: Backoff | None = None,
                 connect_timeout_s: float = 2.0) -> None:
        self.url = f"sim://{host}:{port}"
        self._addr = (host, port)
        self._backoff = backoff or reconnect_backoff()
        self._connect_timeout_s = connect_timeout_s
        self._slot = _LatestFrame()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._sock: socket.socket | None = None
        self._seq = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="camera-sim", daemon=True)
        self._thread.start()
        # Give the first connection a moment so the first read() usually finds a frame.
        self._connected.wait(connect_timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def dropped(self) -> int:
        return self._slot.dropped

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(self._addr, timeout=self._connect_timeout_s)
            except OSError as exc:
                self.last_error = str(exc)
                self._stop.wait(self._backoff.next())
                continue
            self._sock = sock
            sock.settimeout(None)
            self._connected.set()
            try:
                self._pump(sock)
            except (OSError, ConnectionError, ValueError) as exc:
                self.last_error = str(exc) or type(exc).__name__
            finally:
                self._connected.clear()
                self._slot.wake()
                sock.close()
                self._sock = None
            self._stop.wait(self._backoff.next())

    def _pump(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            magic, w, h, _at, length = FRAME_HEADER.unpack(_recv_exact(sock, FRAME_HEADER.size))
            if magic != FRAME_MAGIC or length != w * h or length > MAX_FRAME_BYTES:
                raise ValueError(f"bad frame header {magic!r} {w}x{h} {length}")
            payload = _recv_exact(sock, length)
            self._backoff.reset()
            self._seq += 1
            image = np.frombuffer(payload, np.uint8).reshape(h, w)
            self._slot.put(Frame(image, time.monotonic(), self._seq))

    def read(self, timeout: float) -> Frame | None:
        if self._stop.is_set():
            raise CameraLost(f"{self.url}: source closed")
        frame = self._slot.take(timeout, lambda: not self._connected.is_set())
        if frame is None and not self._connected.is_set():
            raise CameraLost(f"{self.url}: not connected ({self.last_error or 'connecting'})")
        return frame

    def close(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._slot.wake()
        self._thread.join(timeout=2)


class DirFrameSource(FrameSource):
    """Replays the images of a folder in name order, converted to greyscale."""

    def __init__(self, path: Path, *, fps: float = 0.0, loop: bool = False) -> None:
        self.url = f"dir://{path}"
        if not path.is_dir():
            raise ConfigError(f"{self.url}: not a directory")
        self._files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise ConfigError(f"{self.url}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._fps, self._loop = fps, loop
        self._index = 0
        self._next_at = 0.0
        self.current: Path | None = None

    @property
    def ended(self) -> bool:
        return not self._loop and self._index >= len(self._files)

    def read(self, timeout: float) -> Frame | None:
        from PIL import Image

        if self.ended:
            return None
        if self._fps > 0:
            wait = self._next_at - time.monotonic()
            if wait > timeout:
                time.sleep(max(0.0, timeout))
                return None
            time.sleep(max(0.0, wait))
            self._next_at = max(self._next_at, time.monotonic()) + 1 / self._fps
        path = self._files[self._index % len(self._files)]
        self._index += 1
        self.current = path
        try:
            with Image.open(path) as img:
                image = np.asarray(img.convert("L"))
        except OSError as exc:
            raise DeviceError(f"{path}: {exc}") from exc
        return Frame(image, time.monotonic(), self._index)

    def close(self) -> None:
        self._index = len(self._files)
        self._loop = False


class _GrabberSource(FrameSource):
    """A camera read by a grabber thread that keeps only the newest frame; a failed camera
    is reopened after a back-off that starts over once it delivers frames again."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._backoff = Backoff(1.0, 10.0)
        self._slot = _LatestFrame()
        self._stop = threading.Event()
        self._ok = threading.Event()
        self._seq = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="camera-grab", daemon=True)
        self._thread.start()

    def _grab(self) -> npt.NDArray[np.uint8] | None:
        raise NotImplementedError

    def _open(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._open()
                self._ok.set()
                while not self._stop.is_set():
                    image = self._grab()
                    if image is None:
                        raise DeviceError("no frame")
                    self._backoff.reset()
                    self._seq += 1
                    self._slot.put(Frame(image, time.monotonic(), self._seq))
            except Exception as exc:  # any driver failure means "camera lost, retry"
                self.last_error = str(exc) or type(exc).__name__
            finally:
                self._ok.clear()
                self._slot.wake()
                with contextlib.suppress(Exception):
                    self._release()
            self._stop.wait(self._backoff.next())

    def read(self, timeout: float) -> Frame | None:
        frame = self._slot.take(timeout, lambda: False)
        if frame is None and not self._ok.is_set():
            raise CameraLost(f"{self.url}: {self.last_error or 'starting'}")
        return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)


class PiCameraSource(_GrabberSource):
    """Pi camera via picamera2: a YUV420 stream whose Y plane is the greyscale frame."""

    def __init__(self, url: str, size: tuple[int, int] = (1280, 720)) -> None:
        self._size = size
        self._cam: Any = None
        self._lib: Any = camera_library("picamera2", url)  # before the grabber starts
        super().__init__(url)

    def _open(self) -> None:
        cam = self._lib.Picamera2()
        config = cam.create_video_configuration(
            main={"size": self._size, "format": "YUV420"}, buffer_count=2
        )
        cam.configure(config)
        cam.start()
        self._cam = cam

    def _grab(self) -> npt.NDArray[np.uint8] | None:
        yuv = self._cam.capture_array("main")
        w, h = self._size
        return np.ascontiguousarray(yuv[:h, :w])

    def _release(self) -> None:
        if self._cam is not None:
            self._cam.stop()
            self._cam.close()
            self._cam = None


class UvcSource(_GrabberSource):
    """USB UVC camera through OpenCV, by index (``uvc:0``) or device node (``uvc:/dev/video0``).

    A path that is a video file plays through the same capture code; at its end the camera
    counts as lost and is reopened (from the start) after the back-off.
    """

    def __init__(self, url: str, device: int | str) -> None:
        self._device = device
        self._cap: Any = None
        self._cv2: Any = camera_library("uvc", url)  # before the grabber starts
        super().__init__(url)

    def _open(self) -> None:
        cv2 = self._cv2
        device = self._device
        # A device node goes straight to V4L2; an index or a file lets OpenCV choose.
        backend = cv2.CAP_V4L2 if isinstance(device, str) and device.startswith("/dev/") \
            else cv2.CAP_ANY
        cap = cv2.VideoCapture(device, backend)
        if not cap.isOpened():
            cap.release()
            raise DeviceError(f"{self.url}: cannot open {device}")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones
        self._cap = cap

    def _grab(self) -> npt.NDArray[np.uint8] | None:
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        if image.ndim == 2:  # a greyscale device (or a Y-only format) needs no conversion
            return np.ascontiguousarray(image, dtype=np.uint8)
        return np.ascontiguousarray(self._cv2.cvtColor(image, self._cv2.COLOR_BGR2GRAY))

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def uvc_device(url: str) -> int | str:
    """The device of a ``uvc:`` URL: an index (``uvc:0``) or an absolute path."""
    parts = urlsplit(url)
    device = unquote(parts.netloc + parts.path) or "0"
    if device.isdigit():
        return int(device)
    if device.startswith("/"):
        return device
    raise ConfigError(
        f"{url}: expected uvc:N with a device index or uvc:/dev/videoN with a device node"
    )


def check_frame_source(url: str) -> None:
    """Refuse, before anything runs, a URL that ``open_frame_source`` would refuse for good:
    an unknown scheme, a malformed address, or a camera whose library is not installed.

    Raises:
        ConfigError: the URL is wrong (``CameraLibraryMissing`` when a library is missing).
    """
    scheme = urlsplit(url).scheme
    if scheme == "sim":
        parts = urlsplit(url)
        if not parts.hostname or parts.port is None:
            raise ConfigError(f"{url}: expected sim://HOST:PORT")
    elif scheme == "uvc":
        uvc_device(url)
        camera_library(scheme, url)
    elif scheme == "picamera2":
        camera_library(scheme, url)
    elif scheme not in ("dir", "fake-camera"):
        _refuse(url)


def open_frame_source(url: str) -> FrameSource:
    """Open a frame source by URL; raise ``ConfigError`` for an unknown or malformed URL."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "sim":
        if not parts.hostname or parts.port is None:
            raise ConfigError(f"{url}: expected sim://HOST:PORT")
        return SimFrameSource(parts.hostname, parts.port)
    if parts.scheme == "dir":
        path = Path(unquote(parts.netloc + parts.path))
        return DirFrameSource(path, fps=float(query.get("fps", 0)),
                              loop=query.get("loop", "0") in ("1", "true", "yes"))
    if parts.scheme == "fake-camera":
        from edge_agent.drivers.camera_fake import open_fake_source

        return open_fake_source(url)
    if parts.scheme == "picamera2":
        return PiCameraSource(url)
    if parts.scheme == "uvc":
        return UvcSource(url, uvc_device(url))
    _refuse(url)


def _refuse(url: str) -> NoReturn:
    if urlsplit(url).scheme == "file":
        raise ConfigError(f"{url}: video files are not supported yet; use dir:// with frames")
    raise ConfigError(
        f"{url}: unknown frame source (sim://, dir://, fake-camera://, picamera2:, uvc:N,"
        " uvc:/dev/videoN)"
    )
