"""Containment: every external input of the running agent, fuzzed at once; the agent stays up.

The inputs: each subscribed MQTT topic (the ack, every command name and unknown ones), the
IO board's and the indicator's serial streams (raw ptys), the camera's frame stream (a TCP
source sending valid, odd and broken frames), and each state file damaged before start. The
agent must stay up throughout and still answer a signed command at the end: its main loop
turns, whatever it was fed. Seeded, so a failure reproduces.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.drivers.camera import FRAME_HEADER, FRAME_MAGIC
from edge_agent.protocols import iolink
from redteam.agent_rig import AgentRig
from simulators.broker import MosquittoBroker
from simulators.polling import wait_until

pytestmark = pytest.mark.slow

FUZZ_S = 20.0
COMMAND_NAMES = ("remote_release", "trust_update", "revocations", "config", "site_uses",
                 "reboot", "x" * 200)


def _mutations(rng: random.Random, seeds: list[bytes]) -> bytes:
    """Random bytes, or a real-looking frame with bits flipped, cut or repeated."""
    kind = rng.randrange(4)
    if kind == 0 or not seeds:
        return rng.randbytes(rng.randrange(1, 300))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randrange(1, 4)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    if kind == 2:
        data = data[: rng.randrange(len(data) + 1)]
    if kind == 3:
        data = data * rng.randrange(2, 20)
    return bytes(data)


class _Pty:
    """A raw pty: the agent opens ``path``; the fuzzer writes to the master end."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        os.set_blocking(self.master, False)

    def write(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.master, data)
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self.master, 65536)  # drain what the agent sends back

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class _FuzzCamera:
    """A sim:// frame source that sends valid, odd-sized and broken frames, and drops."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.url = f"sim://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _frame(self) -> bytes:
        rng = self._rng
        w, h = rng.choice([(1, 1), (16, 9), (320, 180), (0, 0), (1, 4000), (640, 360)])
        at = rng.choice([0.0, time.monotonic(), float("nan"), -1e300])
        header = FRAME_HEADER.pack(FRAME_MAGIC, w, h, at, w * h)
        choice = rng.randrange(5)
        if choice == 0:
            return header[: rng.randrange(len(header))]
        if choice == 1:
            return FRAME_HEADER.pack(FRAME_MAGIC, w, h, at, 0xFFFFFFF0)
        if choice == 2:
            return rng.randbytes(rng.randrange(1, 500))
        return header + rng.randbytes(w * h)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            with conn:
                deadline = time.monotonic() + self._rng.uniform(0.2, 2.0)
                while not self._stop.is_set() and time.monotonic() < deadline:
                    try:
                        conn.sendall(self._frame())
                    except OSError:
                        break
                    time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._server.close()


@pytest.fixture
def fuzzed_lane(broker: MosquittoBroker, tmp_path: Path) -> Iterator[tuple[AgentRig, _Pty,
                                                                          _Pty, _FuzzCamera]]:
    rng = random.Random(1234)
    io, scale, camera = _Pty(), _Pty(), _FuzzCamera(rng)
    agent = AgentRig(broker.url, tmp_path / "lane", devices={
        "io_board": io.path, "weighbridge": scale.path, "protocol": "toledo",
        "camera": camera.url,
    })
    try:
        yield agent, io, scale, camera
    finally:
        agent.close()
        camera.close()
        io.close()
        scale.close()


def test_every_external_input_fuzzed_at_once_never_stops_the_agent(
    fuzzed_lane: tuple[AgentRig, _Pty, _Pty, _FuzzCamera],
) -> None:
    agent, io, scale, _camera = fuzzed_lane
    rng = random.Random(99)
    agent.start()
    io_seeds = [iolink.encode_frame(int(t), seq, 0, rng.randbytes(rng.randrange(40)))
                for seq, t in enumerate(iolink.MsgType)]
    scale_seeds = [b"\x02" + b"0" * 16 + b"\r", b"\x02*0 012340000000\r"]
    mqtt_seeds = [b'{"upto_seq": 1, "boot_id": 1, "epoch": "0123456789abcdef"}',
                  b'{"claims": {"cmd_id": "a", "name": "config"}, "kid": "k", "sig": "AA"}']
    topics = [agent.topics.ack] + [f"{agent.topics.base}/cmd/{name}" for name in COMMAND_NAMES]
    sent = 0
    deadline = time.monotonic() + FUZZ_S
    while time.monotonic() < deadline and agent.alive():
        io.write(_mutations(rng, io_seeds))
        scale.write(_mutations(rng, scale_seeds))
        payload = _mutations(rng, mqtt_seeds)
        agent.publish(rng.choice(topics), payload, qos=0, retain=rng.random() < 0.05)
        if rng.random() < 0.01:
            agent.publish(rng.choice(topics), b"{" * 50_000 + struct.pack(">Q", sent), qos=0)
        sent += 1
        time.sleep(0.002)
    assert agent.alive(), agent.log()
    assert sent > 1000
    cmd_id, payload = agent.command("config", {"version": 1, "settings": {}})
    agent.publish(agent.topics.command("config"), payload)
    result = agent.result(cmd_id, timeout=30.0)
    assert result is not None and result["accepted"] is True, agent.log()
    # Containment is the last line, not the plan: fuzzed input must meet a checked path,
    # never an exception (a contained one logs its traceback) nor a dead decoder process.
    assert "Traceback" not in agent.log(tail=1_000_000), agent.log(tail=200)


@pytest.mark.parametrize("name", ["outbox.sqlite", "passes.sqlite", "commands.sqlite",
                                  "time_floor.json"])
def test_a_damaged_state_file_is_kept_aside_and_the_agent_starts(
    broker: MosquittoBroker, tmp_path: Path, name: str
) -> None:
    agent = AgentRig(broker.url, tmp_path / "lane")
    try:
        agent.start()  # make every state file
        agent.stop()
        path = agent.state_dir / name
        if not path.exists():  # the floor is saved only once a time is known (synced clock)
            path.write_text('{"floor": 1764700000}')
        data = bytearray(path.read_bytes())
        rng = random.Random(name)
        start = 100 if name.endswith(".sqlite") else 0
        for index in range(start, len(data)):
            if rng.random() < 0.3:
                data[index] = rng.randrange(256)
        if name.endswith(".sqlite"):
            data[16:18] = b"\xff\xff"  # page size field: SQLite must call it damaged
        path.write_bytes(bytes(data))
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                (agent.state_dir / f"{name}{suffix}").unlink()
        agent.start()
        assert agent.alive(), agent.log()
        assert list(agent.state_dir.glob(f"{name}.corrupt-*")), sorted(agent.state_dir.iterdir())
        assert wait_until(
            lambda: any(e["data"]["code"] == "lane.state_quarantined"
                        for e in agent.events("abnormality")), timeout=20.0,
        ), agent.log()
    finally:
        agent.close()
