"""The IO board as a host talks to it for a while: handshake, events in order, waits.

Used by ``lanectl io test``/``io set`` and by firmware deploys. It holds the port: stop the edge
agent first (a busy port's error names the process holding it).
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent import defaults
from edge_agent.drivers.ioboard import BoardEvents, IoBoard
from edge_agent.errors import DeviceError, DeviceTimeout
from edge_agent.protocols.iolink_session import BoardSnapshot, CommandResult, IoEvent
from host_tools.ports import explain


class BoardSession:
    """The IO-board driver with its events kept in order, for commands that act on the board
    for a while (io test, io set, fw deploy). It holds the port: stop the edge agent first."""

    def __init__(self, url: str, *, t_clear_s: float = defaults.T_CLEAR_S,
                 travel_timeout_s: float = defaults.TRAVEL_TIMEOUT_S) -> None:  # fmt: skip
        self.board = IoBoard(url, t_clear_s=t_clear_s, travel_timeout_s=travel_timeout_s)
        self.stream = BoardEvents(self.board)

    def open(self, timeout: float) -> BoardSnapshot:
        """Handshake, then the first state in which the board follows this host.

        Raises:
            DeviceError: the port cannot be opened or the board does not answer.
        """
        try:
            self.board.open(timeout)
        except DeviceTimeout as exc:
            raise DeviceTimeout(f"{exc} within {timeout:g} s: is the board plugged in and "
                                "running the gatelane firmware? (a blank board: "
                                "lanectl fw install)") from exc
        except DeviceError as exc:
            better = explain(self.board.url, exc)
            if better is exc:
                raise
            raise better from exc
        snap = self.wait(
            lambda e: isinstance(e, BoardSnapshot) and "handshake" in e.flags
            and e.barrier not in ("boot", "wait_host"),
            timeout,
        )  # fmt: skip
        if not isinstance(snap, BoardSnapshot):
            raise DeviceTimeout(f"no state from the board on {self.board.url!r} after HELLO")
        return snap

    @property
    def snapshot(self) -> BoardSnapshot:
        assert self.board.snapshot is not None, "open() first"
        return self.board.snapshot

    def mark(self) -> None:
        """Forget what came so far: wait() then looks only at what happens next."""
        self.stream.mark()

    def wait(self, predicate: Callable[[IoEvent], bool], timeout: float) -> IoEvent | None:
        """The next event matching ``predicate`` within ``timeout`` s (heartbeats go on)."""
        return self.stream.next(predicate, timeout)

    def pump(self, seconds: float) -> None:
        self.stream.pump(seconds)

    def result(self, seq: int, timeout: float = 3.0) -> str:
        event = self.wait(lambda e: isinstance(e, CommandResult) and e.seq == seq, timeout)
        return event.result if isinstance(event, CommandResult) else "no_answer"

    def barrier(self, state: str, timeout: float) -> BoardSnapshot | None:
        if self.snapshot.barrier == state:
            return self.snapshot
        event = self.wait(lambda e: isinstance(e, BoardSnapshot) and e.barrier == state, timeout)
        return event if isinstance(event, BoardSnapshot) else None

    def close(self) -> None:
        self.board.close()
