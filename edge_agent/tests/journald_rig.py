"""Run a program under a real, private systemd-journald and dump what it stored as JSON.

Run inside a private mount namespace (``unshare --mount --propagation private``): a tmpfs
over /run gives journald its own sockets, a volatile-only journald.conf keeps it off the
host's /var/log/journal. The program's stderr and stdout are a journald stdout stream, as a
unit's are (``JOURNAL_STREAM`` names it), so it logs exactly as under systemd.

    python journald_rig.py OUT.json SCRIPT.json

SCRIPT is ``{"argv": [...], "steps": [...]}``; a step is ``{"wait_for": TEXT}`` (a journal
entry whose MESSAGE contains TEXT), ``{"write": PATH, "text": TEXT}`` or
``{"signal": NAME}``; after the steps the rig waits for the program to exit and writes
``{"exit": CODE, "entries": [...]}`` (``journalctl -o json``) to OUT.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

JOURNALD = "/lib/systemd/systemd-journald"
JOURNAL_DIR = "/run/log/journal"
TIMEOUT_S = 60.0


def _mount_private_run() -> None:
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    for folder in ("/run/systemd/journal", JOURNAL_DIR):
        os.makedirs(folder)
    conf = Path("/run/journald.conf")
    conf.write_text("[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\n")
    if Path("/etc/systemd/journald.conf").exists():
        subprocess.run(["mount", "--bind", str(conf), "/etc/systemd/journald.conf"], check=True)
    if Path("/var/log/journal").is_dir():
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/var/log/journal"], check=True)


def _until(condition: Any, what: str) -> None:
    give_up = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > give_up:
            raise SystemExit(f"journald rig: timed out waiting for {what}")
        time.sleep(0.05)


def _stdout_stream(identifier: str) -> socket.socket:
    """A journald stdout stream, set up as systemd does for a unit's stdout and stderr."""
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.connect("/run/systemd/journal/stdout")
    # identifier, unit id, priority, level prefix, to syslog, to kmsg, to console
    stream.sendall(f"{identifier}\n\n6\n0\n0\n0\n0\n".encode())
    stream.shutdown(socket.SHUT_RD)
    return stream


def _entries() -> list[dict[str, Any]]:
    done = subprocess.run(["journalctl", "-D", JOURNAL_DIR, "-o", "json", "--no-pager"],
                          capture_output=True, text=True, check=False)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _logged(text: str) -> bool:
    return any(text in str(entry.get("MESSAGE", "")) for entry in _entries())


def main(out: Path, script: dict[str, Any]) -> int:
    _mount_private_run()
    journald = subprocess.Popen([JOURNALD])
    try:
        _until(lambda: Path("/run/systemd/journal/socket").exists()
               and Path("/run/systemd/journal/stdout").exists(), "journald's sockets")
        stream = _stdout_stream("edge-agent")
        info = os.fstat(stream.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        program = subprocess.Popen(script["argv"], stdout=stream.fileno(), stderr=stream.fileno(),
                                   env=env)
        stream.close()
        for step in script["steps"]:
            if "wait_for" in step:
                _until(lambda text=step["wait_for"]: _logged(text), repr(step["wait_for"]))
            elif "write" in step:
                Path(step["write"]).write_text(step["text"])
            elif "signal" in step:
                program.send_signal(signal.Signals[step["signal"]])
        code = program.wait(TIMEOUT_S)
        out.write_text(json.dumps({"exit": code, "entries": _entries()}))
    finally:
        journald.terminate()
        journald.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())))
