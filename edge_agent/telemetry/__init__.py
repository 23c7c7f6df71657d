"""Lossless lane telemetry over MQTT v5.

- ``topics``: the gate/v1 topic tree; ``envelope``: the immutable event envelope (UUIDv7,
  per-lane seq, boot_id, clock quality) and the state/ack payloads.
- ``outbox``: the SQLite system of record; an event is accepted once committed and leaves
  only when the backend's ack watermark covers its seq.
- ``delivery``: the delivery rules as a sans-I/O state machine (window, resends, dead
  letters, ack watermark, stall cut, rebuild), fed the typed events of ``delivery_events``.
- ``publisher``: the glue: one sender thread running that machine on paho-mqtt
  (``broker_link`` owns the paho client and turns its callbacks into events).
- ``commands``: Ed25519-signed commands, verified end to end and run at most once.
- ``mqtt``: broker URLs and client construction; ``loadgen``: a telemetry-only soak lane.

The wire contract is ``docs/asyncapi.yaml``.
"""
