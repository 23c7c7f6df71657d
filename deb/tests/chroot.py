"""A clean Debian 12 root to install the package into, and the package itself.

    start_pristine(tmp_path_factory)                 # debootstrap, in the background
    deb = session_deb(tmp_path_factory)              # deb/build-deb.sh, host arch
    newer = start_deb(tmp_path_factory, version="0.2.0")  # a Future, built meanwhile
    with fresh_root(tmp_path_factory) as root:       # mounted; torn down even on failure
        root.install(deb)                            # dpkg -i inside the root
        root.run(["edge-agent", "--version"], user="gatelane")
        agent = root.popen([...], user="gatelane")   # killed at teardown if still running

``fresh_root`` copies a pristine root made once per test session with ``debootstrap
--variant=minbase`` (Debian's own python3, python3-venv, libzbar0, systemd), so every module
starts from the same clean system. The root shares the host's network namespace: a broker
on the host's loopback is reachable from inside. /proc, /dev, /dev/pts and /dev/shm are
mounted while the root is in use and unmounted at teardown; anything still running inside
is killed first, and the tree is deleted without crossing into another filesystem.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "deb" / "build-deb.sh"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What a Raspberry Pi OS Lite image has of the package's dependencies, and no more.
BASE_PACKAGES = ("python3", "python3-venv", "libzbar0", "systemd", "procps", "ca-certificates")
MOUNTS = (("proc", "proc"), ("dev", "/dev"), ("dev/pts", "/dev/pts"), ("dev/shm", "/dev/shm"))
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Made at most once per test session, in the background while other things build.
_pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="debian-root")
_pristine: list[Future[Path]] = []
_debs: dict[tuple[str | None, str | None], Future[Path]] = {}


def build_deb(out_dir: Path, *, version: str | None = None, arch: str | None = None) -> Path:
    """Build the package with deb/build-deb.sh into ``out_dir``; its path.

    ``version`` overrides pyproject's (digits and dots), e.g. to make a newer package."""
    argv = [str(BUILD_SCRIPT), "--out", str(out_dir)]
    argv += ["--version", version] if version else []
    argv += ["--arch", arch] if arch else []
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"build-deb.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    built = sorted(out_dir.glob(f"gatelane_{version or '*'}_{arch or '*'}.deb"))
    if len(built) != 1:
        raise RuntimeError(f"expected one package in {out_dir}, found {built}")
    return built[0]


def start_deb(
    factory: pytest.TempPathFactory, *, version: str | None = None, arch: str | None = None
) -> Future[Path]:
    """Start ``build_deb`` in the background, once per test session for each (version, arch)."""
    key = (version, arch)
    if key not in _debs:
        out = factory.mktemp("deb")
        _debs[key] = _pool.submit(build_deb, out, version=version, arch=arch)
    return _debs[key]


def session_deb(
    factory: pytest.TempPathFactory, *, version: str | None = None, arch: str | None = None
) -> Path:
    """The session's package for (version, arch), built now unless it was started already."""
    return start_deb(factory, version=version, arch=arch).result()


def make_root(path: Path, *, include: Sequence[str] = BASE_PACKAGES) -> Path:
    """debootstrap a minimal Debian 12 into ``path`` (about 45 s and 300 MB); ``path``."""
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(include)}",
            SUITE, str(path), MIRROR]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"debootstrap failed ({done.returncode}):\n{done.stdout[-4000:]}")
    return path


def start_pristine(factory: pytest.TempPathFactory) -> Future[Path]:
    """Start making the session's pristine root in the background (once per session)."""
    if not _pristine:
        path = factory.mktemp("debian-pristine") / "root"
        atexit.register(subprocess.run, ["rm", "-rf", "--one-file-system", str(path)])
        _pristine.append(_pool.submit(make_root, path))
    return _pristine[0]


@contextlib.contextmanager
def fresh_root(factory: pytest.TempPathFactory) -> Iterator[DebianRoot]:
    """A mounted copy of the session's pristine root; unmounted and deleted afterwards."""
    pristine = start_pristine(factory).result()
    path = factory.mktemp("debian") / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(pristine), str(path)], check=True)
    root = DebianRoot(path)
    try:
        root.mount()
        yield root
    finally:
        root.destroy()


