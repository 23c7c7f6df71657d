"""A private PostgreSQL server on a free loopback port, for tests, ``lane-sim`` and benchmarks.

Debian's server binaries (package ``postgresql``): ``initdb`` makes a cluster in a fresh
directory, ``postgres`` runs as a child process of ours (so the kernel stops it if we die:
no server outlives its test run), and ``close()`` asks for a fast shutdown, as
``pg_ctl stop -m fast`` does, then removes the directory. The cluster listens on 127.0.0.1
only and on a Unix socket inside its own directory; it trusts loopback connections, which
is right for a throwaway instance and never for a site's database.

PostgreSQL refuses to run as root: under root the cluster belongs to the ``postgres`` user
(made by the Debian package) and the server runs as it.

    with PgServer() as pg:
        store = PgStore(pg.url)
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from backend.errors import BackendSetupError, BackendTimeout, StoreError

START_TIMEOUT_S = 30.0
DATABASE = "gatelane"
_PR_SET_PDEATHSIG = 1


def find_bindir() -> Path:
    """The newest Debian PostgreSQL server's bin directory (it holds initdb and postgres)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit()
        else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found and (Path(found).parent / "postgres").exists():
        return Path(found).parent
    raise BackendSetupError(
        "PostgreSQL's server is not installed: run `make test` (it installs it when run as "
        "root) or `sudo apt-get install postgresql` (Debian package)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as(user: pwd.struct_passwd | None) -> Callable[[], None]:
    def prepare() -> None:  # between fork and exec
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if user is not None:
            os.setgid(user.pw_gid)
            os.setgroups([])
            os.setuid(user.pw_uid)
    return prepare


class PgServer:
    """One private PostgreSQL cluster and server; usable as a context manager."""

    def __init__(self, workdir: Path | None = None, *, bindir: Path | None = None) -> None:
        self._bindir = bindir if bindir is not None else find_bindir()
        for program in ("initdb", "postgres"):
            if not (self._bindir / program).exists():
                raise BackendSetupError(
                    f"{self._bindir / program} not found: install Debian's postgresql package"
                )
        self._user = self._server_user()
        # Not under the caller's directory: a test's tmp_path is private to root, and the
        # server (as postgres) must reach its own files.
        self._dir = Path(tempfile.mkdtemp(prefix="gatelane-pg-"))
        self._log_dir = workdir
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def _server_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise BackendSetupError(
                "running as root, PostgreSQL needs the postgres user: install Debian's "
                "postgresql package"
            ) from None

    @property
    def url(self) -> str:
        """The database URL of the ``gatelane`` database (libpq form)."""
        user = self._user.pw_name if self._user else pwd.getpwuid(os.geteuid()).pw_name
        return f"postgresql://{user}@127.0.0.1:{self.port}/{DATABASE}"

    def server_url(self, database: str) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{database}"

    def start(self) -> None:
        """initdb (once), start the server, create the database; return once it answers."""
        if self._process is not None:
            raise StoreError("the PostgreSQL server is already running")
        data = self._dir / "data"
        if not data.exists():
            self._own(self._dir)
            self._call([str(self._bindir / "initdb"), "-D", str(data), "--auth=trust",
                        "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
                        f"--username={self._user.pw_name if self._user else self._me()}"])
        self.port = free_port()
        log = (self._log_dir or self._dir) / "postgres.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            self._process = subprocess.Popen(
                [str(self._bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self._dir}",
                 "-c", "max_connections=200"],
                stdout=sink, stderr=subprocess.STDOUT, preexec_fn=_run_as(self._user),
            )
        self._wait_ready(log)
        self._create_database(DATABASE)

    def _me(self) -> str:
        return pwd.getpwuid(os.geteuid()).pw_name

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _call(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, preexec_fn=_run_as(self._user),
                              check=False)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise StoreError(f"{Path(argv[0]).name} failed: {detail[-500:]}")

    def _wait_ready(self, log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                tail = log.read_text(errors="replace")[-800:]
                self._process = None
                raise StoreError(f"PostgreSQL exited while starting: {tail}")
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ):
                if self._answers():
                    return
            time.sleep(0.05)
        self.stop()
        raise BackendTimeout(f"PostgreSQL did not accept connections in {START_TIMEOUT_S:g} s")

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.server_url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:  # still starting up
            return False

    def _create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.server_url("postgres"), autocommit=True) as db:
            exists = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                db.execute(f'CREATE DATABASE "{name}"')

    def fresh_database(self, name: str) -> str:
        """Create an empty database ``name`` (dropping one of that name) and return its URL."""
        import psycopg

        with psycopg.connect(self.server_url("postgres"), autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            db.execute(f'CREATE DATABASE "{name}"')
        return self.server_url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, then stop)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
