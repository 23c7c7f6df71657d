"""The main loop's inbox: device inputs never wait behind commands.

Reader threads (IO board, weighbridge, camera) and the MQTT sender thread hand items to the
agent's main loop here. There are two bounded queues: device inputs are always taken first, a
command only when no device input waits. Nothing blocks the thread that puts: an item that
finds its queue full is dropped and counted (``dropped``), and health reports the counts, so a
flood costs the lane a counter, never its memory or its readings' timing.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Literal

Kind = Literal["device", "command"]
_ORDER: tuple[Kind, ...] = ("device", "command")


class LaneInbox:
    def __init__(self, *, device_limit: int = 10_000, command_limit: int = 64) -> None:
        self._cond = threading.Condition()
        self._queues: dict[Kind, deque[Any]] = {"device": deque(), "command": deque()}
        self._limits: dict[Kind, int] = {"device": device_limit, "command": command_limit}
        self.dropped: dict[Kind, int] = {"device": 0, "command": 0}

    def put(self, kind: Kind, item: Any) -> bool:
        """Queue ``item``; False (and counted) when its queue is full."""
        with self._cond:
            queue = self._queues[kind]
            if len(queue) >= self._limits[kind]:
                self.dropped[kind] += 1
                return False
            queue.append(item)
            self._cond.notify()
        return True

    def get(self, timeout: float) -> tuple[Kind, Any] | None:
        """The oldest device input, else the oldest command; None after ``timeout`` seconds."""
        with self._cond:
            if not self._ready():
                self._cond.wait(timeout)
            for kind in _ORDER:
                queue = self._queues[kind]
                if queue:
                    return kind, queue.popleft()
        return None

    def devices_waiting(self) -> int:
        with self._cond:
            return len(self._queues["device"])

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _ready(self) -> bool:
        return bool(self._queues["device"] or self._queues["command"])
