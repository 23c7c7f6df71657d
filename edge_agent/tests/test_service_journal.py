"""The agent's log in a real systemd-journald, read back with ``journalctl -o json``.

journald runs privately (``journald_rig.py`` in its own mount namespace, so it needs root);
the program under test is connected to it the way systemd connects a unit: stdout and stderr
on a journald stream named by ``JOURNAL_STREAM``. Entries arrive by the native protocol
(libsystemd's ``sd_journal_send``: ``_TRANSPORT=journal``) with their priority and fields.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_agent.tests.agent_files import REPO, write_config
from edge_agent.tests.journald_rig import JOURNALD

RIG = Path(__file__).with_name("journald_rig.py")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path(JOURNALD).exists() or shutil.which("unshare") is None,
    reason="needs root, unshare and systemd-journald for a private journal",
)

SMALL_PROGRAM = """
import logging
from edge_agent.logs import parse_level, setup
logs = setup(parse_level("debug"))
logs.for_lane("BZ01", "exit-03")
log = logging.getLogger("edge_agent")
log.info("decision refuse for t-42",
         extra={"transit_id": "t-42", "code": "pass.expired", "event_type": "decision"})
logging.LoggerAdapter(log, {"transit_id": "t-43"}).warning("truck t-43 held")
log.debug("a detail")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("a stage failed")
print("plain line on stdout", flush=True)
"""


def _journal(tmp_path: Path, argv: list[str], steps: list[dict[str, str]]) -> dict[str, Any]:
    script, out = tmp_path / "script.json", tmp_path / "journal.json"
    script.write_text(json.dumps({"argv": argv, "steps": steps}))
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, str(RIG), str(out),
         str(script)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _ours(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "edge-agent"]


def _one(entries: list[dict[str, Any]], text: str) -> dict[str, Any]:
    [entry] = [e for e in entries if text in str(e.get("MESSAGE", ""))]
    return entry


def test_priorities_and_fields_in_the_native_protocol(tmp_path: Path) -> None:
    journal = _journal(tmp_path, [sys.executable, "-c", SMALL_PROGRAM], [])
    assert journal["exit"] == 0
    entries = _ours(journal["entries"])
    decision = _one(entries, "decision refuse for t-42")
    assert decision["_TRANSPORT"] == "journal" and decision["PRIORITY"] == "6"
    assert (decision["TRANSIT_ID"], decision["CODE"], decision["EVENT_TYPE"]) == (
        "t-42", "pass.expired", "decision")
    assert (decision["LANE"], decision["SITE"], decision["LOGGER"]) == (
        "exit-03", "BZ01", "edge_agent")
    held = _one(entries, "truck t-43 held")
    assert (held["PRIORITY"], held["TRANSIT_ID"]) == ("4", "t-43")
    assert _one(entries, "a detail")["PRIORITY"] == "7"
    failed = _one(entries, "a stage failed")
    assert failed["PRIORITY"] == "3"
    assert "Traceback" in failed["MESSAGE"] and "ZeroDivisionError" in failed["MESSAGE"]
    plain = _one(entries, "plain line on stdout")
    assert plain["_TRANSPORT"] == "stdout"  # not a log record: the stream, as under systemd


def test_the_running_agent_logs_with_priorities_and_lane_fields(tmp_path: Path) -> None:
    config = write_config(tmp_path / "lane")
    state = tmp_path / "lane" / "state"
    state.mkdir(parents=True)
    (state / "outbox.sqlite").write_bytes(b"not a database at all" * 100)  # quarantined
    good = config.read_text()
    broken = good.replace("health_interval_s = 30", "health_interval_s = -1")
    journal = _journal(
        tmp_path, [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        [{"wait_for": "running (agent"},
         {"write": str(config), "text": broken}, {"signal": "SIGHUP"},
         {"wait_for": "refused on reload"}, {"signal": "SIGTERM"}])
    assert journal["exit"] == 0
    entries = _ours(journal["entries"])
    assert entries and all(e["_TRANSPORT"] == "journal" for e in entries), [
        e.get("MESSAGE") for e in entries if e["_TRANSPORT"] != "journal"]
    assert all((e["LANE"], e["SITE"]) == ("exit-03", "BZ01") for e in entries)
    assert _one(entries, "state file damaged")["PRIORITY"] == "3"
    [abnormality] = [e for e in entries if e.get("EVENT_TYPE") == "abnormality"]
    assert abnormality["CODE"] == "lane.state_quarantined" and abnormality["PRIORITY"] == "6"
    assert int(abnormality["SEQ"]) >= 1
    assert _one(entries, "running (agent")["PRIORITY"] == "6"
    refused = _one(entries, "refused on reload")
    assert refused["PRIORITY"] == "3" and "mqtt.health_interval_s" in refused["MESSAGE"]
    assert _one(entries, "stopped (stopped, SIGTERM)")["PRIORITY"] == "6"
