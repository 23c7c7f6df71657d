"""The real ``edge-agent`` process against a real Mosquitto, with no lane devices attached.

What the red team attacks here needs no truck: the MQTT topics, the state files, the disk.
The agent runs exactly as on a Pi (``python -m edge_agent --config FILE``); its IO board,
indicator and camera do not exist, so it reports them lost and retries, as a lane does with a
cable pulled. An observer on the broker records everything the lane sends; ``publish`` speaks
as anyone who can reach the broker.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.client import Client, MQTTMessage

from edge_agent.protocols import gp1
from edge_agent.telemetry.commands import public_key_text, sign_command
from edge_agent.telemetry.mqtt import make_client, parse_broker_url
from edge_agent.telemetry.topics import LaneTopics
from simulators.broker import free_port
from simulators.harness import stop_agent_process
from simulators.polling import wait_until

SITE, LANE = "BZ01", "exit-03"
REPO = Path(__file__).resolve().parents[1]


class AgentRig:
    def __init__(
        self,
        broker_url: str,
        workdir: Path,
        *,
        state_dir: Path | None = None,
        devices: dict[str, str] | None = None,
    ) -> None:
        """``devices`` may name ``io_board``, ``weighbridge`` (URLs), ``protocol`` and
        ``camera`` (a source URL); by default none of them exists."""
        self.broker_url = broker_url
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.devices = {
            "io_board": f"{workdir}/no-such-io-board",
            "weighbridge": f"{workdir}/no-such-indicator",
            "protocol": "yaohua-tf0",
            "camera": "sim://127.0.0.1:9",
            **(devices or {}),
        }
        self.state_dir = state_dir or workdir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.topics = LaneTopics(SITE, LANE)
        self.officer = Ed25519PrivateKey.generate()
        self.root = Ed25519PrivateKey.generate()
        keys = workdir / "keys"
        _issuer, self.trust_path = gp1.write_keypair(keys, "ed25519")
        self.command_keys = keys / "command_keys.json"
        self.command_keys.write_text(json.dumps({"keys": [
            {"kid": "officer-console", "role": "command",
             "public_key": public_key_text(self.officer)},
            {"kid": "site-root", "role": "root", "public_key": public_key_text(self.root)},
        ]}))
        self.config_path = workdir / "agent.toml"
        self.config_path.write_text(self._config(), encoding="utf-8")
        self.log_path = workdir / "agent.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self._observer = self._observe()
        self._sender = self._client("redteam-sender")
        self._n = 0

    # -- the agent process -------------------------------------------------------------------
    def _config(self) -> str:
        return f"""[lane]
site = "{SITE}"
lane = "{LANE}"
gate = "G3"
state_dir = "{self.state_dir}"

[io_board]
url = "{self.devices['io_board']}"

[weighbridge]
url = "{self.devices['weighbridge']}"
protocol = "{self.devices['protocol']}"

[camera]
source = "{self.devices['camera']}"

[passes]
trust_list = "{self.trust_path}"

[mqtt]
broker = "{self.broker_url}"
lab = true
keepalive_s = 5
reconnect_first_min_s = 0.2
reconnect_first_max_s = 0.5
command_keys = "{self.command_keys}"
health_interval_s = 1

[status]
listen = "127.0.0.1:{free_port()}"

