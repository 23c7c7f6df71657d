"""The lane's ``/metrics``: on a registry of the agent's own, never prometheus_client's global one.

Two kinds of figures. What happens on the decision loop is counted as it happens (decision
latency, abnormalities by code). What the devices already count (outbox, links, decoding) is
read from the status document when a scrape comes, on the server's thread: nothing is copied
on the loop, and a scrape always shows the devices as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

PREFIX = "gatelane"
# From a millisecond to the OPEN command's own 1 s validity: past that the truck waits visibly.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)

Document = Callable[[], Mapping[str, Any]]


class LaneMetrics:
    """The agent's registry; ``exposition(accept)`` renders it for a scrape."""

    def __init__(self, document: Document) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._latency = Histogram(
            f"{PREFIX}_decision_latency_seconds",
            "From the input that completed a decision to its OPEN command or hold record",
            ["decision"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self._abnormal = Counter(
            f"{PREFIX}_abnormalities", "Abnormality events published, by reason code",
            ["code"], registry=self.registry,
        )
        self.registry.register(_DeviceCollector(document))

    def decision(self, decision: str, latency_s: float) -> None:
        self._latency.labels(decision=decision).observe(latency_s)

    def abnormality(self, code: str) -> None:
        self._abnormal.labels(code=code).inc()

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The scrape body and its content type: OpenMetrics when the scraper asks for it
        (``Accept: application/openmetrics-text``), the Prometheus text format otherwise."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


def _section(doc: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


_COUNTERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("broker_connects", "MQTT connections accepted by the broker", ("telemetry", "connects")),
    ("broker_losses", "MQTT connections lost after being up", ("telemetry", "losses")),
    ("broker_connect_failures", "MQTT connection attempts that failed",
     ("telemetry", "connect_failures")),
    ("broker_published", "Events handed to the broker", ("telemetry", "published")),
    ("broker_resent", "Events sent again (no PUBACK in time)", ("telemetry", "resent")),
    ("io_link_frames", "IO-link frames received", ("io_board", "link_stats", "frames")),
    ("io_link_errors", "IO-link frames refused (garbage, CRC)",
     ("io_board", "link_stats", "errors")),
    ("io_link_retransmits", "IO-link commands resent", ("io_board", "link_stats", "retransmits")),
    ("io_link_reconnects", "IO board port reopen attempts",
     ("io_board", "link_stats", "reconnects")),
    ("indicator_frames", "Weighbridge indicator frames decoded", ("weighbridge", "frames")),
    ("indicator_frame_errors", "Weighbridge indicator frames refused", ("weighbridge", "errors")),
    ("camera_frames", "Camera frames processed", ("camera", "frames")),
    ("camera_decoded_frames", "Camera frames the QR decoders ran on",
     ("camera", "decoded_frames")),
    ("qr_reads", "Confirmed QR reads handed to the lane", ("camera", "reads")),
    ("qr_decode_failures", "QR decoder worker failures (crash or time-out)",
     ("camera", "decode_failures")),
)  # fmt: skip

_GAUGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("outbox_events", "Events in the outbox not yet acknowledged by the backend",
     ("host", "outbox_events")),
    ("outbox_oldest_age_seconds", "Age of the oldest event in the outbox",
     ("host", "outbox_oldest_age_s")),
    ("state_disk_free_bytes", "Free space on the state directory's file system",
     ("host", "disk_free_bytes")),
)  # fmt: skip


class _DeviceCollector(Collector):
    """Reads the status document at scrape time."""

    def __init__(self, document: Document) -> None:
        self._document = document

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on what the devices report; described when collected

    def collect(self) -> Iterator[Metric]:
        doc = self._document()
        devices = _section(doc, "devices")
        for name, help_text, path in _COUNTERS:
            value = _num(_section(devices, *path[:-1]).get(path[-1]))
            if value is not None:
                yield CounterMetricFamily(f"{PREFIX}_{name}", help_text, value=value)
        for name, help_text, path in _GAUGES:
            value = _num(_section(devices, *path[:-1]).get(path[-1]))
            if value is not None:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)
        up = GaugeMetricFamily(f"{PREFIX}_device_up", "1 when the device is working",
                               labels=["device"])
        for device, state in _device_up(doc, devices).items():
            up.add_metric([device], 1.0 if state else 0.0)
        yield up
        versions = _section(doc, "versions")
        info = InfoMetricFamily(f"{PREFIX}_build", "Agent, firmware and config versions")
        info.add_metric([], {k: str(v) for k, v in versions.items() if v is not None})
        yield info
        lane = GaugeMetricFamily(f"{PREFIX}_lane_state", "1 for the lane machine's state",
                                 labels=["state"])
        lane.add_metric([str(doc.get("state"))], 1.0)
        yield lane


def _device_up(doc: Mapping[str, Any], devices: Mapping[str, Any]) -> dict[str, bool]:
    return {
        "io_board": _section(devices, "io_board").get("link") == "up",
        "indicator": bool(doc.get("indicator_up")),
        "camera": _section(devices, "camera").get("up") is True,
        "broker": _section(devices, "telemetry").get("connected") is True,
    }
