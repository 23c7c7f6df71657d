"""Opening transports by URL, fakes included: every failure is a DeviceError naming the port."""

from __future__ import annotations

import os
import pty

import pytest

from edge_agent.drivers.serialport import LineSettings, LineSettingsRefused, open_port
from edge_agent.drivers.weighbridge_fake import INDICATORS, FakeIndicator, FakeIndicatorPort
from edge_agent.errors import ConfigError, DeviceError
from edge_agent.protocols.indicators import IndicatorReading, make_decoder


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


def test_fake_indicator_url_opens_the_registered_fake() -> None:
    now = [50.0]
    indicator = INDICATORS.register(
        "serialport-test", FakeIndicator("toledo", clock=lambda: now[0])
    )
    try:
        port = open_port("fake-indicator://serialport-test", LineSettings.parse("7E1", 9600),
                         timeout=0.02)
        assert isinstance(port, FakeIndicatorPort) and port.timeout == 0.02
        assert indicator.connected and port.read(64) == b""  # nothing due yet, and no waiting
        indicator.set_weight(35_480.0)
        now[0] += 0.1
        assert port.in_waiting == 18  # one full Toledo frame with its checksum
        events = make_decoder("toledo").receive_data(port.read(64))
        assert events == [IndicatorReading(35_480.0, False, raw=events[0].raw)]
        port.close()
        assert not indicator.connected
    finally:
        INDICATORS.unregister("serialport-test")


def test_fake_indicator_url_failures() -> None:
    with pytest.raises(ConfigError, match="fake-indicator://NAME"):
        open_port("fake-indicator://")
    indicator = INDICATORS.register("serialport-gone", FakeIndicator(clock=lambda: 0.0))
    try:
        indicator.unplug()
        with pytest.raises(DeviceError, match="unplugged"):
            open_port("fake-indicator://serialport-gone")
    finally:
        INDICATORS.unregister("serialport-gone")


def test_fake_ioboard_url_opens_the_fake_board() -> None:
    from edge_agent.drivers import ioboard_fake

    port = open_port("fake-ioboard://serialport-board", timeout=0.0)
    try:
        assert isinstance(port, ioboard_fake.FakeIoPort) and port.timeout == 0.0
    finally:
        port.close()
        ioboard_fake.REGISTRY.unregister("serialport-board")