[control]
socket = "{self.workdir / 'control.sock'}"
"""

    def start(self, *, wait_online: bool = True) -> None:
        # The status port was free when the file was written; a client socket opened since may
        # have taken it (both come from the ephemeral range): then a new port, up to 3 times.
        for _attempt in range(3):
            log = self.log_path.open("ab")
            self._process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
            )
            log.close()
            if not wait_online:
                return
            wait_until(lambda: self.online() or not self.alive(), timeout=30.0)
            if self.online():
                return
            if self.alive() or "Address already in use" not in self.log():
                break
            self.config_path.write_text(self._config(), encoding="utf-8")
        raise AssertionError(self.log())

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_agent_process(process, timeout=15.0)

    def restart(self) -> None:
        self.stop()
        self.clear()
        self.start()

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def rss_kb(self) -> int:
        assert self._process is not None
        for line in Path(f"/proc/{self._process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def log(self, tail: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        for client in (self._observer, self._sender):
            client.disconnect()
            client.loop_stop()

    # -- the broker side ---------------------------------------------------------------------
    def _client(self, client_id: str) -> Client:
        client = make_client(client_id, parse_broker_url(self.broker_url))
        address = parse_broker_url(self.broker_url)
        client.connect(address.host, address.port)
        client.loop_start()
        return client

    def _observe(self) -> Client:
        client = make_client("redteam-observer", parse_broker_url(self.broker_url))

        def on_message(_c: Client, _u: Any, message: MQTTMessage) -> None:
            with self._lock:
                self.messages.append((message.topic, bytes(message.payload), message.retain))

        def on_connect(c: Client, *_: Any) -> None:
            c.subscribe(f"gate/v1/{SITE}/{LANE}/#", qos=1)

        client.on_message = on_message
        client.on_connect = on_connect
        address = parse_broker_url(self.broker_url)
        client.connect(address.host, address.port)
        client.loop_start()
        assert wait_until(client.is_connected, timeout=10.0)
        return client

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        info = self._sender.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(10.0)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def received(self, suffix: str) -> list[dict[str, Any]]:
        """Decoded JSON of every message the lane sent on a topic ending with ``suffix``."""
        with self._lock:
            found = [payload for topic, payload, _ in self.messages if topic.endswith(suffix)]
        return [json.loads(payload) for payload in found]

    def events(self, type: str) -> list[dict[str, Any]]:
        return self.received(f"/evt/{type}")

    def results(self, *, this_boot: bool = False) -> list[dict[str, Any]]:
        """Command results seen, each once (with no backend the outbox resends them after a
        restart); ``this_boot``: only those the running agent made."""
        boot = self.outbox_meta("boot_id") if this_boot else None
        unique = {m["event_id"]: m for m in self.received("/cmd_result")}
        return [m["data"] for m in unique.values() if boot is None or m["boot_id"] == boot]

    def online(self) -> bool:
        states = self.received("/state")
        return bool(states) and bool(states[-1].get("online")) and self.alive()

    def health(self) -> list[dict[str, Any]]:
        return [message["data"] for message in self.received("/health")]

    # -- signed commands ---------------------------------------------------------------------
    def command(self, name: str, args: dict[str, Any], *, iat: int | None = None,
                key: str = "officer") -> tuple[str, bytes]:
        """``(cmd_id, payload)`` of a validly signed command for this lane."""
        self._n += 1
        now = int(time.time()) if iat is None else iat
        cmd_id = f"rt-{self._n}-{time.monotonic_ns()}"
        claims = {
            "cmd_id": cmd_id, "name": name, "site": SITE, "lane": LANE, "iat": now,
            "exp": now + 60, "nonce": f"nonce-{cmd_id}", "issuer": "red-team", "args": args,
        }
        private, kid = (self.root, "site-root") if key == "root" else (
            self.officer, "officer-console")
        return cmd_id, sign_command(private, kid, claims)

    def result(self, cmd_id: str, timeout: float = 15.0) -> dict[str, Any] | None:
        found: list[dict[str, Any]] = []

        def arrived() -> bool:
            found[:] = [r for r in self.results() if r.get("cmd_id") == cmd_id]
            return bool(found)

        wait_until(arrived, timeout=timeout)
        return found[0] if found else None

    # -- state files -------------------------------------------------------------------------
    def outbox_rows(self) -> list[int]:
        """Seqs still in the lane's outbox (read beside the running agent: WAL allows it)."""
        db = sqlite3.connect(f"file:{self.state_dir / 'outbox.sqlite'}?mode=ro", uri=True)
        try:
            return [row[0] for row in db.execute("SELECT seq FROM events ORDER BY seq")]
        finally:
            db.close()

    def outbox_meta(self, key: str) -> int:
        db = sqlite3.connect(f"file:{self.state_dir / 'outbox.sqlite'}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
        finally:
            db.close()

    def epoch(self) -> str:
        db = sqlite3.connect(f"file:{self.state_dir / 'outbox.sqlite'}?mode=ro", uri=True)
        try:
            return str(db.execute("SELECT epoch FROM identity").fetchone()[0])
        finally:
            db.close()
