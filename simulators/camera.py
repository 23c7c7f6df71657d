"""The lane camera, simulated: renders what the driver holds up and streams it over TCP.

Clients connect to ``sim://HOST:PORT`` (``edge_agent.drivers.camera``) and receive greyscale
frames at ``fps`` in the same wire format the driver decodes (``encode_frame``). The scene is
rendered by ``simulators.pass_render`` with a small hand tremor per frame and seeded noise, so
a run is reproducible given its seed. ``drop_clients()`` simulates a camera cable pulled out.

The same simulator is a lane's plate camera: ``show_plate(PlateSighting(...))`` puts a truck
front with that plate in the frames (``simulators.plate_render``), in the sighting's condition,
until ``show_plate(None)``. The wire is greyscale, as from a mono or IR plate camera;
``render_color()`` gives the colour frame for code that reads frames in process.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_agent.drivers.camera import encode_frame
from simulators.errors import SimulatorSetupError
from simulators.pass_render import STYLES, render_pass_frame
from simulators.plate_render import (
    Condition,
    PlateSighting,
    draw_condition,
    render_plate_frame,
    to_gray,
)


@dataclass
class _Showing:
    text: str | None = None
    style: str = "phone"
    params: dict[str, Any] = field(default_factory=dict)
    plate: PlateSighting | None = None
    condition: Condition | None = None  # drawn once per plate sighting


class CameraSim:
    """A TCP frame server that renders the current scene ``fps`` times a second."""

    def __init__(self, *, fps: float = 8, seed: int = 0, host: str = "127.0.0.1",
                 port: int = 0, size: tuple[int, int] = (1280, 720)) -> None:
        self.fps = fps
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._seed = seed
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        self._host, self._port = self._listener.getsockname()[:2]
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._showing = _Showing()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.frames_sent = 0
        self.paused = False
        self.last_error = ""

    @property
    def url(self) -> str:
        return f"sim://{self._host}:{self._port}"

    def start(self) -> None:
        for target, name in ((self._accept, "camsim-accept"), (self._stream, "camsim-stream")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def show(self, text: str | None, style: str = "phone", **params: Any) -> None:
        """What the driver holds up now (None = nothing). ``params`` go to the renderer.

        Each showing gets its own hold: where the card is, its size and tilt, drawn once so
        consecutive frames look like one hand holding one phone.
        """
        if style not in STYLES:
            raise SimulatorSetupError(f"style must be one of {STYLES}, not {style!r}")
        rng = self._rng
        hold: dict[str, Any] = {
            "px_per_module": float(rng.uniform(3.6, 5.0)),
            "rotation_deg": float(rng.uniform(-12, 12)),
            "perspective": float(rng.uniform(-0.15, 0.15)),
            "center": (float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.4, 0.6))),
            "noise": 3.0,
        }
        hold.update(params)
        with self._lock:
            self._showing = _Showing(text, style, hold)

    def show_plate(self, sighting: PlateSighting | None) -> None:
        """A truck carrying ``sighting``'s plate is in front of the camera (None = it left).

        The condition's parameters (tilt, blur, dirt, where the bar is) are drawn once here,
        so consecutive frames show one truck; only sensor noise and vibration vary.
        """
        with self._lock:
            if sighting is None:
                self._showing = _Showing()
                return
            condition = draw_condition(sighting.condition, self._rng)
            self._showing = _Showing(plate=sighting, condition=condition)

    def render_color(self) -> np.ndarray:
        """The frame the camera would see now, BGR: a plate scene in colour, a pass in grey."""
        with self._lock:
            showing = self._showing
        if showing.plate is None or showing.condition is None:
            return np.repeat(self.render()[..., None], 3, axis=2)
        sighting = showing.plate
        return render_plate_frame(
            sighting.text, sighting.kind, rng=self._rng, condition=showing.condition,
            plate_width_px=sighting.plate_width_px, size=self.size, centre=sighting.centre,
            scene_seed=self._seed).image

    def drop_clients(self) -> None:
        """Close every client connection (the driver must report the loss and reconnect)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def render(self) -> np.ndarray:
        """The frame the camera would see now."""
        with self._lock:
            showing = self._showing
        if showing.plate is not None:
            return to_gray(self.render_color())
        params = dict(showing.params)
        if "rotation_deg" in params:  # hand tremor
            params["rotation_deg"] += float(self._rng.normal(0, 0.4))
        return render_pass_frame(showing.text, rng=self._rng, style=showing.style,
                                 size=self.size, scene_seed=self._seed, **params)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(2.0)
            with self._lock:
                self._clients.append(sock)

    def _stream(self) -> None:
        period = 1.0 / self.fps
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += period
            with self._lock:
                clients = list(self._clients)
            if clients and not self.paused:
                try:
                    data = encode_frame(self.render(), time.time())
                except Exception as exc:  # a bad scene must not kill the camera thread
                    self.last_error = f"render failed: {exc!r}"
                    self._stop.wait(period)
                    continue
                for sock in clients:
                    try:
                        sock.sendall(data)
                    except OSError:
                        self._forget(sock)
                self.frames_sent += 1
            delay = next_at - time.monotonic()
            if delay < -period:  # fell behind (slow machine): do not try to catch up
                next_at = time.monotonic()
            self._stop.wait(max(0.0, delay))

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            if sock in self._clients:
                self._clients.remove(sock)
        sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=2)
        self.drop_clients()
