from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_agent.vision import plates
from host_tools.lanectl import main


class _FakeEngine:
    def read(self, image: np.ndarray) -> list[plates.PlateRead]:  # type: ignore[type-arg]
        assert image.ndim == 3
        return [plates.PlateRead("京A12345", 0.97, (1, 2, 30, 12))]


def test_json_shape_and_bad_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plates, "default_engine", lambda: _FakeEngine())
    good = tmp_path / "truck.png"
    Image.new("RGB", (64, 32), (20, 60, 200)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    rc = main(["plate", "read", str(good), str(bad), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out[0]["file"] == str(good)
    assert out[0]["plates"] == [{"text": "京A12345", "confidence": 0.97, "box": [1, 2, 30, 12]}]
    assert isinstance(out[0]["ms"], float)
    assert out[1]["plates"] == [] and "cannot read image" in out[1]["error"]


def test_engine_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> plates.PlateEngine:
        raise plates.PlateEngineMissing("no engine here")

    monkeypatch.setattr(plates, "default_engine", missing)
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["plate", "read", str(img)]) != 0
