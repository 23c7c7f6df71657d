"""A compressed day of one lane: thousands of trucks through the virtual lane, its real publisher
delivering to a real broker, faults on a schedule, and the lane's resources sampled throughout.

The lane is ``VirtualLane`` (the real agent on the in-package fakes, in virtual time) with its
publisher running towards the broker. The rest of the world runs in a child process
(``python -m simulators.soak world DIR LANE``): Mosquitto, a ``FaultProxy`` in front of it
that the lane connects through, and the backend (``IngestWorker``, storing into SQLite). So what
is sampled here (memory, descriptors, threads, files) is the lane's own, not the backend's.

Faults, spread over the run:
- broker outage: the lane's link is cut and the proxy eats what it sends (a cable cut
  behind a switch); the outbox backs up, and drains once the link is back;
- indicator drop: the indicator stops sending, between trucks or under a truck on the deck;
- camera loss: the camera goes away (reads and opens fail) and comes back.

Nothing lost means: every truck came out as its plan expects (which includes its records,
up to ``transit_closed``), every seq the outbox issued is stored at the backend exactly
once and contiguously, the outbox is empty after the final drain, and no record was parked
and dropped or dead-lettered.
"""

from __future__ import annotations

import gc
import itertools
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from simulators.scenarios import DEMO, TruckPlan
from simulators.soak_figures import STORES, Series, difference, open_files, sample, series
from simulators.virtual_lane import VirtualLane
from simulators.world import TruckSpec

# A truck whose indicator goes quiet while it stands on the deck: held, then it backs off.
INDICATOR_DROP_TRUCK = TruckPlan(
    "indicator-drop", TruckSpec(plate="SU-K1010", gross_kg=29_000, back_off_after_s=25.0),
    faults=("indicator_drop",), expect_decision="hold", expect_reason="weight.comm_loss",
)
CONNECT_TIMEOUT_S = 30.0  # wall seconds for the link to come up (a guard, not a target)
DRAIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class SoakPlan:
    """How many trucks, which faults, how often to sample. Faults are spread evenly."""

    trucks: int = 2000
    outages: int = 4
    outage_trucks: int = 60  # trucks that pass while the broker is unreachable
    indicator_drops: int = 8  # alternately between trucks and under a truck on the deck
    indicator_drop_s: float = 20.0
    camera_losses: int = 8
    camera_loss_s: float = 30.0
    sample_every: int = 20  # trucks
    warmup: int = 400  # trucks before the slopes count (caches, evidence cap, first outage)
    snapshot_cap_mb: float = 20.0

    def schedule(self) -> dict[int, list[str]]:
        """Before truck ``i`` (0-based): the faults that start or end then."""
        faults: dict[int, list[str]] = {}

        def spread(count: int, offset: float) -> list[int]:
            return [int(self.trucks * (k + offset) / count) for k in range(count)]

        for start in spread(self.outages, 0.5):
            faults.setdefault(start, []).append("broker_down")
            faults.setdefault(min(start + self.outage_trucks, self.trucks), []).append("broker_up")
        for k, at in enumerate(spread(self.indicator_drops, 0.3)):
            faults.setdefault(at, []).append("indicator_drop" if k % 2 else "indicator_truck")
        for at in spread(self.camera_losses, 0.7):
            faults.setdefault(at, []).append("camera_loss")
        return faults


# -- the world in its own process ----------------------------------------------------------


