"""Versioned commands as desired state: pass trust list, revocations and settings survive
restarts, a list left out stays as it was, and a refused command changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.protocols import gp1
from edge_agent.telemetry.commands import (
    Command,
    CommandVerifier,
    KeyRole,
    Rejection,
    TrustedKey,
    public_key_text,
    sign_command,
)
from edge_agent.telemetry.topics import LaneTopics

NOW = 1_714_564_800
TOPICS = LaneTopics("s1", "lane-1")
OFFICER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ROOT = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ISSUER_2025 = Ed25519PrivateKey.from_private_bytes(bytes(range(5, 37)))
HASH_A, HASH_B = "00" * 16, "ab" * 16


def only_small_holds(args: Mapping[str, Any]) -> list[str]:
    settings = args["settings"]
    return [f"{key}: too large" for key, value in settings.items() if value > 100]


def verifier(tmp_path: Path) -> CommandVerifier:
    keys = [
        TrustedKey("officers", KeyRole.COMMAND, OFFICER.public_key()),
        TrustedKey("root-1", KeyRole.ROOT, ROOT.public_key()),
    ]
    return CommandVerifier(
        tmp_path / "commands.db", site="s1", lane="lane-1", trusted=keys,
        checks={"config": only_small_holds},
    )


def send(check: CommandVerifier, name: str, n: int, args: dict[str, Any]) -> Command | Rejection:
    root = name in ("trust_update", "revocations")
    key, kid = (ROOT, "root-1") if root else (OFFICER, "officers")
    claims = {
        "cmd_id": f"cmd-{n}", "name": name, "site": "s1", "lane": "lane-1", "iat": NOW,
        "exp": NOW + 60, "nonce": f"nonce-{n}", "issuer": "ops", "args": args,
    }
    return check.verify(TOPICS.command(name), sign_command(key, kid, claims), NOW)


def pass_keys(*private: Ed25519PrivateKey) -> list[dict[str, Any]]:
    trust = gp1.TrustList()
    for key in private:
        trust = trust.with_key(key.public_key(), issuer="customs-2025")
    keys: list[dict[str, Any]] = trust.to_json()["keys"]
    return keys


def test_a_pass_trust_list_update_is_kept_across_restarts(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    assert check.applied("trust_update") is None
    assert isinstance(send(check, "trust_update", 1, {"version": 3, "pass_keys": pass_keys(
        ISSUER_2025)}), Command)
    check.close()
    applied = verifier(tmp_path).applied("trust_update")
    assert applied is not None and applied.version == 3
    trust = gp1.TrustList.from_json({"keys": applied.body["pass_keys"]})
    assert trust.entries[0].kid == gp1.key_id(ISSUER_2025.public_key())


def test_a_list_left_out_stays_as_it_was(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    new_officer = Ed25519PrivateKey.from_private_bytes(bytes(range(7, 39)))
    command_keys = [{"kid": "officers-2025", "public_key": public_key_text(new_officer)}]
    assert isinstance(send(check, "trust_update", 1, {"version": 1, "pass_keys": pass_keys(
        ISSUER_2025)}), Command)
    assert isinstance(send(check, "trust_update", 2, {"version": 2,
                                                       "command_keys": command_keys}), Command)
    applied = check.applied("trust_update")
    assert applied is not None
    assert set(applied.body) == {"pass_keys", "command_keys"}
    assert check.trusted_keys()["officers-2025"] is KeyRole.COMMAND


def test_pass_revocations_replace_the_previous_list_and_need_a_newer_version(
    tmp_path: Path,
) -> None:
    check = verifier(tmp_path)
    assert isinstance(send(check, "revocations", 1, {"version": 1,
                                                      "pass_hashes": [HASH_A, HASH_B]}), Command)
    assert isinstance(send(check, "revocations", 2, {"version": 2,
                                                      "pass_hashes": [HASH_B]}), Command)
    rollback = send(check, "revocations", 3, {"version": 1, "pass_hashes": [HASH_A, HASH_B]})
    assert isinstance(rollback, Rejection) and rollback.code == "cmd.stale_version"
    applied = check.applied("revocations")
    assert applied is not None and applied.body["pass_hashes"] == [HASH_B]


def test_malformed_lists_are_refused_with_every_problem_named(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    broken_entry = dict(pass_keys(ISSUER_2025)[0], kid="00" * 8)
    cases = [
        ("trust_update", {"version": 1, "pass_keys": []}, "empty trust list"),
        ("trust_update", {"version": 1, "pass_keys": [broken_entry]}, "does not match"),
        ("trust_update", {"version": 1}, "needs pass_keys or command_keys"),
        ("trust_update", {"version": 1, "command_keys": [{"kid": "k", "public_key": "AA"}]},
         "not a base64url Ed25519 key"),
        ("revocations", {"version": 1, "pass_hashes": ["xyz", HASH_A, 7]}, "pass_hashes[0]"),
        ("revocations", {"version": 1, "pass_hashes": [], "extra": 1}, "unknown argument"),
    ]
    for n, (name, args, expected) in enumerate(cases, 1):
        result = send(check, name, n, args)
        assert isinstance(result, Rejection), (name, args)
        assert result.code == "cmd.bad_format"
        assert any(expected in problem for problem in result.problems), result.problems
    bad_hashes = send(check, "revocations", 99, {"version": 1, "pass_hashes": ["xyz", 7]})
    assert isinstance(bad_hashes, Rejection) and len(bad_hashes.problems) == 2
    assert check.applied("trust_update") is None and check.applied("revocations") is None


def test_revocation_hashes_must_be_exactly_32_hex_digits(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    # 32 characters but only 30 hex digits: bytes.fromhex would make a 15-byte "hash".
    spaced = HASH_B[:16] + "  " + HASH_B[16:30]
    for n, bad in enumerate((spaced, "ab " * 15 + "ab", " " + HASH_A), 1):
        result = send(check, "revocations", n, {"version": 1, "pass_hashes": [HASH_A, bad]})
        assert isinstance(result, Rejection) and result.code == "cmd.bad_format"
        assert len(result.problems) == 1
        assert result.problems[0].startswith("pass_hashes[1]: revocation hash"), result.problems
    upper = send(check, "revocations", 9, {"version": 1, "pass_hashes": [HASH_B.upper()]})
    assert isinstance(upper, Command)


def test_settings_the_lane_refuses_do_not_use_up_the_version(tmp_path: Path) -> None:
    check = verifier(tmp_path)
    refused = send(check, "config", 1, {"version": 4, "settings": {"a": 5, "b": 500}})
    assert isinstance(refused, Rejection)
    assert (refused.code, refused.problems) == ("cmd.invalid_args", ("b: too large",))
    assert check.version("config") == 0
    accepted = send(check, "config", 2, {"version": 4, "settings": {"a": 5, "b": 50}})
    assert isinstance(accepted, Command)
    applied = check.applied("config")
    assert applied is not None and applied.body == {"settings": {"a": 5, "b": 50}}
