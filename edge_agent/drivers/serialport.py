"""Open a byte transport by URL: the one seam between unit test, simulator, bench and lane.

``/dev/...`` (real port or pty), ``socket://host:port`` (TCP simulator or a serial server),
``loop://`` (unit tests), ``spy://...`` (hex-dump a live port on site), and the in-process
fakes shipped beside the drivers: ``fake-ioboard://NAME`` (the real firmware core) and
``fake-indicator://NAME`` (the real indicator encoders), each running on the clock its test
gave it. Only configuration changes between environments (DESIGN.md principle 5).
"""

from __future__ import annotations

import termios
from dataclasses import dataclass
from typing import Any

import serial

from edge_agent.errors import ConfigError, DeviceError


class LineSettingsRefused(DeviceError):
    """The port exists but will not take these line settings."""


_PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


@dataclass(frozen=True, slots=True)
class LineSettings:
    """Serial line settings; ignored by transports without a line (socket://, loop://)."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @classmethod
    def parse(cls, text: str, baudrate: int) -> LineSettings:
        """Parse the usual short form, e.g. ``8N1`` or ``7E1``."""
        if len(text) != 3 or not text[0].isdigit() or text[1].upper() not in _PARITIES:
            raise ConfigError(f"line settings {text!r}: expected a form like '8N1' or '7E1'")
        settings = cls(baudrate, int(text[0]), text[1].upper(), int(text[2]))
        if settings.bytesize not in (7, 8) or settings.stopbits not in (1, 2):
            raise ConfigError(f"line settings {text!r}: data bits must be 7 or 8, stop bits 1 or 2")
        return settings

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


def open_port(url: str, settings: LineSettings | None = None, *, timeout: float = 0.05) -> Any:
    """Open ``url`` and return the port object (``serial.SerialBase``, or a fake's port with
    the subset the drivers use: ``read``, ``write``, ``in_waiting``, ``reset_input_buffer``,
    ``close`` and ``timeout``). A fake has no line: ``settings`` do not apply to it.

    Raises:
        DeviceError: the port does not exist, is busy, or the URL scheme is unknown.
        ConfigError: a fake URL names no device.
    """
    if url.startswith("fake-ioboard://"):
        from edge_agent.drivers.ioboard_fake import open_fake_port as open_fake_board

        return _with_timeout(open_fake_board(url), timeout)
    if url.startswith("fake-indicator://"):
        from edge_agent.drivers.weighbridge_fake import open_fake_port as open_fake_indicator

        return _with_timeout(open_fake_indicator(url), timeout)
    line = settings or LineSettings()
    try:
        return serial.serial_for_url(
            url,
            baudrate=line.baudrate,
            bytesize=line.bytesize,
            parity=_PARITIES[line.parity],
            stopbits=line.stopbits,
            timeout=timeout,
            write_timeout=1.0,
            exclusive=True if url.startswith("/dev/") else None,
        )
    except termios.error as exc:
        # Some adapters and every pty refuse some settings (7E1); termios.error is no OSError.
        raise LineSettingsRefused(f"{url!r} refuses {line}: {exc}") from exc
    except (serial.SerialException, ValueError, OSError) as exc:
        raise DeviceError(f"cannot open {url!r} ({line}): {exc}") from exc


def _with_timeout(port: Any, timeout: float) -> Any:
    port.timeout = timeout
    return port
