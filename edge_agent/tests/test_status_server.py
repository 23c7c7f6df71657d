"""The status page's listener: loopback IPv4 or IPv6, and a clear error for a busy port."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest

from edge_agent.config import parse_config
from edge_agent.errors import DeviceError
from edge_agent.status import StatusBoard, serve_status

RAW = {
    "lane": {"site": "BZ01", "lane": "exit-03"},
    "io_board": {"url": "/dev/null"},
    "weighbridge": {"url": "/dev/null"},
    "camera": {"source": "dir:///tmp"},
    "passes": {"trust_list": "trust.json"},
    "mqtt": {"broker": "mqtt://127.0.0.1:1", "lab": True},
}


def _free_port(family: socket.AddressFamily, host: str) -> int:
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_status_page_is_served_on_ipv6_loopback(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    try:
        port = _free_port(socket.AF_INET6, "::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    board = StatusBoard(parse_config(RAW, tmp_path / "agent.toml"))
    server = serve_status(f"[::1]:{port}", board)
    try:
        with urllib.request.urlopen(f"http://[::1]:{port}/status", timeout=5) as response:
            assert json.loads(response.read())["lane"] == "exit-03"
    finally:
        server.shutdown()


def test_a_busy_status_port_is_a_device_error_naming_the_setting(tmp_path: Path) -> None:
    board = StatusBoard(parse_config(RAW, tmp_path / "agent.toml"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DeviceError, match=r"\[status\] listen"):
            serve_status(f"127.0.0.1:{port}", board)
