"""Opening transports by URL: every failure is a DeviceError naming the port."""

from __future__ import annotations

import os
import pty

import pytest

from edge_agent.drivers.serialport import LineSettings, LineSettingsRefused, open_port
from edge_agent.errors import ConfigError, DeviceError


def test_loop_url_echoes() -> None:
    port = open_port("loop://")
    port.write(b"\x02+001560019\x03")
    assert port.read(12) == b"\x02+001560019\x03"
    port.close()


def test_missing_device_is_a_device_error_naming_it() -> None:
    with pytest.raises(DeviceError, match="/dev/gatelane-missing"):
        open_port("/dev/gatelane-missing")


def test_unknown_scheme_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="nope://x"):
        open_port("nope://x")


def test_line_settings_a_pty_refuses_surface_as_device_errors() -> None:
    master, slave = pty.openpty()
    try:
        try:
            port = open_port(os.ttyname(slave), LineSettings.parse("7E1", 9600))
        except LineSettingsRefused as exc:
            assert isinstance(exc, DeviceError)  # callers that only know DeviceError catch it
            return  # the pty refused 7E1: reported as such, not as a bare termios.error
        port.close()  # some kernels accept it: then opening simply worked
    finally:
        os.close(master)
        os.close(slave)


def test_line_settings_parse_and_reject() -> None:
    assert str(LineSettings.parse("8n1", 9600)) == "9600 8N1"
    for bad in ("8X1", "9N1", "8N3", "81"):
        with pytest.raises(ConfigError):
            LineSettings.parse(bad, 9600)
