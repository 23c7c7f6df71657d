"""``python -m backend.console``: the officer console and its users.

    python -m backend.console serve --store URL_OR_PATH --broker URL --site S \\
        --officer-key FILE --users FILE [--listen 127.0.0.1:8090] [--kid KID] [--state-dir DIR]
        [--ca FILE --cert FILE --key FILE] [--tls-cert FILE --tls-key FILE]
    python -m backend.console add-user NAME --tier command|view --users FILE [--replace]
    python -m backend.console remove-user NAME --users FILE
    python -m backend.console list-users --users FILE

``serve`` runs until SIGTERM or Ctrl-C. ``add-user`` reads the password from stdin (its
first line) when stdin is not a terminal, and asks twice otherwise. Errors are one line on
stderr and a non-zero exit; a person never sees a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.errors import BackendError, BackendSetupError
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.web.server import is_loopback
from edge_agent.web.server import split_listen as web_split_listen

USAGE_EXIT = 2
FAILED_EXIT = 1
PROG = "python -m backend.console"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(USAGE_EXIT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser("serve", help="run the officer console")
    serve.add_argument("--store", required=True,
                       help="the backend's event store: postgresql://USER@HOST:PORT/DB or a "
                            "SQLite file the ingest workers write")
    serve.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    serve.add_argument("--site", required=True, help="the site whose lanes this console serves")
    serve.add_argument("--officer-key", required=True, type=Path, metavar="FILE",
                       help="the command-tier Ed25519 private key (PEM, mode 0600), e.g. "
                            "keys/officer-console.key.pem from lanectl site init")
    serve.add_argument("--kid", help="the key's id in the lanes' command_keys.json (default: "
                                     "NAME-FINGERPRINT as lanectl site init names it)")
    serve.add_argument("--users", required=True, type=Path, metavar="FILE",
                       help="the users file (add-user makes it)")
    serve.add_argument("--listen", default="127.0.0.1:8090", metavar="HOST:PORT",
                       help="where the console listens (default 127.0.0.1:8090)")
    serve.add_argument("--state-dir", type=Path, metavar="DIR",
                       help="where the audit file is kept (default: the users file's folder)")
    serve.add_argument("--client-id", default="console",
                       help="the console's MQTT client id (its certificate's CN)")
    serve.add_argument("--ca", type=Path, help="CA file for an mqtts:// broker")
    serve.add_argument("--cert", type=Path, help="the console's MQTT client certificate")
    serve.add_argument("--key", type=Path, help="the console's MQTT client key")
    serve.add_argument("--tls-cert", type=Path, help="HTTPS certificate for the console's page")
    serve.add_argument("--tls-key", type=Path, help="HTTPS key for the console's page")
    serve.add_argument("--idle-minutes", type=float, default=15.0,
                       help="a session ends after this long without a request (default 15)")
    serve.add_argument("--session-hours", type=float, default=12.0,
                       help="a session ends this long after the login (default 12)")
    add = commands.add_parser("add-user", help="add an officer (password from stdin or asked)")
    add.add_argument("name")
    add.add_argument("--tier", required=True, choices=("command", "view"),
                     help="command: may release, refuse, ask for a re-weigh; view: looks only")
    add.add_argument("--users", required=True, type=Path, metavar="FILE")
    add.add_argument("--replace", action="store_true",
                     help="set a new password and tier for an officer already in the file")
    remove = commands.add_parser("remove-user", help="remove an officer (their sessions end)")
    remove.add_argument("name")
    remove.add_argument("--users", required=True, type=Path, metavar="FILE")
    listing = commands.add_parser("list-users", help="list the officers and their tiers")
    listing.add_argument("--users", required=True, type=Path, metavar="FILE")
    return parser


def split_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT as the lane page reads it, with the console's own words when it is wrong."""
    try:
        return web_split_listen(listen)
    except ConfigError:
        raise BackendSetupError(
            f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8090"
        ) from None


def load_officer_key(path: Path, kid: str | None) -> tuple[Ed25519PrivateKey, str]:
    """The command-tier key and its kid; BackendSetupError naming what is wrong."""
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise BackendSetupError(f"--officer-key {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise BackendSetupError(
            f"--officer-key {path} is readable by others (mode {mode & 0o777:o}): it signs "
            f"releases; chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise BackendSetupError(f"--officer-key {path}: not an unencrypted PEM private key "
                                f"({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BackendSetupError(f"--officer-key {path}: an Ed25519 key is needed, not "
                                f"{type(key).__name__}")
    if kid is None:
        raw = key.public_key().public_bytes_raw()
        name = path.name.removesuffix(".pem").removesuffix(".key")
        kid = f"{name}-{hashlib.sha256(raw).hexdigest()[:8]}"
    return key, kid


def _read_password(name: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise BackendSetupError("the two passwords differ: nothing was changed")
        return first
    line = sys.stdin.readline()
    if not line:
        raise BackendSetupError("no password on stdin (one line expected)")
    return line.removesuffix("\n").removesuffix("\r")


def _add_user(args: argparse.Namespace) -> int:
    from backend.console.auth import UsersFile, check_name, make_user

    check_name(args.name)
    user = make_user(args.name, args.tier, _read_password(args.name))
    new = UsersFile(args.users).put(user, replace=args.replace, now=datetime.now(UTC))
    print(f"{'added' if new else 'replaced'} {user.name} ({user.tier}) in {args.users}")
    return 0


def _remove_user(args: argparse.Namespace) -> int:
    from backend.console.auth import UsersFile

    UsersFile(args.users).remove(args.name)
    print(f"removed {args.name} from {args.users}; their sessions end at their next request")
    return 0


def _list_users(args: argparse.Namespace) -> int:
    from backend.console.auth import UsersFile

    for user in UsersFile(args.users).load().values():
        print(f"{user.name}\t{user.tier}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from backend.console.serve import ServeOptions, run

    host, port = split_listen(args.listen)
    tls_page = (args.tls_cert, args.tls_key) if args.tls_cert or args.tls_key else None
    if tls_page is not None and not (args.tls_cert and args.tls_key):
        raise BackendSetupError("HTTPS needs both --tls-cert and --tls-key")
    if not is_loopback(host) and tls_page is None:
        raise BackendSetupError(
            f"--listen {args.listen} is reachable from the network and officers send their "
            "passwords to it: give --tls-cert and --tls-key, or listen on 127.0.0.1 behind "
            "a TLS proxy")
    if not 0 < args.idle_minutes * 60 <= args.session_hours * 3600:
        raise BackendSetupError("--idle-minutes must be above 0 and no longer than "
                                "--session-hours")
    key, kid = load_officer_key(args.officer_key, args.kid)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    options = ServeOptions(
        store=args.store, broker=args.broker, site=args.site, key=key, kid=kid,
        users=args.users, host=host, port=port,
        state_dir=args.state_dir or args.users.resolve().parent, client_id=args.client_id,
        mqtt_tls=(args.ca, args.cert, args.key), page_tls=tls_page,
        idle_s=args.idle_minutes * 60, absolute_s=args.session_hours * 3600)
    return run(options, stop, announce=lambda line: print(line, flush=True))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"serve": _serve, "add-user": _add_user, "remove-user": _remove_user,
               "list-users": _list_users}[args.command]
    try:
        return handler(args)
    except (BackendError, EdgeAgentError, OSError) as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return FAILED_EXIT
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return FAILED_EXIT
