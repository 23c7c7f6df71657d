"""The private Mosquitto launcher: ports, lifecycle, config, clear errors."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

import pytest

from simulators import broker as broker_module
from simulators.broker import BrokerError, FaultProxy, MosquittoBroker


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_start_listens_on_loopback_and_stop_leaves_nothing_behind(tmp_path: Path) -> None:
    broker = MosquittoBroker(workdir=tmp_path)
    broker.start()
    try:
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert accepts(broker.port)
        config = broker.config_path.read_text()
        assert f"listener {broker.port} 127.0.0.1" in config
        assert "allow_anonymous true" in config and "persistence false" in config
        if os.geteuid() == 0:
            assert "user root" in config
        pid = broker.pid
        assert pid is not None
    finally:
        broker.stop()
    assert not broker.running()
    assert not accepts(broker.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie or orphan


def test_restart_comes_back_on_the_same_port_and_kill_is_abrupt(tmp_path: Path) -> None:
    with MosquittoBroker(workdir=tmp_path) as broker:
        port, first_pid = broker.port, broker.pid
        broker.restart()
        assert (broker.port, accepts(port)) == (port, True)
        assert broker.pid != first_pid
        broker.kill()
        assert not broker.running() and not accepts(port)
        broker.start()
        assert broker.port == port and accepts(port)


def test_context_manager_removes_its_own_temporary_directory() -> None:
    with MosquittoBroker() as broker:
        workdir = broker.workdir
        assert workdir.is_dir()
    assert not workdir.exists()


def test_two_brokers_get_different_free_ports(tmp_path: Path) -> None:
    with MosquittoBroker(workdir=tmp_path / "a") as one, MosquittoBroker(
        workdir=tmp_path / "b"
    ) as two:
        assert one.port != two.port
        assert accepts(one.port) and accepts(two.port)


def test_a_taken_fixed_port_is_a_clear_error(tmp_path: Path) -> None:
    with MosquittoBroker(workdir=tmp_path / "a") as first:
        clash = MosquittoBroker(port=first.port, workdir=tmp_path / "b")
        with pytest.raises(BrokerError, match="in use"):
            clash.start()


def test_bad_extra_config_fails_with_the_broker_log(tmp_path: Path) -> None:
    broker = MosquittoBroker(workdir=tmp_path, extra_config="no_such_option 1")
    with pytest.raises(BrokerError, match="no_such_option"):
        broker.start()
    assert not broker.running()


def test_extra_config_and_persistence_are_written(tmp_path: Path) -> None:
    with MosquittoBroker(
        workdir=tmp_path, persistence=True, extra_config="max_queued_messages 100"
    ) as broker:
        config = broker.config_path.read_text()
        assert "persistence true" in config and "max_queued_messages 100" in config


def test_missing_mosquitto_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(broker_module.os, "access", lambda path, mode: False)
    with pytest.raises(BrokerError, match=r"make test.*mosquitto"):
        MosquittoBroker()


def _echo_server() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            connection, _ = server.accept()
            while data := connection.recv(1024):
                connection.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server


def _read(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1024)
    except TimeoutError:
        return b"<timeout>"


def test_fault_proxy_forwards_blackholes_and_cuts() -> None:
    server = _echo_server()
    proxy = FaultProxy(server.getsockname()[1])
    try:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5)
        client.sendall(b"ping")
        assert _read(client) == b"ping"
        proxy.set_mode("blackhole")
        client.sendall(b"lost")
        assert _read(client) == b"<timeout>"  # silently eaten, connection still open
        proxy.set_mode("forward")  # leaving a lossy mode cuts the damaged stream
        assert _read(client) == b""
        with pytest.raises(ValueError, match="unknown proxy mode"):
            proxy.set_mode("slow")
    finally:
        proxy.close()
        server.close()
