"""A lane whose page is served: the real LaneAgent on the fakes (``VirtualLane``), its status
board behind the real page server on a loopback port, and a camera that shows the driver's
pass as a QR code exactly where the lane reports the code's outline.

``run_real_time`` steps the lane in a thread at ``speed`` times real time, so that a browser
polling the page sees the truck as a technician would (only faster)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.web.server import serve_page
from simulators.pass_render import qr_modules
from simulators.scenarios import DEMO, TruckPlan
from simulators.virtual_lane import QR_OUTLINE, VirtualLane

VALID = DEMO.trucks[0]
MISMATCH = next(p for p in DEMO.trucks if p.name == "mismatch")


def with_code(scene: npt.NDArray[np.uint8], text: str) -> npt.NDArray[np.uint8]:
    """``scene`` with ``text``'s QR code on a white card, its corners at ``QR_OUTLINE``."""
    (x0, y0), (x1, _), (_, y1) = QR_OUTLINE[0], QR_OUTLINE[1], QR_OUTLINE[2]
    modules = qr_modules(text)
    n = modules.shape[0]
    rows = (np.arange(y1 - y0) * n // (y1 - y0)).clip(0, n - 1)
    cols = (np.arange(x1 - x0) * n // (x1 - x0)).clip(0, n - 1)
    frame = scene.copy()
    margin = 24
    frame[y0 - margin:y1 + margin, x0 - margin:x1 + margin] = 235
    frame[y0:y1, x0:x1] = np.where(modules[np.ix_(rows, cols)], 25, 235).astype(np.uint8)
    return frame


class PageRig:
    """``PageRig(workdir, token=None)``; ``url(path)``; ``get(path)``; ``close()``."""

    def __init__(self, workdir: Path, *, token: str | None = None,
                 readiness: Callable[[], list[str]] | None = None) -> None:
        self.lane = VirtualLane(workdir, DEMO)
        self.board = self.lane.agent.status
        agent = self.lane.agent
        self.server = serve_page("127.0.0.1:0", self.board, token=token,
                                 liveness=agent.liveness,
                                 readiness=readiness or agent.readiness)
        self.port: int = self.server.server_address[1]
        self._scene: npt.NDArray[np.uint8] | None = None
        self._showing = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.decided_at: float | None = None  # perf_counter when the first decision was taken
        self.decided = threading.Event()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(self.url(path), headers=headers or {})
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
            if response.headers.get_content_type() == "application/json":
                return json.loads(body)
            return body

    # -- the lane ----------------------------------------------------------------------------
    def send(self, plan: TruckPlan) -> None:
        """The truck drives up, its driver holding the pass the backend issued for it."""
        self.lane._current_pass = self.lane.issue_pass(plan)
        self.lane.world.send(plan.truck)

    def step(self) -> None:
        """One step of the lane; the camera shows the pass while the driver holds it up."""
        lane = self.lane
        lane.step()
        if self._scene is None:
            latest = lane.devices.evidence.latest()
            self._scene = None if latest is None else np.array(latest[0])
        truck = lane.world.truck
        showing = truck is not None and truck.showing_pass
        if showing != self._showing and self._scene is not None:
            self._showing = showing
            text = lane._current_pass
            shown = with_code(self._scene, text) if showing and text else self._scene
            lane.camera.show(shown)
        if self.decided_at is None and self.board.decisions():
            self.decided_at = time.perf_counter()
            self.decided.set()

    def outlined(self) -> bool:
        """Whether the camera's latest frame has a code outline."""
        latest = self.lane.devices.evidence.latest()
        return latest is not None and bool(latest[2])

    def run_for(self, seconds: float) -> None:
        for _ in range(round(seconds / self.lane.step_s)):
            self.step()

    def run_until(self, done: Callable[[], bool], *, timeout_s: float = 60.0) -> bool:
        for _ in range(round(timeout_s / self.lane.step_s)):
            if done():
                return True
            self.step()
        return done()

    def run_real_time(self, *, speed: float = 3.0, until_decision: bool = False) -> None:
        """Step the lane in a thread, ``speed`` virtual seconds per real second (and stop
        at the first decision, with ``until_decision``)."""
        def loop() -> None:
            start, virtual = time.perf_counter(), self.lane.clock()
            try:
                while not self._stop.is_set() and not (until_decision and self.decided_at):
                    target = virtual + (time.perf_counter() - start) * speed
                    while self.lane.clock() < target and not self._stop.is_set():
                        self.step()
                        if until_decision and self.decided_at:
                            break
                    self._stop.wait(0.005)
            except BaseException as exc:  # reported by the test that reads ``error``
                self.error = exc
                self.decided.set()

        self._thread = threading.Thread(target=loop, name="virtual-lane", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop the stepping thread: the lane stays as it is, the page keeps showing it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._stop.clear()

    def close(self) -> None:
        self.pause()
        self.server.shutdown()
        self.server.server_close()
        self.lane.close()
