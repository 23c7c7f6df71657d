"""The AsyncAPI document names every reason code the lane can send, and no other."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge_agent.catalogue import Code

SPEC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_the_reason_code_enum_is_the_catalogue() -> None:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    documented = spec["components"]["schemas"]["ReasonCode"]["enum"]
    assert documented == [code.value for code in Code]
    assert len(set(documented)) == len(documented)
