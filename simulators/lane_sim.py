"""``lane-sim``: the whole lane on a laptop.

``lane-sim run`` starts a private broker (or uses ``--broker``), the backend (ingest worker), the IO
board firmware in the MicroPython unix port, the weighbridge and camera simulators, the lane
world and the real ``edge-agent`` process; drives the scenario's trucks; prints a table; exits 0
only if every truck's outcome is the expected one. Nothing it started outlives it; with
``--keep DIR`` the lane's state (outbox, pass ledger, transaction log) is left in DIR; with
``--store postgresql`` the backend stores into a private PostgreSQL server (started and removed
by the run) instead of its embedded SQLite file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.errors import BackendError
from simulators.errors import SimulatorError, SimulatorSetupError
from simulators.harness import SimLane
from simulators.outcomes import TruckOutcome
from simulators.scenarios import SCENARIOS, get_scenario
from simulators.seal_lane import SEALS, SealLane


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    try:
        scenario = (SEALS if args.scenario == SEALS.name else
                    get_scenario(args.scenario, args.trucks))
    except SimulatorSetupError as exc:
        print(f"lane-sim: {exc}", file=sys.stderr)
        return 2
    if args.broker and not args.broker.startswith("mqtt://"):
        print("lane-sim: --broker must look like mqtt://HOST:PORT", file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM unwind through the harness so every process it started is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    outcomes: list[TruckOutcome] = []
    _log(f"scenario {scenario.name}: {scenario.description}")
    lane: SimLane | None = None
    try:
        kind = SealLane if args.eseal or scenario is SEALS else SimLane
        with kind(scenario, broker_url=args.broker, log=_log, seed=args.seed,
                  store=args.store) as lane:
            for plan in scenario.trucks:
                outcomes.append(lane.run_truck(plan))
            events_total = len(lane.backend.events(scenario.lane))
            chain = lane.backend.record_chain(scenario.lane)
    except KeyboardInterrupt:
        _log("interrupted; everything started has been stopped")
        return 130
    except (SimulatorError, BackendError) as exc:
        _log(f"lane-sim failed: {exc}")
        return 1
    except Exception as exc:
        _log(f"lane-sim failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if args.keep and lane is not None:
            keep_state(lane, Path(args.keep))
    elapsed = time.monotonic() - started
    print()
    print(render_table(outcomes))
    ok = all(o.ok for o in outcomes)
    print(
        f"\n{sum(o.ok for o in outcomes)}/{len(outcomes)} trucks as expected; "
        f"{events_total} events at the backend; {elapsed:.1f} s"
    )
    if args.report:
        write_report(Path(args.report), scenario.name, outcomes, elapsed, events_total)
    for outcome in outcomes:
        for problem in outcome.problems:
            print(f"PROBLEM {outcome.name}: {problem}")
    if chain is not None and chain.get("first_break"):
        print(f"PROBLEM transaction log at the backend: {chain['first_break']}")
        ok = False
    return 0 if ok else 1


def keep_state(lane: SimLane, target: Path) -> None:
    """Copy the lane's state dir (the agent has stopped: its files are whole) into ``target``."""
    state = getattr(lane, "state_dir", None)
    if state is None or not Path(state).is_dir():
        _log(f"--keep: the lane made no state to keep in {target}")
        return
    try:
        shutil.copytree(state, target, dirs_exist_ok=True)
    except OSError as exc:
        _log(f"--keep: could not copy the lane's state to {target}: {exc}")
        return
    _log(f"lane state kept in {target} (check it: lanectl record verify --state-dir {target})")


def render_table(outcomes: Sequence[TruckOutcome]) -> str:
    header = (
        "truck", "plate", "pass", "weight kg", "decision", "latency ms", "barrier", "events",
        "notes",
    )
    rows = [header]
    for o in outcomes:
        decision = o.decision + (f" ({o.reasons[0]})" if o.reasons else "")
        rows.append(
            (
                o.name,
                o.plate,
                o.pass_verdict,
                "-" if o.weight_kg is None else f"{o.weight_kg:.0f}",
                decision,
                "-" if o.latency_ms is None else f"{o.latency_ms:.1f}",
                "->".join(o.barrier) or "-",
                str(len(o.events)),
                "; ".join(o.notes),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report(
    path: Path, scenario: str, outcomes: Sequence[TruckOutcome], elapsed: float, events: int
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    report: dict[str, Any] = {
        "scenario": scenario,
        "ok": all(o.ok for o in outcomes),
        "elapsed_s": round(elapsed, 1),
        "backend_events": events,
        "decision_latency_ms": latencies,
        "trucks": [o.to_json() for o in outcomes],
    }
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lane-sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_parser = sub.add_parser("run", help="run a whole simulated lane through a scenario")
    run_parser.add_argument("--scenario", default="demo",
                            choices=sorted([*SCENARIOS, SEALS.name]))
    run_parser.add_argument("--eseal", action="store_true",
                            help="run the e-seal reader simulator on a pty (the trucks' seals)")
    run_parser.add_argument("--trucks", type=int, help="number of trucks (cycles the scenario)")
    run_parser.add_argument("--seed", type=int, default=1)
    run_parser.add_argument("--report", help="write a JSON report here")
    run_parser.add_argument("--broker", help="use this broker (mqtt://HOST:PORT) instead")
    run_parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                            help="the backend's event store: an embedded SQLite file (default) "
                                 "or a private PostgreSQL server started and removed by the run")
    run_parser.add_argument("--keep", metavar="DIR",
                            help="leave the lane's state (outbox, ledger, transaction log) here")
    run_parser.set_defaults(func=run)
    sub.add_parser("weighbridge", help="a standalone indicator simulator on a pty or TCP")
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["weighbridge"]:
        from simulators.weighbridge import run_weighbridge_cli

        return run_weighbridge_cli(arguments[1:])
    args = parser.parse_args(arguments)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
