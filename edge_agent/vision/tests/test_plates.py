from __future__ import annotations

import numpy as np

from edge_agent.vision import plates


def _engine() -> plates.PlateEngine:
    # The development install has the engine (the Makefile installs the models): a missing
    # one is a broken set-up, not a reason to skip.
    return plates.default_engine()


def test_missing_engine_raises_edge_agent_error() -> None:
    from edge_agent.errors import EdgeAgentError

    assert issubclass(plates.PlateEngineMissing, EdgeAgentError)


def test_garbage_image_gives_no_plate() -> None:
    engine = _engine()
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    assert engine.read(noise) == []
    assert engine.read(np.zeros((8, 8), np.uint8)) == []


def test_char_table_has_provinces_and_latin() -> None:
    assert plates.CHARS[0] == "京" and "A" in plates.CHARS and "I" not in plates.CHARS
