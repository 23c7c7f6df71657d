"""The console's door: password hashing, the users file, sessions, CSRF, login limits, and the
command line that manages users and starts the console (its refusals of bad input)."""

from __future__ import annotations

import io
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.console import auth
from backend.console.auth import ConsoleAuth, LoginLimiter, Sessions, UsersFile
from backend.console.cli import load_officer_key, main
from backend.errors import BackendSetupError

FAST = {"n": 2**10, "r": 8, "p": 1}  # hashing is not what most of these tests are about
PASSWORD = "correct horse battery"
WHEN = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def users_file(tmp_path: Path, *entries: tuple[str, str]) -> UsersFile:
    users = UsersFile(tmp_path / "users.json")
    for name, tier in entries:
        users.put(auth.make_user(name, tier, PASSWORD, cost=FAST), replace=False, now=WHEN)
    return users


def door(users: UsersFile, *, idle_s: float = 900, absolute_s: float = 43_200,
         secure: bool = False) -> ConsoleAuth:  # fmt: skip
    return ConsoleAuth(users, Sessions(idle_s=idle_s, absolute_s=absolute_s), LoginLimiter(),
                       secure_cookie=secure)


def test_passwords_are_scrypt_hashed_with_a_salt_of_their_own() -> None:
    a = auth.make_user("officer-7", "command", PASSWORD)
    b = auth.make_user("officer-8", "command", PASSWORD)
    assert a.cost == auth.SCRYPT and a.salt != b.salt and a.digest != b.digest
    assert len(a.salt) == 16 and len(a.digest) == 32
    assert auth.password_matches(a, PASSWORD)
    assert not auth.password_matches(a, PASSWORD + "!")
    assert not auth.password_matches(a, "x" * 5000)


def test_the_users_file_keeps_hashes_only_mode_0600_and_reads_back(tmp_path: Path) -> None:
    users = users_file(tmp_path, ("officer-7", "command"), ("clerk-1", "view"))
    mode = stat.S_IMODE(users.path.stat().st_mode)
    assert mode == 0o600
    text = users.path.read_text()
    assert PASSWORD not in text
    doc = json.loads(text)
    assert doc["format"] == auth.USERS_FORMAT
    assert [(u["name"], u["tier"]) for u in doc["users"]] == [
        ("clerk-1", "view"), ("officer-7", "command")]
    loaded = UsersFile(users.path).load()
    assert loaded["officer-7"].may_act and not loaded["clerk-1"].may_act
    assert auth.password_matches(loaded["clerk-1"], PASSWORD)


def test_a_name_is_added_once_unless_replaced(tmp_path: Path) -> None:
    users = users_file(tmp_path, ("officer-7", "command"))
    again = auth.make_user("officer-7", "view", "another long password", cost=FAST)
    with pytest.raises(BackendSetupError, match="add --replace"):
        users.put(again, replace=False, now=WHEN)
    assert users.put(again, replace=True, now=WHEN) is False
    assert users.load()["officer-7"].tier == "view"
    users.remove("officer-7")
    assert users.load() == {}
    with pytest.raises(BackendSetupError, match="not in"):
        users.remove("officer-7")


@pytest.mark.parametrize(("name", "tier", "password", "says"), [
    ("Officer 7", "command", PASSWORD, "lowercase letters"),
    ("officer-7", "admin", PASSWORD, "use one of command, view"),
    ("officer-7", "command", "short", "at least 12"),
    ("officer-7", "command", "twelve chars\n", "control characters"),
])
def test_bad_names_tiers_and_passwords_are_refused_with_what_to_do(
    name: str, tier: str, password: str, says: str,
) -> None:
    with pytest.raises(BackendSetupError, match=says):
        auth.make_user(name, tier, password, cost=FAST)


@pytest.mark.parametrize(("text", "says"), [
    ("not json", "not JSON"),
    ('{"format": "other"}', "not a console users file"),
    ('{"format": "gatelane.console-users/1", "users": [{"name": "a"}]}', r"users\[0\]: needs"),
    ('{"format": "gatelane.console-users/1", "users": {}}', "must be a list"),
])
def test_a_broken_users_file_is_refused_naming_the_entry(
    tmp_path: Path, text: str, says: str,
) -> None:
    path = tmp_path / "users.json"
    path.write_text(text)
    with pytest.raises(BackendSetupError, match=says):
        UsersFile(path).load()


