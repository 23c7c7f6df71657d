"""A local unix stream socket served on daemon threads (the control socket, the container entry).

The socket is made 0660, so the file's permissions are the authorisation (the agent's user and
its group). A socket file a stopped agent left is replaced; a live one is never taken over.
Each server class adds what its handlers need as attributes before ``serve`` starts it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One daemon thread per connection: a hung client never holds up the agent's exit."""

    daemon_threads = True


S = TypeVar("S", bound=UnixServer)
Handler = type[socketserver.BaseRequestHandler]


def bind(path: Path, server_class: Callable[[str, Handler], S], handler: Handler) -> S:
    """The server bound at ``path`` (its folder made, the file 0660), not yet serving.

    Raises:
        OSError: the socket cannot be made, ``path`` is not a socket, or another agent
            serves it (the ``strerror`` says which, in words for the technician).
    """
    clear_stale(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    server = server_class(str(path), handler)
    try:
        os.chmod(path, 0o660)
    except OSError:
        server.server_close()
        raise
    return server


def serve(server: UnixServer, name: str) -> threading.Thread:
    """Serve ``server`` on a daemon thread named ``name`` until ``close``."""
    thread = threading.Thread(target=server.serve_forever, name=name,
                              kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    return thread


def close(server: UnixServer, path: Path) -> None:
    """Stop serving and remove the socket file."""
    server.shutdown()
    server.server_close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def clear_stale(path: Path) -> None:
    """Remove the socket a stopped agent left; refuse to take over a live one (OSError)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, "exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "another agent is serving it")
