"""Records bench: what the transaction log costs a transit, and how fast it verifies.

- Append: one realistic transit record (the decision, the pass, ~50 raw indicator frames)
  encoded, signed, written and fsync'ed by ``RecordStore`` in a temporary dir on disk; per
  append p50/p99 ms, against writing and fsync'ing the same frame bytes alone (the cost of
  durability, which no log design avoids) measured in the same run.
- Verify: records/s of ``verify_chain`` over the written log, against plain SHA-256 over the
  same bytes (the cheapest integrity check there is).
- Size: bytes of one such record on disk, and a day of a busy lane.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.records import LOG_NAME
from edge_agent.records.bodies import transit_body
from edge_agent.records.codec import encode_frame, make_record
from edge_agent.records.software import software_id
from edge_agent.records.store import RecordStore
from edge_agent.records.verify import log_part, verify_chain

APPENDS = 300
VERIFY_ROUNDS = 5
FRAMES = 50  # 5 s of indicator frames at 10 Hz: what an indication carries
TRANSITS_PER_DAY = 1000  # a busy exit lane


def realistic_transit(i: int, kg: float = 32480.0) -> dict[str, Any]:
    raw = b"\x02+" + f"{int(kg):06d}".encode() + b"01B\x03"
    frames = [{"t": round(1000.0 + i + k / 10, 3), "kg": kg, "stable": True, "raw": raw.hex()}
              for k in range(FRAMES)]  # fmt: skip
    decision = {"decision": "open", "reasons": [], "by": "auto", "weight_kg": kg,
                "uncertainty_kg": 9.5, "estimate_kg": kg + 4.2, "indicator_kg": kg,
                "indicator_stable": True, "indicator_frames": frames,
                "weight_rules": [{"rule": "declared", "declared_kg": kg - 120,
                                  "tolerance_kg": 324.8, "ok": True}],
                "release_no": f"R-2026-{i:06d}", "declared_gross_kg": kg - 120,
                "input_at_mono": 1000.0 + i, "snapshot": f"snap-{i:06d}.jpg"}  # fmt: skip
    claims = {"release_no": f"R-2026-{i:06d}", "enterprise": "Acme Freight Co.",
              "plates": ["沪A12345", "沪B6789挂"], "declared_gross_kg": kg - 120,
              "tolerance_kg": None, "gate": "G3"}  # fmt: skip
    return transit_body(decision, ids={"transit_id": f"t-{i:06d}", "event_id": f"e-{i}",
                                       "seq": i, "boot_id": 7},
                        pass_claims=claims, plates_read=["沪A12345"], containers_read=[],
                        evidence=[{"kind": "snapshot", "ref": f"snap-{i:06d}.jpg"}],
                        software=software_id(), config_changes=2,
                        clock={"synced": True, "source": "ntp"})  # fmt: skip


def _stats(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
            "max_ms": round(ordered[-1], 3)}  # fmt: skip


def _append(folder: Path, key: Ed25519PrivateKey) -> list[float]:
    store = RecordStore(folder, key, utc=time.time(), mono=time.monotonic())
    times = []
    try:
        for i in range(APPENDS):
            body = realistic_transit(i)
            started = time.perf_counter()
            store.append("transit", body, utc=1.8e9 + i, mono=1000.0 + i)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        store.close()
    return times


def _baseline_fsync(folder: Path, frame: bytes) -> list[float]:
    """The same bytes, written and fsync'ed with no encoding, hashing or signing."""
    fd = os.open(folder / "plain.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(APPENDS):
            started = time.perf_counter()
            os.write(fd, frame)
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
    return times


def _best_seconds(action: Any) -> float:
    best = float("inf")
    for _ in range(VERIFY_ROUNDS):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def measure() -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    Path(".bench").mkdir(exist_ok=True)
    # On the disk the lane would use, not a RAM-backed /tmp, so fsync costs what it costs.
    with tempfile.TemporaryDirectory(prefix="records-", dir=".bench") as tmp:
        folder = Path(tmp)
        ours = _append(folder / "log", key)
        record = make_record(key, seq=1, kind="transit", utc=1.8e9, mono=1.0,
                             body=realistic_transit(1), prev_hash="0" * 64)  # fmt: skip
        frame = encode_frame(record.encoded())
        plain = _baseline_fsync(folder, frame)
        data = (folder / "log" / LOG_NAME).read_bytes()
    records = APPENDS + 1
    verdict = verify_chain([log_part(LOG_NAME, data)])
    assert verdict.ok, verdict.reason
    verify_s = _best_seconds(lambda: verify_chain([log_part(LOG_NAME, data)]))
    sha_s = _best_seconds(lambda: hashlib.sha256(data).digest())
    append, base = _stats(ours), _stats(plain)
    return {
        "append": append,
        "append_baseline_write_fsync": base,
        "append_p50_ratio": round(append["p50_ms"] / base["p50_ms"], 2) if base["p50_ms"] else None,
        "verify_records_per_s": round(records / verify_s),
        "verify_baseline_sha256_records_per_s": round(records / sha_s),
        "verify_ratio_to_sha256": round(sha_s / verify_s, 4),
        "verify_mb_per_s": round(len(data) / verify_s / 1e6, 2),
        "record_bytes": len(frame),
        "indicator_frames_per_record": FRAMES,
        "log_mb_per_day": round(len(frame) * TRANSITS_PER_DAY / 1e6, 2),
        "transits_per_day": TRANSITS_PER_DAY,
    }


def _print(figures: dict[str, Any]) -> None:
    a, b = figures["append"], figures["append_baseline_write_fsync"]
    print(f"{'per transit':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{'append (encode, sign, fsync)':<34} {a['p50_ms']:>8} {a['p99_ms']:>8} "
          f"{a['max_ms']:>8}")
    print(f"{'baseline: write + fsync alone':<34} {b['p50_ms']:>8} {b['p99_ms']:>8} "
          f"{b['max_ms']:>8}")
    print(f"append p50 / baseline p50: {figures['append_p50_ratio']}")
    print(f"verify: {figures['verify_records_per_s']} records/s "
          f"({figures['verify_mb_per_s']} MB/s); baseline sha256 of the same bytes: "
          f"{figures['verify_baseline_sha256_records_per_s']} records/s "
          f"(ratio {figures['verify_ratio_to_sha256']})")
    print(f"record: {figures['record_bytes']} bytes with {figures['indicator_frames_per_record']}"
          f" indicator frames; {figures['log_mb_per_day']} MB a day at "
          f"{figures['transits_per_day']} transits")


def run(results: dict[str, Any]) -> None:
    """Run the records bench, print its table, store the figures in ``results``."""
    figures = measure()
    _print(figures)
    results["records"] = figures


if __name__ == "__main__":
    run({})
