"""Updating the lane's agent in place: prove the package, install it beside the running
version, restart, check that the new version becomes ready, and go back by itself when not.

Install layout: ``/opt/gatelane/versions/<version>/`` holds one venv per installed version
(the package's postinst builds it; dpkg does not own it, so an older one stays runnable),
``/opt/gatelane/current`` -> the one that runs. Going back is one atomic
symlink replace. Every update and rollback is recorded in
``/var/lib/gatelane/agent-update.json``.

What the steps do to the machine (dpkg, the service manager, the clock) goes through
``System``, and the agent's health through ``Probe`` (agent_system.py has the real ones), so
the steps run the same on a lane and on a temporary folder.

Proof of a package (agent_package.py): its SHA-256 and/or a detached Ed25519 signature by a
release key; whatever proof is present must hold, and at least one must be there.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cmp_to_key
from pathlib import Path
from typing import Any, Protocol

from host_tools.agent_package import PackageError, Proof, ReleaseKey, verify_package
from host_tools.errors import ToolError

PACKAGE_NAME = "gatelane"
POLL_S = 0.5
HISTORY_KEEP = 100  # entries: years of updates, a few tens of kB
# Debian version characters (no epoch: the deb version is the Python package's version).
_VERSION = re.compile(r"[0-9][A-Za-z0-9.+~-]*")


class Refused(ToolError):
    """The update or rollback cannot start as asked; nothing was changed."""


class NothingOlder(ToolError):
    """A rollback was asked for, but no older runnable version is installed."""

    exit_code = 1


class UpdateError(ToolError):
    """A step that changes the machine failed (dpkg, the restart command)."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class Health:
    """One look at the agent: ready or not (and why not), and which version answers."""

    ready: bool
    version: str | None
    reasons: tuple[str, ...] = ()

    def why_not(self, wanted: str) -> str | None:
        """None when ``wanted`` is the version that answers ready; else what is wrong."""
        if not self.ready:
            return "; ".join(self.reasons) or "not ready"
        if self.version != wanted:
            return f"the agent that answers is version {self.version}, not {wanted}"
        return None


Probe = Callable[[], Health]


