"""Backend ingest simulator: stores lane events once, in seq order, and acks a watermark.

It does what a real ingest worker must do with MQTT's at-least-once delivery:
- store idempotently by ``event_id`` (duplicates are normal after PUBACK loss or resends);
- order per lane by ``seq`` and keep the highest *contiguous* stored seq as the watermark;
- publish that watermark retained on ``gate/v1/{site}/{lane}/ack`` as
  ``{upto_seq, boot_id, epoch}`` (epoch: the lane's outbox file the seqs belong to),
  which is the only thing that lets a lane delete rows from its outbox;
- report gaps (seqs missing below the highest seen); a ``dead_letter`` event fills the gap of
  the seq it names;
- follow each lane's transaction log (``transaction_record`` events) as the watermark moves:
  every record must link to the one before and carry the lane's signature (``record_chain``).
On start it also reads the retained acks, so a backend without history (fresh database)
continues from the watermark its predecessor published instead of waiting for deleted rows.

Several workers may share one subscription group (``$share/<group>/...``) and one database
file (``backend.sqlite_store``). Each worker then sees only part of a lane's events, so
the store, not the worker, is the authority: a worker writes under the store's write lock,
counts an event another worker already stored as a duplicate, and advances the lane's
watermark over every worker's rows. Acks are published under the same lock and the lock is
held until the broker confirms them, so the retained watermark never goes backwards,
whichever worker sends. Each worker connects with its own identity (client id = certificate
CN on a site broker: ``lanectl site init --ingest-workers N``).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage, MQTTMessageInfo
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from backend.contract import event_problems
from backend.errors import BackendError, BackendTimeout
from backend.store import EventStore, Stored
from backend.store_url import open_store
from edge_agent.errors import RemoteProtocolError
from edge_agent.telemetry import envelope as envelope_codec
from edge_agent.telemetry.evidence_chunks import assemble_evidence
from edge_agent.telemetry.mqtt import (
    TlsFiles,
    connect_properties,
    make_client,
    parse_broker_url,
    publish_properties,
)
from edge_agent.telemetry.topics import (
    ACK_FILTER,
    INGEST_FILTERS,
    LaneTopics,
    ParsedTopic,
    TopicKind,
)
from edge_agent.telemetry.topics import parse_topic as parse_lane_topic
from edge_agent.telemetry.topics import shared as shared_filter

ACK_CONFIRM_TIMEOUT_S = 2.0
MAX_MESSAGE_BYTES = 256 * 1024  # an evidence chunk is 24 KiB of base64; a record a few KiB


class IngestWorker:
    """Subscribes to every lane, stores events, publishes per-lane ack watermarks."""

    def __init__(
        self,
        broker_url: str,
        *,
        db_path: Path | None = None,
        validate: Callable[[Mapping[str, Any]], list[str]] = event_problems,
        store: EventStore | str | None = None,
        client_id: str = "backend-sim",
        shared_group: str | None = None,
        ack_interval_s: float = 0.05,
        session_expiry_s: int = 0,
        tls: TlsFiles | None = None,
    ) -> None:
        self._address = parse_broker_url(broker_url)
        self._tls = tls  # the backend's own client certificate for an mqtts:// broker
        self._client_id = client_id
        self._shared_group = shared_group
        self._ack_interval_s = ack_interval_s
        self._session_expiry_s = session_expiry_s
        # The store is shared with the other workers of the group: a URL, or a SQLite file.
        self._store = open_store(db_path if store is None else store) if (
            store is None or isinstance(store, str)
        ) else store
        self._validate = validate
        self._lock = threading.Condition()
        self._republish: set[str] = set()  # lanes whose ack must be sent again
        # Every (re)connect asks for all acks again (the broker may have lost them).
        self._connects = self._acks_resent_for = 0
        # lane -> (boot_id, how) each time it went offline: "planned" (a clean stop's farewell),
        # "failed" (the agent gave up and said so) or "crash" (the last will: it vanished).
        self._offline: dict[str, list[tuple[object, str]]] = {}
        self._health: dict[str, list[dict[str, Any]]] = {}
        self._arrival: dict[str, dict[int, float]] = {}  # lane -> seq -> monotonic at store
        self._counts = {"stored": 0, "duplicates": 0, "conflicts": 0, "rejected": 0,
                        "quarantined": 0, "evidence": 0}
        self._inbox: queue.SimpleQueue[MQTTMessage | None] = queue.SimpleQueue()
        self._subscribed = threading.Event()
        self._unsubscribed = threading.Event()
        self._client: Client | None = None
        self._worker: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Connect, subscribe and return once the subscriptions are in place."""
        if self._client is not None:
            raise BackendError("ingest worker already started")
        self._subscribed.clear()
        client = make_client(self._client_id, self._address, self._tls)
        client.on_connect = self._cb_connect
        client.on_subscribe = self._cb_subscribe
        client.on_unsubscribe = self._cb_unsubscribe
        client.on_message = self._cb_message
        client.on_disconnect = self._cb_disconnect
        client.reconnect_delay_set(0.2, 2)  # type: ignore[arg-type]
        self._client = client
        self._worker = threading.Thread(target=self._run, name="backend-sim", daemon=True)
        self._worker.start()
        props = connect_properties()
        props.SessionExpiryInterval = self._session_expiry_s
        # A persistent session (expiry > 0) lets the broker queue for us while we are away.
        client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=10,
            clean_start=self._session_expiry_s == 0,
            properties=props,
        )
        client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise BackendTimeout(f"ingest worker could not subscribe at {self._address}")

    def stop(self) -> None:
        """Leave the ingest group, store what was received, publish the final acks, disconnect.

        Unsubscribing first means the broker sends nothing more that this worker would PUBACK
        and then not store; the rest of a shared group takes over the stream.
        """
        client = self._client
        if client is not None and client.is_connected():
            self._unsubscribed.clear()
            client.unsubscribe(self._ingest_filters())
            self._unsubscribed.wait(2.0)
        if self._worker is not None:
            self._inbox.put(None)
            self._worker.join(5.0)
            self._worker = None
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        self.stop()
        self._store.close()

    def __enter__(self) -> IngestWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------------

    def events(self, lane: str | None = None) -> list[dict[str, Any]]:
        """Stored envelopes, per lane in seq order (lanes sorted by name)."""
        with self._lock:
            return self._store.events(lane)

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float) -> bool:
        """Poll ``predicate(events())`` after every stored batch until true or timeout."""
        deadline = time.monotonic() + timeout
        seen = -1
        while True:
            with self._lock:
                if self._counts["stored"] == seen:
                    self._lock.wait(max(0.0, min(0.25, deadline - time.monotonic())))
                seen = self._counts["stored"]
            if predicate(self.events()):
                return True
            if time.monotonic() >= deadline:
                return False

    def watermark(self, lane: str) -> int:
        """The lane's stored contiguous seq, over every worker sharing the database."""
        with self._lock:
            return self._store.upto(lane)

    def gaps(self, lane: str) -> list[int]:
        """Seqs missing between the watermark and the highest seq stored."""
        with self._lock:
            return self._store.gaps(lane)

    def arrival_times(self, lane: str) -> dict[int, float]:
        """seq -> time.monotonic() when this process stored it (for latency figures)."""
        with self._lock:
            return dict(self._arrival.get(lane, {}))

    def record_chain(self, lane: str) -> dict[str, Any] | None:
        """The lane's transaction log as checked on arrival: records followed, position
        (segment, seq), and ``first_break`` (None while every link held)."""
        with self._lock:
            return self._store.record_chain(lane)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def lane_state(self, lane: str) -> dict[str, Any] | None:
        """The last retained/live ``state`` message of a lane (birth or will)."""
        with self._lock:
            state = self._store.lane_docs().get(lane, {}).get("state")
            return None if state is None else dict(state)

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        """Messages refused on ingest, newest first, each with its kind and reason."""
        with self._lock:
            return self._store.quarantined(limit)

    def evidence(self, lane: str, ref: str) -> tuple[str, bytes] | None:
        """A reassembled, hash-checked evidence file: (media type, bytes)."""
        with self._lock:
            return self._store.evidence(lane, ref)

    def offline_history(self, lane: str) -> list[str]:
        """How the lane went offline, oldest first: "planned", "failed" or "crash"."""
        with self._lock:
            return [how for _boot, how in self._offline.get(lane, [])]

    def health(self, lane: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._health.get(lane, []))

    def publish_command(
        self, site: str, lane: str, name: str, payload: bytes, *, expiry_s: int = 60
    ) -> None:
        """Send a (signed, by the caller) command to a lane, QoS1, with a message expiry."""
        if self._client is None:
            raise BackendError("ingest worker is not started")
        props = publish_properties()
        props.MessageExpiryInterval = expiry_s
        self._client.publish(LaneTopics(site, lane).command(name), payload, qos=1, properties=props)

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _cb_connect(
        self, client: Client, userdata: Any, flags: ConnectFlags, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            return
        # The broker may have lost the retained acks: publish them again. (A flag, not the
        # lock: the worker holds the lock while it waits for this thread to deliver PUBACKs.)
        self._connects += 1
        client.subscribe(
            [(ACK_FILTER, SubscribeOptions(qos=1, noLocal=True))]
            + [(f, SubscribeOptions(qos=1)) for f in self._ingest_filters()]
        )

    def _ingest_filters(self) -> list[str]:
        group = self._shared_group
        return [shared_filter(f, group) if group else f for f in INGEST_FILTERS]

    def _cb_subscribe(
        self, client: Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        self._subscribed.set()

    def _cb_unsubscribe(
        self, client: Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        self._unsubscribed.set()

    def _cb_disconnect(
        self, client: Client, userdata: Any, flags: DisconnectFlags, rc: ReasonCode, props: Any
    ) -> None:
        pass

    def _cb_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        self._inbox.put(message)

    # -- worker: store, order, ack ---------------------------------------------------------

    def _run(self) -> None:
        last_ack = 0.0
        while True:
            batch: list[MQTTMessage] = []
            try:
                first = self._inbox.get(timeout=self._ack_interval_s)
                if first is None:
                    self._publish_acks()
                    break
                batch.append(first)
                while len(batch) < 1000:
                    more = self._inbox.get_nowait()
                    if more is None:
                        self._inbox.put(None)
                        break
                    batch.append(more)
            except queue.Empty:
                pass
            if batch:
                self._store_batch(batch)
            now = time.monotonic()
            if now - last_ack >= self._ack_interval_s:
                last_ack = now
                self._publish_acks()

    def _store_batch(self, batch: list[MQTTMessage]) -> None:
        with self._lock, self._store.write():
            touched: set[str] = set()
            for message in batch:
                self._ingest(message, touched)
            for lane in touched:
                self._store.advance(lane)
                self._store.follow_records(lane)
            self._lock.notify_all()

    def _ingest(self, message: MQTTMessage, touched: set[str]) -> None:
        parsed = parse_lane_topic(message.topic)
        payload = bytes(message.payload)
        if parsed is None:
            self._refuse(message.topic, "foreign_topic", "not a lane topic", payload)
        elif len(payload) > MAX_MESSAGE_BYTES:
            why = f"{len(payload)} bytes; a lane message is at most {MAX_MESSAGE_BYTES}"
            self._refuse(message.topic, "oversized", why, payload)
        elif parsed.kind in (TopicKind.EVENT, TopicKind.CMD_RESULT):
            self._ingest_event(message.topic, parsed, payload, touched)
        elif parsed.kind is TopicKind.ACK:
            if message.retain:
                self._learn_watermark(parsed.site, parsed.lane, payload)
        elif parsed.kind is TopicKind.STATE:
            state = _json_or_error(payload)
            self._store.put_lane_doc(parsed.site, parsed.lane, "state", state, time.time())
            if state.get("online") is False:
                reason = str(state.get("reason"))
                how = {"stopped": "planned", "failed": "failed"}.get(reason, "crash")
                seen = self._offline.setdefault(parsed.lane, [])
                if not seen or seen[-1][0] != state.get("boot_id"):  # a retained replay: once
                    seen.append((state.get("boot_id"), how))
        elif parsed.kind is TopicKind.HEALTH:
            health = _json_or_error(payload)
            self._health.setdefault(parsed.lane, []).append(health)
            self._store.put_lane_doc(parsed.site, parsed.lane, "health", health, time.time())

    def _refuse(self, topic: str, kind: str, reason: str, payload: bytes) -> None:
        """Quarantine a message with why: kept and counted, never silently dropped."""
        self._store.quarantine(time.time(), topic, kind, reason, payload)
        self._counts["rejected"] += 1
        self._counts["quarantined"] += 1

    def _ingest_event(
        self, topic: str, parsed: ParsedTopic, payload: bytes, touched: set[str]
    ) -> None:
        try:
            event = envelope_codec.decode(payload)
        except RemoteProtocolError as exc:
            self._refuse(topic, "malformed", str(exc), payload)
            return
        if event["lane"] != parsed.lane or event["site"] != parsed.site:
            # A lane may only speak for itself: its seqs must not move another's watermark.
            why = f"{event['site']}/{event['lane']} published under {parsed.site}/{parsed.lane}"
            self._refuse(topic, "foreign_topic", why, payload)
            return
        problems = self._validate(event)
        if problems and event["seq"] <= self._store.upto(event["lane"]):
            self._counts["duplicates"] += 1  # resent after it was settled: ack it again
            self._republish.add(event["lane"])
            return
        if problems:
            # Kept in quarantine, and its seq counted as settled: the lane may forget it,
            # and its later events are not held behind one it will only ever send the same.
            self._refuse(topic, "schema", "; ".join(problems)[:2000], payload)
            self._store.skip(event["lane"], event["seq"])
            touched.add(event["lane"])
            return
        lane, seq = event["lane"], event["seq"]
        outcome = self._store.add(parsed.site, event, payload.decode(), time.time())
        if outcome is Stored.NEW:
            self._arrival.setdefault(lane, {})[seq] = time.monotonic()
            self._counts["stored"] += 1
            touched.add(lane)
            if event["type"] == "evidence":
                self._assemble(topic, lane, event["data"])
            return
        self._counts["duplicates" if outcome is Stored.DUPLICATE else "conflicts"] += 1
        if outcome is not Stored.ID_CONFLICT:
            self._republish.add(lane)  # the lane is resending: our ack may not have reached it

    def _assemble(self, topic: str, lane: str, chunk: dict[str, Any]) -> None:
        """Once every part of an evidence file is in, keep the checked file itself."""
        ref = str(chunk.get("ref", ""))
        if self._store.evidence(lane, ref) is not None:
            return
        try:
            data = assemble_evidence(self._store.evidence_chunks(lane, ref), ref)
        except (RemoteProtocolError, ValueError, KeyError, TypeError) as exc:
            self._refuse(topic, "evidence", f"evidence {ref!r} of {lane}: {exc}", b"")
            return
        if data is not None:
            self._store.put_evidence(lane, ref, str(chunk.get("media_type", "")),
                                     str(chunk.get("sha256", "")), data, time.time())
            self._counts["evidence"] += 1

    def pass_uses(self) -> dict[str, list[tuple[str, str | None]]]:
        """pass_hash -> the (lane, transit) of each use stored, in the store's order."""
        uses: dict[str, list[tuple[str, str | None]]] = {}
        for event in self.events_of_type("pass_used"):
            pass_hash = event["data"].get("pass_hash")
            use = (event["lane"], event.get("transit_id"))
            if isinstance(pass_hash, str) and pass_hash and use not in uses.get(pass_hash, []):
                uses.setdefault(pass_hash, []).append(use)
        return uses

    def double_uses(self) -> list[dict[str, Any]]:
        """Passes used by more than one transit (at one lane or across lanes): flagged.
        A pass is single-use across the site: two uses are for an officer to look at."""
        release = {e["data"].get("pass_hash"): e["data"].get("release_no")
                   for e in self.events_of_type("pass_used")}
        return [{"pass_hash": h, "release_no": release.get(h), "uses": uses}
                for h, uses in self.pass_uses().items() if len(uses) > 1]

    def events_of_type(self, *types: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._store.events(types=types)

    def _learn_watermark(self, site: str, lane: str, payload: bytes) -> None:
        try:
            upto, epoch = envelope_codec.decode_ack(payload)
        except RemoteProtocolError:
            return
        self._store.learn_watermark(site, lane, upto, epoch)

    def _due_acks(self) -> list[tuple[str, str, int, int, str]]:
        resend_all = self._connects != self._acks_resent_for
        return [
            (row.lane, row.site, row.upto, row.boot_id, row.epoch)
            for row in self._store.ack_rows()
            if row.upto > row.acked or resend_all or row.lane in self._republish
        ]

    def _publish_acks(self) -> None:
        client = self._client
        if client is None or not client.is_connected():
            return
        with self._lock:
            if not self._due_acks():
                return
            with self._store.write():
                connects = self._connects
                sent = [
                    (lane, upto, client.publish(
                        LaneTopics(site, lane).ack,
                        envelope_codec.encode(envelope_codec.ack_message(upto, boot_id, epoch)),
                        qos=1,
                        retain=True,
                    ))
                    for lane, site, upto, boot_id, epoch in self._due_acks()
                ]
                # Hold the write lock until the broker has them: a worker that reads the
                # watermark later can then only publish the same or a higher one.
                deadline = time.monotonic() + ACK_CONFIRM_TIMEOUT_S
                confirmed = 0
                for lane, upto, info in sent:
                    if _confirmed(info, deadline):
                        confirmed += 1
                        self._republish.discard(lane)
                        self._store.record_ack(lane, upto)
                if confirmed == len(sent):
                    self._acks_resent_for = connects


def _confirmed(info: MQTTMessageInfo, deadline: float) -> bool:
    """Wait until ``deadline`` for the broker's PUBACK; False if not queued or not confirmed."""
    try:
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        return info.is_published()
    except (RuntimeError, ValueError):  # not queued: the client is not connected
        return False


def _json_or_error(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {"error": "not JSON", "raw": payload[:200].decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}

