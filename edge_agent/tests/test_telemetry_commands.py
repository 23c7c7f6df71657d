"""Signed commands: every refusal reason, at-most-once across restarts, key tiers and versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.telemetry.commands import (
    Command,
    CommandVerifier,
    KeyRole,
    Rejection,
    TrustedKey,
    canonical_json,
    public_key_text,
    sign_command,
)
from edge_agent.telemetry.topics import LaneTopics

NOW = 1_714_564_800
TOPICS = LaneTopics("s1", "lane-1")
OFFICER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ROOT = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ROGUE = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))


def trusted() -> list[TrustedKey]:
    return [
        TrustedKey("officers-2024", KeyRole.COMMAND, OFFICER.public_key()),
        TrustedKey("root-1", KeyRole.ROOT, ROOT.public_key()),
    ]


def verifier(tmp_path: Path) -> CommandVerifier:
    return CommandVerifier(tmp_path / "commands.db", site="s1", lane="lane-1", trusted=trusted())


def claims(name: str = "remote_release", n: int = 1, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cmd_id": f"cmd-{n}",
        "name": name,
        "site": "s1",
        "lane": "lane-1",
        "iat": NOW,
        "exp": NOW + 60,
        "nonce": f"nonce-{n}",
        "issuer": "officer-17",
        "args": {"challenge": "ch-abc", "reason_ref": "evt-1"},
    }
    base.update(changes)
    return base


def signed(key: Ed25519PrivateKey = OFFICER, kid: str = "officers-2024", **changes: Any) -> bytes:
    return sign_command(key, kid, claims(**changes))


def refusal(result: Command | Rejection) -> str:
    assert isinstance(result, Rejection), result
    return result.code


def test_a_valid_release_is_accepted_with_its_arguments(tmp_path: Path) -> None:
    result = verifier(tmp_path).verify(TOPICS.command("remote_release"), signed(), NOW + 1)
    assert result == Command(
        "cmd-1", "remote_release", "officer-17", "officers-2024", NOW, NOW + 60,
        {"challenge": "ch-abc", "reason_ref": "evt-1"},
    )


def test_canonical_json_is_sorted_compact_and_refuses_floats() -> None:
    assert canonical_json({"b": 1, "a": [True, "é"]}) == '{"a":[true,"é"],"b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"kg": 1.5})


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xff", "cmd.bad_format"),
        (b"[]", "cmd.bad_format"),
        (json.dumps({"claims": {}, "kid": 1, "sig": "x"}).encode(), "cmd.bad_format"),
        (json.dumps({"claims": {}, "kid": "k", "sig": "!!"}).encode(), "cmd.bad_format"),
        (signed(kid="nobody"), "cmd.unknown_key"),
        (signed(key=ROGUE), "cmd.bad_signature"),
        (signed(lane="lane-2"), "cmd.wrong_lane"),
        (signed(site="s2"), "cmd.wrong_lane"),
        (signed(name="config", args={"version": 1}), "cmd.wrong_topic"),
        (signed(exp=NOW - 31, iat=NOW - 91), "cmd.expired"),
        (signed(iat=NOW + 31, exp=NOW + 91), "cmd.not_yet_valid"),
        (signed(exp=NOW + 7200), "cmd.bad_lifetime"),
        (signed(exp=NOW), "cmd.bad_lifetime"),
        (signed(args={}), "cmd.bad_format"),
        (signed(args={"challenge": 7}), "cmd.bad_format"),
        (signed(cmd_id=""), "cmd.bad_format"),
        (signed(iat="now"), "cmd.bad_format"),
        (signed(key=ROOT, kid="root-1"), "cmd.key_not_allowed"),
    ],
)
def test_each_bad_command_is_refused_with_its_code(
    tmp_path: Path, payload: bytes, code: str
) -> None:
    result = verifier(tmp_path).verify(TOPICS.command("remote_release"), payload, NOW)
    assert refusal(result) == code


def test_tampered_claims_break_the_signature(tmp_path: Path) -> None:
    message = json.loads(signed())
    message["claims"]["args"]["challenge"] = "ch-other"
    payload = json.dumps(message).encode()
    assert refusal(verifier(tmp_path).verify(TOPICS.command("remote_release"), payload, NOW)) == (
        "cmd.bad_signature"
    )


def test_another_lanes_topic_is_refused(tmp_path: Path) -> None:
    topic = LaneTopics("s1", "lane-9").command("remote_release")
    assert refusal(verifier(tmp_path).verify(topic, signed(), NOW)) == "cmd.wrong_lane"


def test_a_rejection_carries_the_cmd_id_for_the_result_message(tmp_path: Path) -> None:
    result = verifier(tmp_path).verify(TOPICS.command("remote_release"), signed(key=ROGUE), NOW)
    assert isinstance(result, Rejection)
    assert (result.cmd_id, result.name) == ("cmd-1", "remote_release")


def test_redelivery_and_replay_run_at_most_once_even_across_restarts(tmp_path: Path) -> None:
    topic = TOPICS.command("remote_release")
    first = verifier(tmp_path)
    assert isinstance(first.verify(topic, signed(), NOW), Command)
    assert refusal(first.verify(topic, signed(), NOW)) == "cmd.replayed"  # QoS1 DUP
    first.close()
    again = verifier(tmp_path)  # the agent restarted
    assert refusal(again.verify(topic, signed(), NOW + 5)) == "cmd.replayed"
    # Same nonce under a fresh cmd_id is a replay too.
    assert refusal(again.verify(topic, signed(cmd_id="cmd-2"), NOW + 5)) == "cmd.replayed"
    assert isinstance(again.verify(topic, signed(n=3), NOW + 5), Command)


def test_an_unsynced_clock_skips_the_time_window_but_not_replay(tmp_path: Path) -> None:
    topic = TOPICS.command("remote_release")
    check = verifier(tmp_path)
    # A Pi without RTC may boot in 1970: the challenge binds the release instead.
    assert isinstance(check.verify(topic, signed(), 0, clock_synced=False), Command)
    assert refusal(check.verify(topic, signed(), 0, clock_synced=False)) == "cmd.replayed"


def test_without_a_synced_clock_a_command_older_than_an_accepted_one_is_expired(
    tmp_path: Path,
) -> None:
    topic = TOPICS.command("remote_release")
    check = verifier(tmp_path)
    # The lane's best time: its persisted floor (an unsynced clock that is a little behind).
    lane_now = NOW - 20
    first = check.verify(topic, signed(n=1, iat=NOW, exp=NOW + 60), lane_now, clock_synced=False)
    assert isinstance(first, Command)
    check.close()
    again = verifier(tmp_path)  # the floor survives a restart
    stale = signed(n=2, iat=NOW - 600, exp=NOW - 540)
    assert refusal(again.verify(topic, stale, lane_now, clock_synced=False)) == "cmd.expired"
    within_skew = signed(n=3, iat=NOW - 80, exp=NOW - 20)
    assert isinstance(again.verify(topic, within_skew, lane_now, clock_synced=False), Command)


def test_a_command_from_the_future_never_locks_out_later_ones(tmp_path: Path) -> None:
    topic = TOPICS.command("remote_release")
    check = verifier(tmp_path)
    year = 365 * 86400
    ahead = signed(n=1, iat=NOW + year, exp=NOW + year + 60)
    assert isinstance(check.verify(topic, ahead, NOW, clock_synced=False), Command)
    assert check.time_floor <= NOW + 30  # never past the clock + skew
    check.close()
    again = verifier(tmp_path)
    later = signed(n=2, iat=NOW + 5, exp=NOW + 65)
    assert isinstance(again.verify(topic, later, NOW + 5, clock_synced=False), Command)
    assert isinstance(again.verify(topic, signed(n=3), NOW + 6), Command)


def test_unparseable_or_out_of_range_commands_are_refused_not_raised(tmp_path: Path) -> None:
    topic = TOPICS.command("config")
    check = verifier(tmp_path)
    huge = b'{"claims": {"iat": ' + b"9" * 5000 + b'}, "kid": "k", "sig": ""}'
    nested = b"[" * 100_000 + b"]" * 100_000
    for payload in (huge, nested):
        assert refusal(check.verify(topic, payload, NOW)) == "cmd.bad_format"
    too_big = sign_command(OFFICER, "officers-2024", claims(
        "config", 1, args={"version": 1 << 63, "settings": {}}))
    assert refusal(check.verify(topic, too_big, NOW)) == "cmd.bad_format"


def test_an_unverified_refusal_echoes_only_a_short_escaped_prefix(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    forged = json.dumps({
        "claims": {"cmd_id": "<script>" + "x" * 5000, "name": "remote_release"},
        "kid": "k\n" * 1000, "sig": "AAAA",
    }).encode()
    result = check.verify(TOPICS.command("remote_release"), forged, NOW)
    assert isinstance(result, Rejection) and not result.authenticated
    assert result.cmd_id is not None and len(result.cmd_id) <= 35
    assert "<" not in result.cmd_id and len(result.reason) <= 200


def _root_signed(name: str, n: int, args: dict[str, Any]) -> bytes:
    return sign_command(ROOT, "root-1", claims(name=name, n=n, args=args))


def test_trust_update_needs_the_root_tier_and_a_newer_version(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    topic = TOPICS.command("trust_update")
    new_officer = Ed25519PrivateKey.from_private_bytes(bytes(range(3, 35)))
    keys = [{"kid": "officers-2025", "public_key": public_key_text(new_officer)}]
    by_officer = sign_command(OFFICER, "officers-2024", claims("trust_update", 1, args={
        "version": 1, "command_keys": keys}))
    assert refusal(check.verify(topic, by_officer, NOW)) == "cmd.key_not_allowed"
    update = _root_signed("trust_update", 2, {"version": 2, "command_keys": keys})
    assert isinstance(check.verify(topic, update, NOW), Command)
    assert check.trusted_keys()["officers-2025"] is KeyRole.COMMAND
    assert check.version("trust_update") == 2
    rollback = _root_signed("trust_update", 3, {"version": 2, "command_keys": keys})
    assert refusal(check.verify(topic, rollback, NOW)) == "cmd.stale_version"
    release = sign_command(new_officer, "officers-2025", claims(n=4))
    assert isinstance(check.verify(TOPICS.command("remote_release"), release, NOW), Command)


def test_revocations_remove_command_keys_but_never_root_keys(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    revoke = _root_signed(
        "revocations", 1, {"version": 1, "command_kids": ["officers-2024", "root-1"]}
    )
    result = check.verify(TOPICS.command("revocations"), revoke, NOW)
    assert isinstance(result, Command)
    assert check.trusted_keys() == {"root-1": KeyRole.ROOT}
    release = check.verify(TOPICS.command("remote_release"), signed(n=2), NOW)
    assert refusal(release) == "cmd.unknown_key"
    check.close()
    assert verifier(tmp_path).trusted_keys() == {"root-1": KeyRole.ROOT}  # persisted


def test_config_is_versioned_and_signed_by_a_command_key(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    topic = TOPICS.command("config")
    first = signed(name="config", n=1, args={"version": 5, "settings": {"hold_s": 30}})
    assert isinstance(check.verify(topic, first, NOW), Command)
    older = signed(name="config", n=2, args={"version": 4, "settings": {}})
    assert refusal(check.verify(topic, older, NOW)) == "cmd.stale_version"
    bad = signed(name="config", n=3, args={"settings": {}})
    assert refusal(check.verify(topic, bad, NOW)) == "cmd.bad_format"


def test_an_unknown_command_name_is_refused(tmp_path: Path) -> None:
    payload = signed(name="self_destruct")
    result = verifier(tmp_path).verify(TOPICS.command("self_destruct"), payload, NOW)
    assert refusal(result) == "cmd.unknown_command"


def test_trusted_key_from_raw_checks_the_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TrustedKey.from_raw("k", "command", b"short")
    key = TrustedKey.from_raw("k", "root", public_key_text(ROOT))
    assert key.role is KeyRole.ROOT


def test_an_officer_refusal_or_reweigh_is_a_command_tier_verdict(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    refuse = signed(name="remote_refuse", args={"challenge": "ch-abc", "reason": "seal broken"})
    result = check.verify(TOPICS.command("remote_refuse"), refuse, NOW)
    assert isinstance(result, Command)
    assert result.args == {"challenge": "ch-abc", "reason": "seal broken"}
    reweigh = signed(name="remote_reweigh", n=2, args={"challenge": "ch-abc"})
    assert isinstance(check.verify(TOPICS.command("remote_reweigh"), reweigh, NOW), Command)
    by_root = signed(ROOT, "root-1", name="remote_refuse", n=3,
                     args={"challenge": "ch-abc", "reason": "x"})
    assert refusal(check.verify(TOPICS.command("remote_refuse"), by_root, NOW))
    no_reason = signed(name="remote_refuse", n=4, args={"challenge": "ch-abc"})
    assert refusal(check.verify(TOPICS.command("remote_refuse"), no_reason, NOW))
