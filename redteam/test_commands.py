"""Red team: unsigned and hostile messages on the lane's MQTT topics, against the running agent.

Findings reproduced: (1) one unparseable command crashed the agent, and retained it
crash-looped forever; (6) a flood of unsigned commands grew storage and memory at will;
(8) a signed config with a version >= 2^63 stopped the agent; (9) one command with a future
timestamp blocked every later command on an unsynced clock.
"""

from __future__ import annotations

import time

import pytest

from redteam.agent_rig import AgentRig
from simulators.polling import wait_until

pytestmark = pytest.mark.slow

HUGE_INT = b'{"claims": {"version": ' + b"9" * 5000 + b'}, "kid": "k", "sig": "AA"}'
NESTED = b"[" * 100_000 + b"]" * 100_000


def test_unparseable_commands_are_refused_and_a_retained_one_never_crash_loops(
    agent: AgentRig,
) -> None:
    agent.start()
    topic = agent.topics.command("config")
    for payload in (HUGE_INT, NESTED):
        agent.publish(topic, payload)
    assert wait_until(lambda: len(agent.results()) >= 2, timeout=15.0), agent.log()
    assert {r["code"] for r in agent.results()} == {"cmd.bad_format"}
    assert agent.alive()
    # Left retained on the broker (an ingest identity can do this), it must not run again.
    agent.publish(topic, NESTED, retain=True)
    agent.publish(agent.topics.command("remote_release"), HUGE_INT, retain=True)
    for _ in range(2):
        agent.restart()
        marker, payload = agent.command("remote_release", {"challenge": "x" * 32})
        agent.publish(agent.topics.command("remote_release"), payload)
        assert agent.result(marker) is not None, agent.log()  # up, and handling commands
        retained = [r for r in agent.results(this_boot=True) if r.get("code") == "cmd.bad_format"]
        assert retained == [], retained
        assert agent.alive()


def test_a_signed_config_with_a_version_past_sqlite_integers_is_refused(
    agent: AgentRig,
) -> None:
    agent.start()
    cmd_id, payload = agent.command("config", {"version": 1 << 63, "settings": {}})
    agent.publish(agent.topics.command("config"), payload)
    result = agent.result(cmd_id)
    assert result is not None and result["accepted"] is False, agent.log()
    assert result["code"] == "cmd.bad_format"
    cmd_id, payload = agent.command("config", {"version": 2, "settings": {}})
    agent.publish(agent.topics.command("config"), payload)
    result = agent.result(cmd_id)
    assert result is not None and result["accepted"] is True, result
    assert agent.alive()


def test_a_command_from_the_future_does_not_block_later_ones(agent: AgentRig) -> None:
    """This machine's clock counts as unsynced to the agent (no timesyncd/chrony state)."""
    agent.start()
    year = 365 * 86400
    cmd_id, payload = agent.command("config", {"version": 1, "settings": {}})
    agent.publish(agent.topics.command("config"), payload)
    assert agent.result(cmd_id) is not None
    future_id, future = agent.command(
        "config", {"version": 2, "settings": {}}, iat=int(time.time()) + year
    )
    agent.publish(agent.topics.command("config"), future)
    assert agent.result(future_id) is not None
    for round_ in range(2):
        cmd_id, payload = agent.command("config", {"version": 3 + round_, "settings": {}})
        agent.publish(agent.topics.command("config"), payload)
        result = agent.result(cmd_id)
        assert result is not None and result["code"] != "cmd.expired", result
        agent.restart()


def test_an_unsigned_flood_costs_a_bounded_record_count_and_memory(agent: AgentRig) -> None:
    agent.start()
    topic = agent.topics.command("config")
    assert wait_until(lambda: bool(agent.health()), timeout=15.0)
    rss_before = agent.rss_kb()
    small = b'{"claims": {"cmd_id": "flood-%d", "name": "config"}, "kid": "x", "sig": "AA"}'
    for n in range(30_000):
        agent.publish(topic, (small % n).ljust(200, b" "), qos=0)
    big = b'{"claims": {"cmd_id": "' + b"B" * 100_000 + b'"}, "kid": "k", "sig": "AA"}'
    for _ in range(2_000):
        agent.publish(topic, big, qos=0)
    # A flood may crowd out a genuine command too (the inboxes drop what does not fit):
    # its sender tries again, as a console does, until the lane has worked through it.
    answered = False
    deadline = time.monotonic() + 120.0
    while not answered and time.monotonic() < deadline:
        marker, payload = agent.command("remote_release", {"challenge": "y" * 32})
        agent.publish(agent.topics.command("remote_release"), payload)
        answered = agent.result(marker, timeout=3.0) is not None
    assert answered, agent.log()
    refused = [r for r in agent.results() if str(r.get("cmd_id", "")).startswith(("flood", "B"))]
    assert len(refused) <= 100, len(refused)  # a burst, then a trickle: never one per message
    assert all(len(str(r["cmd_id"])) <= 35 for r in refused)
    assert agent.alive()
    assert agent.rss_kb() < rss_before + 60_000, (rss_before, agent.rss_kb())
    size = (agent.state_dir / "outbox.sqlite").stat().st_size
    assert size < 5 * 1024 * 1024, size
    assert wait_until(
        lambda: any(h.get("commands_unreported", 0) > 0 for h in agent.health()), timeout=15.0
    )