def world_main(argv: Sequence[str]) -> int:
    """``python -m simulators.soak world DIR LANE``: broker, proxy and backend until ``quit``.

    Prints ``{"url": ...}`` (the proxy's) once ready; then answers each stdin line ``down``
    / ``up`` with ``{"done": ...}``; on ``quit`` (or end of input) prints the backend's
    figures for LANE and exits.
    """
    from backend.ingest import IngestWorker
    from simulators.broker import FaultProxy, MosquittoBroker

    workdir, lane = Path(argv[0]), argv[1]
    workdir.mkdir(parents=True, exist_ok=True)
    with MosquittoBroker(workdir=workdir / "broker") as broker:
        proxy = FaultProxy(broker.port)
        backend = IngestWorker(broker.url, db_path=workdir / "ingest.sqlite")
        backend.start()
        print(json.dumps({"url": proxy.url}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            if command == "down":
                proxy.set_mode("blackhole")
                proxy.cut()
            elif command == "up":
                proxy.set_mode("forward")  # leaving blackhole cuts: the lane reconnects
            print(json.dumps({"done": command}), flush=True)
        report = {**backend.stats(), "watermark": backend.watermark(lane),
                  "gaps": backend.gaps(lane)}
        backend.close()
        proxy.close()
    print(json.dumps(report), flush=True)
    return 0


class SoakWorld:
    """The child process of ``world_main``, and the backend's store read from here."""

    def __init__(self, workdir: Path, lane: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.lane = lane
        self._log_path = workdir / "world.log"
        self._log = self._log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "simulators.soak", "world", str(workdir), lane],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        hello = self._answer()
        self.url: str = hello["url"]
        self._db = sqlite3.connect(f"file:{workdir / 'ingest.sqlite'}?mode=ro", uri=True,
                                   check_same_thread=False)
        # The first read opens the WAL and its index: done now, so the descriptors counted
        # from the lane's first truck on are the lane's.
        self._db.execute("SELECT COUNT(*) FROM lanes").fetchone()
        self.report: dict[str, Any] | None = None
        self._epoch: str | None = None  # the lane's outbox, once the backend has seen it

    def _answer(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the soak's broker and backend process exited "
                               f"({self._process.poll()}): {self._log_path.read_text()[-800:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _send(self, command: str) -> None:
        stdin: IO[str] | None = self._process.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()

    def broker_down(self) -> None:
        self._send("down")
        self._answer()

    def broker_up(self) -> None:
        self._send("up")
        self._answer()

    def acked(self, seqs: Sequence[int]) -> list[dict[str, Any]]:
        """The envelopes the backend stored for ``seqs`` (the rows its acks deleted)."""
        found: list[dict[str, Any]] = []
        epoch = self._lane_epoch()
        for start in range(0, len(seqs), 500):
            chunk = list(seqs[start:start + 500])
            marks = ",".join("?" * len(chunk))
            # (lane, epoch, seq) is the store's index: a lookup, not a scan of the day.
            rows = self._db.execute(
                f"SELECT payload FROM events WHERE lane = ? AND epoch = ? AND seq IN ({marks})",
                (self.lane, epoch, *chunk)).fetchall()
            found += [json.loads(row[0]) for row in rows]
        return found

    def _lane_epoch(self) -> str:
        if self._epoch is None:
            row = self._db.execute("SELECT epoch FROM lanes WHERE lane = ?",
                                   (self.lane,)).fetchone()
            if row is None:
                return ""
            self._epoch = str(row[0])
        return self._epoch

    def stored_seqs(self) -> list[int]:
        rows = self._db.execute(
            "SELECT seq FROM events WHERE lane = ? AND epoch = ? ORDER BY seq",
            (self.lane, self._lane_epoch())).fetchall()
        return [int(row[0]) for row in rows]

    def close(self) -> dict[str, Any]:
        if self.report is None and self._process.poll() is None:
            self._send("quit")
            self.report = self._answer()
            self._process.wait(30)
        self._db.close()
        self._log.close()
        return self.report or {}


# -- the run ---------------------------------------------------------------------------------


@dataclass
class SoakResult:
    plan: SoakPlan
    trucks: int = 0
    as_expected: int = 0
    problems: list[str] = field(default_factory=list)  # "truck N (name): problem"
    faults: dict[str, int] = field(default_factory=dict)
    backlogs: list[int] = field(default_factory=list)  # outbox rows when each outage ended
    samples: list[dict[str, float]] = field(default_factory=list)
    baseline: dict[str, float] = field(default_factory=dict)  # after the first truck
    end: dict[str, float] = field(default_factory=dict)  # after the final drain
    fds_gained: list[str] = field(default_factory=list)  # open at the end, not at baseline
    fds_lost: list[str] = field(default_factory=list)
    events: int = 0  # seqs the outbox issued
    lost: list[str] = field(default_factory=list)  # why "nothing lost" does not hold
    backend: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    virtual_h: float = 0.0
    truck_wall_s: list[float] = field(default_factory=list)  # each truck's, faults included
    cpu_s: float = 0.0  # this process's CPU time over the trucks (the publisher's included)

    @property
    def nothing_lost(self) -> bool:
        return not self.lost and not self.problems and self.as_expected == self.trucks

    def figures(self) -> list[Series]:
        return series(self.samples, self.plan.warmup)


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def run_soak(workdir: Path, plan: SoakPlan,
             progress: Callable[[str], None] | None = None) -> SoakResult:
    """Drive ``plan.trucks`` trucks with ``plan``'s faults; sample; check nothing was lost."""
    result = SoakResult(plan)
    world = SoakWorld(workdir / "world", DEMO.lane)
    lane: VirtualLane | None = None
    try:
        lane = VirtualLane(workdir / "lane", DEMO, broker_url=world.url, acked=world.acked,
                           snapshot_cap_mb=plan.snapshot_cap_mb)
        publisher = lane.devices.publisher
        if not _wait(lambda: bool(publisher.status()["connected"]), CONNECT_TIMEOUT_S):
            raise RuntimeError(f"the lane did not connect to {world.url}")
        _drive(lane, world, plan, result, progress)
        world.broker_up()  # whatever the schedule said last, the link is back for the drain
        outbox = lane.devices.outbox
        if not _wait(lambda: outbox.stats()["events"] == 0, DRAIN_TIMEOUT_S):
            result.lost.append(f"{outbox.stats()['events']} events still in the outbox after "
                               f"{DRAIN_TIMEOUT_S:.0f} s of draining")
        lane.forget_records()
        gc.collect()
        result.end = sample(lane, plan.trucks, result.wall_s)
        result.samples.append(result.end)
        result.fds_gained, result.fds_lost = difference(open_files(), result.fds_lost)
        _check_delivery(lane, world, result)
    finally:
        if lane is not None:
            lane.close()
        result.backend = world.close()
    if result.backend.get("gaps"):
        result.lost.append(f"backend gaps {result.backend['gaps'][:10]}")
    return result


def _drive(lane: VirtualLane, world: SoakWorld, plan: SoakPlan, result: SoakResult,
           progress: Callable[[str], None] | None) -> None:
    schedule = plan.schedule()
    baseline_files: list[str] = []
    mix = itertools.cycle(DEMO.trucks)
    started, cpu_started = time.monotonic(), time.process_time()
    for i in range(plan.trucks):
        truck = next(mix)
        truck_started = time.monotonic()
        for fault in schedule.get(i, ()):
            result.faults[fault] = result.faults.get(fault, 0) + 1
            if fault == "broker_down":
                world.broker_down()
            elif fault == "broker_up":
                result.backlogs.append(lane.devices.outbox.stats()["events"])
                world.broker_up()
            elif fault == "indicator_drop":
                lane.silence_indicator(True)
                lane.run_for(plan.indicator_drop_s)
                lane.silence_indicator(False)
                lane.run_for(5.0)
            elif fault == "indicator_truck":
                truck = INDICATOR_DROP_TRUCK
            elif fault == "camera_loss":
                lane.lose_camera()
                lane.run_for(plan.camera_loss_s)
                lane.restore_camera()
                lane.run_for(2.0)
        outcome = lane.run_truck(truck)
        result.trucks += 1
        result.as_expected += outcome.ok
        result.problems += [f"truck {i + 1} ({truck.name}): {p}" for p in outcome.problems]
        lane.forget_records()
        result.truck_wall_s.append(time.monotonic() - truck_started)
        result.wall_s = time.monotonic() - started
        result.cpu_s = time.process_time() - cpu_started
        if i == 0:
            # Objects of whatever ran before in this process (a test session) may still hold
            # sockets until the collector runs: collect first, so only the lane's are counted.
            gc.collect()
        if i == 0 or (i + 1) % plan.sample_every == 0:
            row = sample(lane, i + 1, result.wall_s)
            result.samples.append(row)
            if i == 0:
                result.baseline = row
                baseline_files = open_files()
        if progress is not None and (i + 1) % 500 == 0:
            progress(f"soak: {i + 1} trucks, {result.wall_s:.0f} s")
    result.virtual_h = (lane.clock() - 1000.0) / 3600
    result.fds_lost = baseline_files  # what is still open at the end is taken off below


def _check_delivery(lane: VirtualLane, world: SoakWorld, result: SoakResult) -> None:
    stats = lane.devices.outbox.stats()
    issued = result.events = int(stats["next_seq"]) - 1
    stored = world.stored_seqs()
    if stored != list(range(1, issued + 1)):
        missing = sorted(set(range(1, issued + 1)) - set(stored))
        result.lost.append(f"backend holds {len(stored)} of {issued} seqs; missing "
                           f"{missing[:10]}{' ...' if len(missing) > 10 else ''}")
    if lane.records_read_upto != issued:
        result.lost.append(f"the harness read seqs up to {lane.records_read_upto} of {issued}")
    if lane.unaccounted:
        result.lost.append(f"seqs gone from the outbox but not at the backend: "
                           f"{lane.unaccounted[:10]}")
    if stats["dead_letters"]:
        result.lost.append(f"{stats['dead_letters']} events dead-lettered")
    keeper = lane.agent.records
    if keeper is not None and (keeper.lost or keeper.parked):
        result.lost.append(f"records parked {keeper.parked}, dropped {keeper.lost}")


# -- the report ------------------------------------------------------------------------------

_LABELS = {
    "rss_mb": "RSS (MB)", "fds": "open fds", "threads": "threads",
    "outbox_rows": "outbox rows", "evidence_mb": "evidence on disk (MB)",
    **{f"{db}{part}_mb": f"{db}{part} (MB)" for db in STORES for part in ("", "-wal")},
}


def render(result: SoakResult) -> str:
    """The table for a closing note: the run, then each series and whether it is flat."""
    plan = result.plan
    faults = ", ".join(f"{n} {k}" for k, n in sorted(result.faults.items()))
    speed = result.virtual_h * 3600 / result.wall_s if result.wall_s else 0.0
    lines = [
        f"trucks {result.trucks} ({result.as_expected} as expected), "
        f"{result.virtual_h:.2f} virtual hours, {result.wall_s:.0f} s wall "
        f"({speed:.0f}x real time), {result.cpu_s:.0f} s CPU in the lane's process",
        f"faults: {faults}",
        f"slopes per 1,000 trucks after truck {plan.warmup}; flat = slope below the bound",
        "",
        f"{'series':<26}{'start':>9}{'peak':>9}{'end':>9}{'slope/1k':>10}  {'bound':<24}flat",
    ]
    for s in result.figures():
        label = _LABELS.get(s.name, s.name)
        lines.append(f"{label:<26}{s.start:>9.2f}{s.peak:>9.2f}{s.end:>9.2f}"
                     f"{s.slope:>10.3f}  {s.bound:<24}{'yes' if s.flat else 'NO'}")
    lines.append("")
    whys: dict[str, list[str]] = {}
    for s in result.figures():
        whys.setdefault(s.why, []).append(_LABELS.get(s.name, s.name).split(" (")[0])
    lines += [f"  {', '.join(names)}: {why}" for why, names in whys.items()]
    backlog = ", ".join(str(b) for b in result.backlogs) or "-"
    lines += [
        "",
        f"outbox backlog when each outage ended: {backlog} rows; 0 after the final drain"
        if result.end.get("outbox_rows", 1) == 0 else f"outbox backlog per outage: {backlog}",
        f"fds {result.baseline.get('fds', 0):.0f} -> {result.end.get('fds', 0):.0f}, threads "
        f"{result.baseline.get('threads', 0):.0f} -> {result.end.get('threads', 0):.0f} "
        "(after the first truck -> after the final drain)"
        + (f"; opened {result.fds_gained}" if result.fds_gained else "")
        + (f"; closed {result.fds_lost}" if result.fds_lost else ""),
        f"nothing lost: {'yes' if result.nothing_lost else 'NO'} ({result.events} events, "
        f"backend stored {result.backend.get('stored', '?')} + "
        f"{result.backend.get('duplicates', '?')} duplicates, watermark "
        f"{result.backend.get('watermark', '?')})",
    ]
    lines += [f"  {why}" for why in result.lost + result.problems[:10]]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["world"]:
        sys.exit(world_main(sys.argv[2:]))
    print("usage: python -m simulators.soak world DIR LANE", file=sys.stderr)
    sys.exit(2)
