"""Power cuts: a child appends records in a loop and is killed (SIGKILL) at random moments.

After each kill the bytes written but not yet acknowledged are cut at a random point too, as a
power loss may leave them. Reopening must quarantine the torn tail; the whole log (every
segment) must verify, gap-free; and every record whose append had returned must be there.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.records import LOG_NAME
from edge_agent.records.keys import load_or_create_key
from edge_agent.records.segments import all_segments, verify_segments
from edge_agent.records.store import RecordStore
from edge_agent.records.verify import verify_log

pytestmark = pytest.mark.process
ROOT = Path(__file__).resolve().parents[3]
ITERATIONS = 20
Ack = tuple[int, int, str, int]  # segment, seq, hash, the active file's size after it


def run_child_until_killed(state: Path, rng: random.Random) -> list[Ack]:
    """Start the appender, kill it after a random time; the acknowledgements it printed."""
    child = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.records.tests.power_cut_child", str(state)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    first = child.stdout.readline()  # it runs: at least one append returned
    time.sleep(rng.uniform(0.0, 0.15))
    child.send_signal(signal.SIGKILL)
    rest, err = child.communicate()
    assert child.returncode == -signal.SIGKILL, err.decode()
    acks = []
    for line in (first + rest).decode().splitlines():
        parts = line.split()
        if len(parts) == 4:  # a line cut by the kill is no acknowledgement
            acks.append((int(parts[0]), int(parts[1]), parts[2], int(parts[3])))
    return acks


def cut_unacknowledged(state: Path, last_ack: Ack, rng: random.Random) -> None:
    """What a power loss may do to bytes not yet fsynced: keep a random part of them."""
    active = state / LOG_NAME
    if not active.exists():
        return
    size = active.stat().st_size
    header = verify_log(active.read_bytes()[:size]).items
    in_active = header and header[0].body.get("segment") == last_ack[0]
    acked_end = last_ack[3] if in_active else 0
    if size > acked_end:
        with open(active, "r+b") as handle:
            handle.truncate(rng.randint(acked_end, size))


def test_the_log_survives_kills_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(7)
    state = tmp_path / "state"
    acknowledged: dict[tuple[int, int], str] = {}
    torn_seen = 0
    for _ in range(ITERATIONS):
        acks = run_child_until_killed(state, rng)
        assert acks, "the child acknowledged nothing"
        acknowledged.update({(seg, seq): digest for seg, seq, digest, _size in acks})
        cut_unacknowledged(state, acks[-1], rng)
        store = RecordStore(state, load_or_create_key(state), utc=time.time(),
                            mono=time.monotonic())  # fmt: skip
        torn_seen += store.quarantined is not None
        store.close()
        verdict = verify_segments(state)
        assert verdict.ok, verdict.reason
        held = {}
        for path in all_segments(state):
            items = verify_log(path.read_bytes()).items
            segment = items[0].body["segment"]
            assert [r.seq for r in items] == list(range(len(items)))  # gap-free
            held.update({(segment, r.seq): r.hash for r in items})
        lost = {k: v for k, v in acknowledged.items() if held.get(k) != v}
        assert not lost, f"acknowledged records lost: {sorted(lost)[:5]}"
    assert torn_seen > 0  # the cuts did tear tails, and they were quarantined
    assert sorted(state.glob(f"{LOG_NAME}.torn-*"))
    assert len(all_segments(state)) > 2  # segments were closed along the way