def test_a_session_ends_when_idle_and_at_its_absolute_limit() -> None:
    user = auth.make_user("officer-7", "command", PASSWORD, cost=FAST)
    users = {user.name: user}
    sessions = Sessions(idle_s=60, absolute_s=300)
    token, _ = sessions.start(user, 1000.0)
    assert sessions.get(token, 1059.0, users) is not None  # and the idle clock restarts
    assert sessions.get(token, 1118.0, users) is not None
    assert sessions.get(token, 1179.0, users) is None  # 61 s idle
    token, _ = sessions.start(user, 2000.0)
    for now in range(2050, 2300, 50):
        assert sessions.get(token, float(now), users) is not None
    assert sessions.get(token, 2301.0, users) is None  # 5 min after the login
    assert sessions.get("", 2301.0, users) is None
    with pytest.raises(BackendSetupError, match="idle"):
        Sessions(idle_s=600, absolute_s=60)


def test_a_removed_user_or_a_new_tier_or_password_ends_the_session(tmp_path: Path) -> None:
    users = users_file(tmp_path, ("officer-7", "command"), ("officer-8", "command"))
    console = door(users)
    seven = console.login("officer-7", PASSWORD, 10.0)
    eight = console.login("officer-8", PASSWORD, 10.0)
    assert seven.session is not None and eight.session is not None
    cookie7, cookie8 = f"{auth.COOKIE}={seven.token}", f"{auth.COOKIE}={eight.token}"
    assert console.session(cookie7, 11.0) is not None
    users.put(auth.make_user("officer-7", "view", PASSWORD, cost=FAST), replace=True, now=WHEN)
    assert console.session(cookie7, 12.0) is None  # the tier changed
    users.remove("officer-8")
    assert console.session(cookie8, 13.0) is None
    again = console.login("officer-7", PASSWORD, 14.0)
    assert again.session is not None and again.session.tier == "view"


def test_login_gives_a_fresh_token_and_a_strict_httponly_cookie(tmp_path: Path) -> None:
    users = users_file(tmp_path, ("officer-7", "command"))
    console = door(users)
    first = console.login("Officer-7 ", PASSWORD, 10.0)  # names are not case-sensitive
    second = console.login("officer-7", PASSWORD, 11.0)
    assert first.session is not None and second.session is not None
    assert first.token != second.token and first.session.csrf != second.session.csrf
    cookie = console.cookie(first.token)
    assert cookie.startswith(f"{auth.COOKIE}={first.token}; ")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert "Secure" in door(users, secure=True).cookie(first.token)
    console.logout(f"{auth.COOKIE}={first.token}")
    assert console.session(f"{auth.COOKIE}={first.token}", 12.0) is None
    assert console.session(f"{auth.COOKIE}={second.token}", 12.0) is not None
    assert "Max-Age=0" in console.cleared_cookie()


def test_the_csrf_token_is_the_sessions_own() -> None:
    user = auth.make_user("officer-7", "command", PASSWORD, cost=FAST)
    sessions = Sessions()
    _, one = sessions.start(user, 0.0)
    _, two = sessions.start(user, 0.0)
    assert auth.csrf_ok(one, one.csrf)
    assert not auth.csrf_ok(one, two.csrf) and not auth.csrf_ok(one, "")


def test_failed_logins_lock_the_name_for_a_while_even_for_the_right_password(
    tmp_path: Path,
) -> None:
    users = users_file(tmp_path, ("officer-7", "command"))
    console = ConsoleAuth(users, Sessions(), LoginLimiter(max_failures=3, window_s=60,
                                                          lockout_s=120))
    for now in (0.0, 1.0):
        assert console.login("officer-7", "wrong password!", now).wait_s == 0
    third = console.login("officer-7", "wrong password!", 2.0)
    assert third.session is None and third.wait_s == 120
    locked = console.login("officer-7", PASSWORD, 60.0)
    assert locked.session is None and locked.wait_s == 62
    assert console.login("officer-8", "wrong password!", 60.0).wait_s == 0  # per user
    assert console.login("officer-7", PASSWORD, 123.0).session is not None
    # Failures spread wider than the window never lock.
    for now in (200.0, 270.0, 340.0, 410.0):
        assert console.login("officer-7", "wrong password!", now).wait_s == 0