class System(Protocol):
    """What the steps need from the machine."""

    def architecture(self) -> str:
        """The machine's Debian architecture (amd64, arm64)."""

    def package_fields(self, package: Path) -> dict[str, str]:
        """Package, Version, Architecture of a .deb; PackageError when it is not one."""

    def compare(self, a: str, b: str) -> int:
        """Debian version order: negative when a < b, 0 when equal, positive when a > b."""

    def install(self, package: Path) -> None:
        """Install the package (its postinst builds and selects its version); UpdateError."""

    def restart(self) -> None:
        """Restart the agent's service; UpdateError when the service manager refuses."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the versions, the ``current`` link and the update history live."""

    root: Path = Path("/opt/gatelane")
    state_dir: Path = Path("/var/lib/gatelane")

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    @property
    def history_path(self) -> Path:
        return self.state_dir / "agent-update.json"

    def current(self) -> str | None:
        """The version ``current`` points to (None when there is no link)."""
        try:
            return Path(os.readlink(self.current_link)).name
        except OSError:
            return None

    def runnable(self, version: str) -> bool:
        """Its venv is complete: the agent's entry point is there."""
        return (self.versions_dir / version / "bin" / "edge-agent").is_file()

    def installed(self) -> list[str]:
        """Every version folder, in no particular order."""
        try:
            return [p.name for p in self.versions_dir.iterdir() if p.is_dir()]
        except OSError:
            return []

    def switch(self, version: str) -> None:
        """Point ``current`` at ``version`` in one atomic rename (no moment without a link)."""
        if not _VERSION.fullmatch(version) or not self.runnable(version):
            raise Refused(f"{self.versions_dir / version} is not a runnable version")
        link = self.current_link
        staging = link.with_name(f".current.{os.getpid()}")
        staging.unlink(missing_ok=True)
        # Relative, as the postinst writes it (it compares the link's text to keep the
        # version before the one it installs).
        os.symlink(f"versions/{version}", staging)
        try:
            os.replace(staging, link)
        except OSError as exc:
            staging.unlink(missing_ok=True)
            raise UpdateError(f"cannot switch {link} to {version}: {exc}") from exc

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the update lock: one update or rollback at a time."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "agent-update.lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Refused("another agent update or rollback is running") from None
            yield

    def history(self) -> list[dict[str, Any]]:
        try:
            doc = json.loads(self.history_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        entries = doc.get("history") if isinstance(doc, dict) else None
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def record(self, entry: dict[str, Any]) -> None:
        """Append to the history (write beside, then rename: never a half-written file)."""
        entries = [*self.history(), entry][-HISTORY_KEEP:]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        staging = self.history_path.with_name(f".{self.history_path.name}.{os.getpid()}")
        staging.write_text(json.dumps({"history": entries}, indent=2) + "\n", encoding="utf-8")
        os.replace(staging, self.history_path)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A package that passed every check and may be installed."""

    package: Path
    version: str
    previous: str
    proof: Proof


@dataclass
class Report:
    """What an update or rollback did, step by step; ``running`` is what ``current`` is now."""

    action: str  # update | rollback
    previous: str | None
    target: str
    started_at: float
    outcome: str = "failed"
    running: str | None = None
    error: str | None = None
    finished_at: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    log: Callable[[str], None] = field(default=lambda _line: None, repr=False)

    @property
    def ok(self) -> bool:
        return self.outcome in ("updated", "switched")

    def step(self, name: str, detail: str, *, ok: bool = True) -> None:
        self.steps.append({"step": name, "ok": ok, "detail": detail})
        if not ok and self.error is None:
            self.error = detail
        self.log(f"{'ok  ' if ok else 'FAIL'} {name:<10} {detail}")

    def history_entry(self) -> dict[str, Any]:
        return {
            "action": self.action, "from": self.previous, "to": self.target,
            "outcome": self.outcome, "running": self.running, "error": self.error,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at or self.started_at),
        }  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.history_entry(), "steps": self.steps}


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")


def by_version(system: System, versions: Sequence[str]) -> list[str]:
    """``versions`` oldest first, in Debian version order."""
    return sorted(versions, key=cmp_to_key(system.compare))


def check_package(
    package: Path,
    *,
    layout: Layout,
    system: System,
    expected_sha256: str | None = None,
    keys: Sequence[ReleaseKey] = (),
    allow_downgrade: bool = False,
) -> Candidate:
    """Every check before anything changes: proof, package identity, architecture, order.

    Raises:
        PackageError: the package is not the gatelane release it should be.
        Refused: the lane is not in a state to take it (no current version, not newer).
    """
    proof = verify_package(package, expected_sha256=expected_sha256, keys=keys)
    fields = system.package_fields(package)
    name, version, arch = (fields.get(k, "") for k in ("Package", "Version", "Architecture"))
    if name != PACKAGE_NAME:
        raise PackageError(f"{package} is the package {name!r}, not {PACKAGE_NAME!r}")
    if not _VERSION.fullmatch(version):
        raise PackageError(f"{package}: version {version!r} is not one a lane can install")
    machine = system.architecture()
    if arch not in (machine, "all"):
        raise PackageError(f"{package} is built for {arch}; this lane is {machine}: "
                           f"use the {PACKAGE_NAME} package for {machine}")  # fmt: skip
    previous = layout.current()
    if previous is None:
        raise Refused(f"{layout.current_link} does not exist: install the first version "
                      f"with dpkg -i, then update with this command")  # fmt: skip
    order = system.compare(version, previous)
    if order == 0:
        raise Refused(f"version {version} is the one that runs already")
    if order < 0 and not allow_downgrade:
        raise Refused(f"version {version} is older than {previous}, which runs now: "
                      f"add --allow-downgrade to install it anyway")  # fmt: skip
    return Candidate(package, version, previous, proof)


def install(
    candidate: Candidate,
    *,
    layout: Layout,
    system: System,
    probe: Probe,
    timeout: float,
    log: Callable[[str], None] = lambda _line: None,
) -> Report:
    """Install, restart, wait for the new version to be ready; roll back by itself if not."""
    report = Report("update", candidate.previous, candidate.version, system.wall(), log=log)
    with layout.locked():
        if layout.current() != candidate.previous:
            raise Refused(f"{layout.current_link} changed while the package was checked: "
                          f"run the update again")  # fmt: skip
        report.step("verified", candidate.proof.describe())
        try:
            system.install(candidate.package)
            now = layout.current()
            if now != candidate.version:
                raise UpdateError(f"after dpkg -i, {layout.current_link} points to {now}, "
                                  f"not {candidate.version}")  # fmt: skip
        except UpdateError as exc:
            report.step("installed", str(exc), ok=False)
            report.outcome = "install-failed"
            if layout.current() != candidate.previous:
                _go_back(report, layout, system, probe, timeout, "rollback-failed")
            return _finish(report, layout, system)
        report.step("installed", f"{layout.versions_dir / candidate.version}")
        if _restart_ready(report, system, probe, candidate.version, timeout):
            report.outcome = "updated"
        else:
            report.outcome = "rolled-back"
            _go_back(report, layout, system, probe, timeout, "rollback-failed")
        return _finish(report, layout, system)


def rollback(
    *,
    layout: Layout,
    system: System,
    probe: Probe,
    timeout: float,
    to: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> Report:
    """Switch to the newest runnable version older than the current one (or to ``to``).

    Each rollback goes one further back, never forward: after 0.3 -> 0.2, the next one goes to
    0.1, and raises NothingOlder when there is none. A target that does not become ready is
    left at once for the version that ran before.
    """
    current = layout.current()
    if current is None:
        raise Refused(f"{layout.current_link} does not exist: no version is selected")
    runnable = [v for v in layout.installed() if layout.runnable(v)]
    if to is not None:
        if to == current:
            raise Refused(f"version {to} is the one that runs already")
        if to not in runnable:
            raise Refused(f"version {to} is not installed under {layout.versions_dir}; "
                          f"installed: {', '.join(by_version(system, runnable)) or 'none'}")
        target = to
    else:
        older = [v for v in runnable if system.compare(v, current) < 0]
        if not older:
            raise NothingOlder(f"nothing to roll back to: {current} is the oldest runnable "
                               f"version installed (lanectl agent versions lists them)")
        target = by_version(system, older)[-1]
    report = Report("rollback", current, target, system.wall(), log=log)
    with layout.locked():
        layout.switch(target)
        report.step("switched", f"{layout.current_link} -> versions/{target}")
        if _restart_ready(report, system, probe, target, timeout):
            report.outcome = "switched"
        else:
            report.outcome = "reverted"
            _go_back(report, layout, system, probe, timeout, "failed")
        return _finish(report, layout, system)


def _restart_ready(
    report: Report, system: System, probe: Probe, version: str, timeout: float
) -> bool:
    try:
        system.restart()
    except UpdateError as exc:
        report.step("restarted", str(exc), ok=False)
        return False
    report.step("restarted", f"waiting up to {timeout:g} s for {version} to be ready")
    why = wait_ready(probe, system, version, timeout)
    if why is None:
        report.step("ready", f"version {version} is ready")
        return True
    report.step("ready", f"version {version} did not become ready within {timeout:g} s: {why}",
                ok=False)  # fmt: skip
    return False


def _go_back(
    report: Report, layout: Layout, system: System, probe: Probe, timeout: float, bad: str
) -> None:
    """Return to the version that ran before; ``report.outcome`` becomes ``bad`` if it fails."""
    assert report.previous is not None
    try:
        layout.switch(report.previous)
    except ToolError as exc:
        report.step("back", str(exc), ok=False)
        report.outcome = bad
        return
    report.step("back", f"{layout.current_link} -> versions/{report.previous}")
    if not _restart_ready(report, system, probe, report.previous, timeout):
        report.outcome = bad


def _finish(report: Report, layout: Layout, system: System) -> Report:
    report.running = layout.current()
    report.finished_at = system.wall()
    layout.record(report.history_entry())
    return report


def wait_ready(probe: Probe, system: System, version: str, timeout: float) -> str | None:
    """Poll until ``version`` answers ready; None when it did, else the last thing wrong."""
    deadline = system.monotonic() + timeout
    while True:
        why = probe().why_not(version)
        if why is None:
            return None
        if system.monotonic() >= deadline:
            return why
        system.sleep(POLL_S)


def versions(layout: Layout, system: System) -> dict[str, Any]:
    """Installed versions (oldest first), which one is current, and the last update."""
    history = layout.history()
    failed: dict[str, bool] = {}  # the last try of each version decides
    for entry in history:
        failed[str(entry.get("to"))] = entry.get("outcome") in ("rolled-back", "reverted")
    current = layout.current()
    rows = [
        {"version": v, "current": v == current, "runnable": layout.runnable(v),
         "failed_update": failed.get(v, False)}
        for v in by_version(system, [v for v in layout.installed() if _VERSION.fullmatch(v)])
    ]  # fmt: skip
    return {"current": current, "versions": rows, "last": history[-1] if history else None}
