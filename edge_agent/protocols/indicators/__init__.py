"""Weighbridge indicator codecs: bytes in, readings and frame errors out (sans-I/O).

    decoder = make_decoder("yaohua-tf0")
    for event in decoder.receive_data(chunk):
        ...  # IndicatorReading or FrameError
"""

from edge_agent.protocols.indicators.base import (
    FrameError,
    IndicatorDecoder,
    IndicatorEncoder,
    IndicatorEvent,
    IndicatorReading,
)
from edge_agent.protocols.indicators.registry import (
    DEFAULT_LINE,
    POLLED,
    PROTOCOLS,
    WITHOUT_MOTION_FLAG,
    WITHOUT_NET_FLAG,
    make_decoder,
    make_encoder,
)
from edge_agent.protocols.indicators.sma import sma_command

__all__ = [
    "DEFAULT_LINE",
    "POLLED",
    "PROTOCOLS",
    "WITHOUT_MOTION_FLAG",
    "WITHOUT_NET_FLAG",
    "FrameError",
    "IndicatorDecoder",
    "IndicatorEncoder",
    "IndicatorEvent",
    "IndicatorReading",
    "make_decoder",
    "make_encoder",
    "sma_command",
]