def test_unknown_names_are_limited_too_and_answer_like_a_wrong_password(
    tmp_path: Path,
) -> None:
    users = users_file(tmp_path, ("officer-7", "command"))
    limiter = LoginLimiter(max_failures=2, window_s=60, lockout_s=30)
    console = ConsoleAuth(users, Sessions(), limiter)
    assert console.login("nobody", PASSWORD, 0.0).session is None
    assert console.login("nobody", PASSWORD, 1.0).wait_s == 30


def test_the_users_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    users = users_file(tmp_path, ("officer-7", "command"))
    reader = UsersFile(users.path)
    assert set(reader.users()) == {"officer-7"}
    users.put(auth.make_user("clerk-1", "view", PASSWORD, cost=FAST), replace=False, now=WHEN)
    assert set(reader.users()) == {"officer-7", "clerk-1"}
    users.path.write_text("{ half written")
    assert set(reader.users()) == {"officer-7", "clerk-1"}  # the last good list


# -- the command line -------------------------------------------------------------------------
def test_add_user_reads_the_password_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "site" / "users.json"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["add-user", "officer-7", "--tier", "command", "--users", str(path)]) == 0
    assert capsys.readouterr().out == f"added officer-7 (command) in {path}\n"
    user = UsersFile(path).load()["officer-7"]
    assert auth.password_matches(user, PASSWORD)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["add-user", "officer-7", "--tier", "view", "--users", str(path)]) == 1
    assert "add --replace" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["add-user", "clerk-1", "--tier", "view", "--users", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m backend.console add-user: the password has 5 characters")
    assert "Traceback" not in err
    assert main(["list-users", "--users", str(path)]) == 0
    assert capsys.readouterr().out == "officer-7\tcommand\n"
    assert main(["remove-user", "officer-7", "--users", str(path)]) == 0


def _key_file(tmp_path: Path, name: str = "officer-console.key.pem", mode: int = 0o600) -> Path:
    path = tmp_path / name
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(mode)
    return path


def test_the_officer_key_is_an_ed25519_file_for_our_eyes_only(tmp_path: Path) -> None:
    path = _key_file(tmp_path)
    _, kid = load_officer_key(path, None)
    assert kid.startswith("officer-console-") and len(kid) == len("officer-console-") + 8
    assert load_officer_key(path, "officer-console")[1] == "officer-console"
    with pytest.raises(BackendSetupError, match="chmod 600"):
        load_officer_key(_key_file(tmp_path, "open.pem", 0o644), None)
    ec_path = tmp_path / "ec.pem"
    ec_path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ec_path.chmod(0o600)
    with pytest.raises(BackendSetupError, match="Ed25519 key is needed"):
        load_officer_key(ec_path, None)
    with pytest.raises(BackendSetupError, match="No such file"):
        load_officer_key(tmp_path / "missing.pem", None)


def _serve(tmp_path: Path, **changes: str) -> list[str]:
    users = users_file(tmp_path, ("officer-7", "command"))
    store = tmp_path / "backend.sqlite"
    store.write_bytes(b"")
    args = {"--store": str(store), "--broker": "mqtt://127.0.0.1:1", "--site": "BZ01",
            "--officer-key": str(_key_file(tmp_path)), "--users": str(users.path),
            "--listen": "127.0.0.1:0", **changes}
    return ["serve", *[part for pair in args.items() for part in pair]]


@pytest.mark.parametrize(("changes", "says"), [
    ({"--listen": "8090"}, "expected HOST:PORT"),
    ({"--listen": "0.0.0.0:8090"}, "give --tls-cert and --tls-key"),
    ({"--store": "/nowhere/backend.sqlite"}, "no such file"),
    ({"--store": "redis://x"}, "unknown event store"),
    ({"--broker": "http://127.0.0.1:1883"}, "scheme must be mqtt:// or mqtts://"),
    ({"--users": "/nowhere/users.json"}, "no users file at /nowhere/users.json: add an officer"),
    ({"--officer-key": "/nowhere/key.pem"}, "--officer-key /nowhere/key.pem"),
    ({"--idle-minutes": "0"}, "--idle-minutes must be above 0"),
    ({"--tls-cert": "/nowhere/cert.pem"}, "needs both --tls-cert and --tls-key"),
])
def test_serve_refuses_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, str], says: str,
) -> None:
    assert main(_serve(tmp_path, **changes)) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m backend.console serve: ") and says in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_serve_needs_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--site", "BZ01"])
    assert exit_.value.code == 2
    assert "the following arguments are required" in capsys.readouterr().err
