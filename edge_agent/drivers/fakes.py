"""Named fake devices, opened by URL like the real transports (python-can's virtual bus).

A test (or a laptop lane) builds a fake with the clock it wants and registers it under a
name; the lane's configuration then names it (``fake-ioboard://gate1``,
``fake-indicator://gate1``, ``fake-camera://gate1``) and the real driver opens it exactly as
it opens a serial port or a camera. A name nobody registered gets a fresh fake on the wall
clock, so a config file alone can run a lane on fakes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from edge_agent.errors import ConfigError

T = TypeVar("T")


class VirtualClock:
    """Time that passes only when told: ``clock()`` reads it, ``advance`` moves it on.

    Every fake takes any clock; on this one nothing waits, and a test owns the timeline.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self.now += seconds


class FakeRegistry(Generic[T]):
    """The fakes of one kind by name; thread-safe."""

    def __init__(self, scheme: str, make_default: Callable[[str], T]) -> None:
        self.scheme = scheme
        self._make_default = make_default
        self._lock = threading.Lock()
        self._fakes: dict[str, T] = {}

    def register(self, name: str, fake: T) -> T:
        with self._lock:
            self._fakes[name] = fake
        return fake

    def unregister(self, name: str) -> None:
        with self._lock:
            self._fakes.pop(name, None)

    def lookup(self, url: str) -> T:
        """The fake ``url`` names, made on first use when nobody registered it.

        Raises:
            ConfigError: ``url`` is not of this registry's scheme, or names nothing.
        """
        parts = urlsplit(url)
        name = parts.netloc or parts.path.lstrip("/")
        if parts.scheme != self.scheme or not name:
            raise ConfigError(f"{url!r}: expected {self.scheme}://NAME")
        with self._lock:
            fake = self._fakes.get(name)
            if fake is None:
                fake = self._fakes[name] = self._make_default(name)
            return fake
