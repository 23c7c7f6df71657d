"""Fakes are opened by URL, like real transports: a registered one, or a fresh default."""

from __future__ import annotations

import pytest

from edge_agent.drivers.fakes import FakeRegistry
from edge_agent.errors import ConfigError


def test_a_registered_fake_is_what_its_url_opens_and_an_unknown_name_gets_a_default() -> None:
    made: list[str] = []
    registry: FakeRegistry[list[str]] = FakeRegistry(
        "fake-thing", lambda name: made.append(name) or [name])
    mine = registry.register("lane1", ["mine"])
    assert registry.lookup("fake-thing://lane1") is mine
    other = registry.lookup("fake-thing://lane2")
    assert other == ["lane2"] and registry.lookup("fake-thing://lane2") is other
    assert made == ["lane2"]
    registry.unregister("lane1")
    assert registry.lookup("fake-thing://lane1") == ["lane1"]


@pytest.mark.parametrize("url", ["fake-other://lane1", "fake-thing://", "/dev/ttyUSB0"])
def test_a_url_of_another_kind_is_a_config_error_naming_the_expected_form(url: str) -> None:
    registry: FakeRegistry[object] = FakeRegistry("fake-thing", lambda name: object())
    with pytest.raises(ConfigError, match="fake-thing://NAME"):
        registry.lookup(url)
