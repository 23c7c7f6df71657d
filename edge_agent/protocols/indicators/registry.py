"""Pick an indicator codec by protocol name (the ``protocol`` setting of a lane)."""

from __future__ import annotations

from typing import Any

from edge_agent.errors import ConfigError
from edge_agent.protocols.indicators.ad_ascii import AdAsciiDecoder, AdAsciiEncoder
from edge_agent.protocols.indicators.base import IndicatorDecoder, IndicatorEncoder
from edge_agent.protocols.indicators.sma import SmaDecoder, SmaEncoder
from edge_agent.protocols.indicators.toledo import ToledoDecoder, ToledoEncoder
from edge_agent.protocols.indicators.yaohua import EqDecoder, EqEncoder, Tf0Decoder, Tf0Encoder

PROTOCOLS = ("yaohua-tf0", "yaohua-eq", "yaohua-eq-rev", "toledo", "ad-ascii", "sma")

# Formats that send no motion flag: stability is decided by the weight watcher alone.
WITHOUT_MOTION_FLAG = frozenset({"yaohua-tf0", "yaohua-eq", "yaohua-eq-rev"})
# Formats with no gross/net flag: their readings always say gross (``net=False``).
WITHOUT_NET_FLAG = frozenset({"yaohua-tf0", "yaohua-eq", "yaohua-eq-rev"})
# Formats whose indicator must be polled (the driver sends the request).
POLLED = frozenset({"sma"})
# Usual line settings per format; the wire can differ per site (see `lanectl weigh detect`).
DEFAULT_LINE = {
    "yaohua-tf0": "8N1", "yaohua-eq": "8N1", "yaohua-eq-rev": "8N1",
    "toledo": "7E1", "ad-ascii": "8N1", "sma": "8N1",
}


def _check(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown indicator protocol {protocol!r}; expected one of {PROTOCOLS}")


def make_decoder(protocol: str, **options: Any) -> IndicatorDecoder:
    """A fresh decoder for ``protocol``.

    Options: ``toledo`` takes ``checksum=True|False`` (default: learnt from the stream).

    Raises:
        ConfigError: unknown protocol name or option.
    """
    _check(protocol)
    try:
        if protocol == "yaohua-tf0":
            return Tf0Decoder(**options)
        if protocol in ("yaohua-eq", "yaohua-eq-rev"):
            return EqDecoder(reversed_digits=protocol == "yaohua-eq-rev", **options)
        if protocol == "toledo":
            return ToledoDecoder(**options)
        if protocol == "ad-ascii":
            return AdAsciiDecoder(**options)
        return SmaDecoder(**options)
    except TypeError as exc:
        raise ConfigError(f"{protocol}: bad decoder option ({exc})") from exc


def make_encoder(protocol: str, **options: Any) -> IndicatorEncoder:
    """A fresh encoder for ``protocol`` (the simulator's side and round-trip tests).

    Options by protocol: yaohua ``decimals``; toledo ``with_checksum``, ``short``,
    ``decimal_code``, ``increment``, ``spaces``, ``parity``, ``tare_kg``; ad-ascii
    ``second_header``, ``unit``, ``decimals``, ``spaces``; sma ``decimals``.

    Raises:
        ConfigError: unknown protocol name or option.
    """
    _check(protocol)
    try:
        if protocol == "yaohua-tf0":
            return Tf0Encoder(**options)
        if protocol in ("yaohua-eq", "yaohua-eq-rev"):
            return EqEncoder(reversed_digits=protocol == "yaohua-eq-rev", **options)
        if protocol == "toledo":
            return ToledoEncoder(**options)
        if protocol == "ad-ascii":
            return AdAsciiEncoder(**options)
        return SmaEncoder(**options)
    except TypeError as exc:
        raise ConfigError(f"{protocol}: bad encoder option ({exc})") from exc