class DebianRoot:
    """A Debian root on this machine, entered with chroot(8) as root or as any of its users."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._processes: list[subprocess.Popen[Any]] = []

    def __repr__(self) -> str:
        return f"DebianRoot({self.path})"

    def host_path(self, inside: str | os.PathLike[str]) -> Path:
        """Where a path inside the root is on the host (no symlink in it is followed)."""
        return self.path / str(inside).lstrip("/")

    # -- mounts ------------------------------------------------------------------------------
    def mount(self) -> None:
        for target, source in MOUNTS:
            where = self.host_path(target)
            if self._is_mountpoint(where):
                continue
            where.mkdir(parents=True, exist_ok=True)
            if source == "proc":
                argv = ["mount", "-t", "proc", "proc", str(where)]
            else:
                argv = ["mount", "--bind", source, str(where)]
            subprocess.run(argv, check=True, capture_output=True)

    def unmount(self) -> None:
        """Kill what still runs inside, then unmount every mount under the root (deepest
        first), lazily when a plain unmount fails."""
        self._kill_inside()
        for where in sorted(self._mounts(), key=lambda p: len(p.parts), reverse=True):
            if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(where)], capture_output=True)
        left = self._mounts()
        if left:
            raise RuntimeError(f"still mounted under {self.path}: {left}")

    def destroy(self) -> None:
        """Unmount and delete the root; never crosses into a mounted filesystem."""
        try:
            self.unmount()
        finally:
            if not self._mounts():
                subprocess.run(["rm", "-rf", "--one-file-system", str(self.path)], check=False)

    def _mounts(self) -> list[Path]:
        found = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = Path(line.split()[4].replace("\\040", " "))
            if point == self.path or self.path in point.parents:
                found.append(point)
        return found

    def _is_mountpoint(self, where: Path) -> bool:
        return where in self._mounts()

    def _kill_inside(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self._processes.clear()
        # Anything else whose root is this tree (daemons a maintainer script started).
        for _ in range(50):
            inside = [pid for pid in _pids() if _root_of(pid) == self.path]
            if not inside:
                return
            for pid in inside:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    # -- commands ----------------------------------------------------------------------------
    def argv(self, argv: Sequence[str], *, user: str | None = None) -> list[str]:
        """The host command line that runs ``argv`` inside the root, as root or as ``user``
        ("name" with the group of the same name, or "name:group"), with the user's groups
        from the root's /etc/group."""
        inner = list(argv)
        if user is not None:
            name, _, group = user.partition(":")
            inner = ["setpriv", f"--reuid={name}", f"--regid={group or name}", "--init-groups",
                     "--", *inner]  # fmt: skip
        return ["chroot", str(self.path), *inner]

    def env(self, user: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment: nothing of the host's (its pip settings, its venv) leaks in."""
        home = "/root" if user in (None, "root") else "/"
        env = {"PATH": PATH, "HOME": home, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        return {**env, **(extra or {})}

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 600,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside; output captured as text. ``check``: raise with its output
        when it fails."""
        done = subprocess.run(
            self.argv(argv, user=user), input=input, capture_output=True, text=True,
            timeout=timeout, env=self.env(user, env),
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {done.returncode} in {self.path}\n"
                f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
            )
        return done

    def popen(
        self, argv: Sequence[str], *, user: str | None = None,
        env: dict[str, str] | None = None, **kwargs: Any,
    ) -> subprocess.Popen[Any]:  # fmt: skip
        """Start a command inside, in a session of its own; killed at teardown if it still
        runs. ``kwargs`` go to ``subprocess.Popen`` (stdout=..., text=...)."""
        process = subprocess.Popen(
            self.argv(argv, user=user), env=self.env(user, env), start_new_session=True,
            **kwargs,
        )  # fmt: skip
        self._processes.append(process)
        return process

    def dpkg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["dpkg", *args], check=check)

    def install(
        self, deb: Path, *, check: bool = True, apt: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``dpkg -i`` the package inside (copied to the root's /tmp first); ``apt``: with
        ``apt-get install ./PACKAGE`` instead, which fetches missing dependencies."""
        inside = f"/tmp/{deb.name}"
        shutil.copyfile(deb, self.host_path(inside))
        try:
            if apt:
                argv = ["apt-get", "install", "--yes", "--no-install-recommends", inside]
                return self.run(argv, check=check)
            return self.dpkg("-i", inside, check=check)
        finally:
            self.host_path(inside).unlink()


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _root_of(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/root"))
    except OSError:
        return None


def lane_toml(*, site: str, lane: str, broker_url: str, listen: str, mqtt_extra: str = "") -> str:
    """agent.toml for a lane on the simulated devices (fake IO board, indicator and camera)."""
    return f"""\
[lane]
site = "{site}"
lane = "{lane}"
gate = "G3"

[io_board]
url = "fake-ioboard://lane"

[weighbridge]
url = "fake-indicator://lane"
protocol = "yaohua-tf0"

[camera]
source = "fake-camera://lane"

[passes]
trust_list = "trust.json"

[mqtt]
broker = "{broker_url}"
lab = true
{mqtt_extra}
[status]
listen = "{listen}"
"""
