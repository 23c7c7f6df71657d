"""First install of the firmware on a board that runs plain MicroPython (no gatelane yet).

  compile   every release file through mpy-cross (as a deploy does)
  repl      mpremote reaches the REPL; a board already holding a main.py is refused (it may
            be another program; ``force`` replaces it), as is one that runs our firmware
            (``lanectl fw deploy`` updates that one, with rollback)
  copy      every release file to the board's root (mpremote fs cp)
  verify    each file's SHA-256, computed on the board, against the release
  reset     machine.reset(): the board boots main.py, the firmware
  self_test HELLO carries the release's manifest and the barrier reaches closed

The files go to the root because that is the release a board is installed with (firmware/
main.py runs app/ only when a later deploy put one there).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge_agent.errors import DeviceError
from host_tools.errors import DeployError
from host_tools.fw_deploy import BoardRepl, Report, compiled, self_test
from host_tools.fw_release import ask_board

_LOOK = '_say(sorted(os.listdir()))'
_ROOT_HASHES = '_say(_hashes("."))'
FIRST_REPL_TIMEOUT_S = 30.0


def _not_blank(url: str, exc: DeployError) -> str:
    """Why the REPL could not be reached: our firmware answering, or no MicroPython at all."""
    try:
        hello = ask_board(url, 2.0)
    except DeviceError:
        return (f"no MicroPython REPL on {url} ({exc}): is it a board with MicroPython "
                ">= 1.22, and is nothing else (the edge agent) holding the port?")
    return (f"the board already runs the gatelane firmware {hello.firmware} (manifest "
            f"{hello.manifest}): update it with `lanectl fw deploy --port {url}`")


def install(url: str, folder: Path, *, timeout: float = 15.0, force: bool = False,
            log: Callable[[str], None] = lambda _line: None) -> Report:  # fmt: skip
    report = Report("install", url, log=log)
    release = compiled(folder, report)
    if release is None:
        return report
    repl = BoardRepl(url)
    try:
        present = repl.call(_LOOK, timeout=FIRST_REPL_TIMEOUT_S)
    except DeployError as exc:
        report.failed("repl", _not_blank(url, exc))
        report.outcome = "refused"
        return report
    report.before = {"files": present}
    if "main.py" in present and not force:
        report.failed("repl", "the board already holds a main.py (another program, or an "
                      "earlier install): --force replaces it")  # fmt: skip
        report.outcome = "refused"
        return report
    report.passed("repl", f"MicroPython REPL reached; {len(present)} files on the board")
    step = "copy"
    try:
        repl.run("fs", "cp", "-f", *[str(folder / name) for name in release.files], ":./")
        report.passed(step, f"{len(release.files)} files copied to the board's root")
        step = "verify"
        there = repl.call(_ROOT_HASHES) or {}
        wrong = sorted(n for n, h in release.files.items() if there.get(n) != h)
        if wrong:
            raise DeployError(f"SHA-256 on the board differs for {', '.join(wrong)}")
        report.passed(step, f"SHA-256 of {len(release.files)} files computed on the board match")
        step = "reset"
        repl.reset()
        report.passed(step, "machine.reset()")
        step = "self_test"
        report.after = self_test(url, release.manifest, timeout)
    except DeployError as exc:
        report.failed(step, str(exc))
        return report
    report.outcome = "installed"
    report.passed(step, f"HELLO {report.after['version']} manifest "
                  f"{report.after['manifest']}, barrier closed")  # fmt: skip
    return report
