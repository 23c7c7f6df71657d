"""Real logs for the tests, written by ``RecordStore`` with transit bodies like the lane's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.records import LOG_NAME
from edge_agent.records.bodies import transit_body
from edge_agent.records.store import RecordStore

UTC0 = 1_796_303_698.0  # 2026-12-03 13:14:58 UTC
SOFTWARE = {"version": "0.1.0", "sha256": "ab" * 32}


def indicator_frames(kg: float, n: int = 50) -> list[dict[str, Any]]:
    """``n`` XK3190-like frames at 10 Hz, as ``frames_data`` publishes them."""
    raw = b"\x02+" + f"{int(kg):06d}".encode() + b"01B\x03"
    return [{"t": round(100.0 + i / 10, 3), "kg": kg, "stable": True, "raw": raw.hex()}
            for i in range(n)]


def sample_transit(i: int, kg: float = 32480.0, frames: int = 5) -> dict[str, Any]:
    decision = {"decision": "open", "reasons": [], "weight_kg": kg, "uncertainty_kg": 10.0,
                "estimate_kg": kg + 3, "indicator_kg": kg, "indicator_stable": True,
                "indicator_frames": indicator_frames(kg, frames), "release_no": f"R-2026-{i:04d}",
                "declared_gross_kg": kg - 100, "input_at_mono": 100.0 + i}
    claims = {"release_no": f"R-2026-{i:04d}", "enterprise": "Acme Freight",
              "plates": ["沪A12345", "沪B6789挂"], "containers": ["MSCU1234565"],
              "declared_gross_kg": kg - 100}
    return transit_body(decision, ids={"transit_id": f"t-{i:06d}", "boot_id": 1},
                        pass_claims=claims, plates_read=["沪A12345"], containers_read=[],
                        evidence=[], software=SOFTWARE, config_changes=0,
                        clock={"synced": True, "source": "ntp"})


def write_log(state_dir: Path, key: Ed25519PrivateKey, transits: int = 5, *,
              segment_bytes: int | None = None, frames: int = 5) -> Path:
    """A log with ``transits`` transit records (and a config change); its state dir."""
    extra = {} if segment_bytes is None else {"segment_bytes": segment_bytes}
    store = RecordStore(state_dir, key, utc=UTC0, mono=0.0, **extra)
    for i in range(transits):
        store.append("transit", sample_transit(i, 32480.0 + 20 * i, frames), utc=UTC0 + 60 * i,
                     mono=60.0 * i)
    store.append("config_change", {"by": "tech", "changed": [{"key": "weighbridge.e_kg",
                                                              "old": 20, "new": 10}]},
                 utc=UTC0 + 3600, mono=3600.0)  # fmt: skip
    store.close()
    return state_dir


def log_bytes(state_dir: Path) -> bytes:
    return (state_dir / LOG_NAME).read_bytes()
