"""The lane's health: the devices as they are now, and the periodic report sent from it.

Read by the decision loop (the sheddable ``health`` record) and by the status server's thread
(the page, ``/status``); nothing here waits on a device.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypedDict

from edge_agent.assembly import LaneDevices
from edge_agent.status import camera_counts, host_status
from edge_agent.telemetry.outbox import HEALTH_EXPIRY_MS, OutboxError
from edge_agent.translate import DeviceInputs

log = logging.getLogger("edge_agent")


class Stamp(TypedDict):
    """The times a record carries: monotonic, wall clock, and the wall clock's status."""

    mono_ms: int
    wall_ms: int
    clock_synced: bool
    clock_source: str


def device_status(
    devices: LaneDevices, inputs: DeviceInputs, camera_up: bool | None, state_dir: Path,
    wall_s: float,
) -> dict[str, Any]:
    board = devices.board
    snapshot = board.snapshot
    return {
        "io_board": {
            "link": "up" if board.link_up else "down",
            "barrier": snapshot.barrier.value if snapshot else None,
            "faults": sorted(snapshot.faults) if snapshot else [],
            "inputs": dict(snapshot.inputs) if snapshot else {},
            "outputs": dict(snapshot.outputs) if snapshot else {},
            "loop_max_us": snapshot.loop_max_us if snapshot else None,
            "link_stats": board.link_stats(),
            "firmware": board.hello.firmware if board.hello else None,
        },
        "weighbridge": {**inputs.counts.to_json(),
                        "scale": inputs.scale_health.report().as_dict()},
        "camera": {"up": camera_up, "reads": inputs.counts.qr_reads,
                   **camera_counts(devices.pipeline)},
        "telemetry": devices.publisher.status(),
        "host": host_status(state_dir, devices.outbox.stats(), wall_s),
    }


def send_health(devices: LaneDevices, data: dict[str, Any], stamp: Stamp) -> None:
    """Store the report for the publisher; when storage refuses it, send it without keeping it."""
    try:
        stored = devices.outbox.add_health(data, **stamp)
    except OutboxError:
        stored = None
    if stored is None:
        # The disk budget or the disk itself refused it: the alarm still goes out.
        log.warning("health report not stored (storage short): sent without keeping it")
        topic, payload = devices.outbox.transient_health(data, **stamp)
        devices.publisher.publish_transient(topic, payload, HEALTH_EXPIRY_MS // 1000)
    devices.publisher.wake()
