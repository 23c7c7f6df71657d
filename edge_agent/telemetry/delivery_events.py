"""What goes into the delivery machine (``delivery.Delivery``) and what comes out of it.

Events are what paho's callbacks report (built by ``BrokerLink`` on paho's thread) and what
the lane asks for (``SendTransient``); actions are what the glue performs on the paho client
or hands to the lane. All are frozen, so they cross threads as they are.

Message ids: paho picks the id of a PUBLISH or SUBSCRIBE when it is called, so the machine
names each tracked send with a ``token`` of its own. The glue answers every ``Publish`` that
has a token before it feeds the next event: ``Delivery.published(token, mid)`` once paho
took it (QoS 1 also while disconnected: paho sends it on the next connection), else
``Delivery.not_published(token, error, now)``; and every ``Subscribe`` with
``Delivery.subscribed(mid)`` or ``Delivery.not_subscribed(error)``. ``PubAck`` and ``SubAck``
then carry paho's ids. A ``Publish`` without a token (birth, transient health) is not tracked.
"""

from __future__ import annotations

from dataclasses import dataclass


# ---- what happens to the link (paho's callbacks, and the lane's own requests) ----
@dataclass(frozen=True, slots=True)
class Connected:
    """CONNACK with success."""


@dataclass(frozen=True, slots=True)
class ConnectRefused:
    """CONNACK with a failure reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """No TCP or no TLS session (paho does not say which)."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class PubAck:
    mid: int
    code: int  # MQTT v5 reason code


@dataclass(frozen=True, slots=True)
class SubAck:
    mid: int
    codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MessageReceived:
    topic: str
    payload: bytes
    retained: bool


@dataclass(frozen=True, slots=True)
class SendTransient:
    """Send once if connected, untracked: a health alarm the full disk could not store."""

    topic: str
    payload: bytes
    expiry_s: int


Event = (
    Connected | ConnectRefused | ConnectFailed | Disconnected | PubAck | SubAck
    | MessageReceived | SendTransient
)


# ---- what the glue does for the machine ----
@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    send_retained: bool  # False: the broker must not send what is retained on it (commands)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """One SUBSCRIBE (QoS 1) for all of these; answer with ``subscribed``/``not_subscribed``."""

    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class Publish:
    """One PUBLISH; with a ``token``, answer with ``published``/``not_published``."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    expiry_s: int | None = None  # MQTT v5 message expiry interval
    content_type: str | None = None
    utf8: bool = False  # MQTT v5 payload format indicator: UTF-8 text
    token: int | None = None


@dataclass(frozen=True, slots=True)
class Cut:
    """Shut the socket down; paho notices, reconnects and resends its own queue."""


@dataclass(frozen=True, slots=True)
class Rebuild:
    """Abandon the hung client and start a new one (its queue is empty)."""


@dataclass(frozen=True, slots=True)
class DeliverCommand:
    name: str
    payload: bytes


Action = Subscribe | Publish | Cut | Rebuild | DeliverCommand
