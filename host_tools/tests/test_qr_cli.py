"""``lanectl qr decode`` and ``lanectl qr live`` contracts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from host_tools import lanectl as lanectl_main
from host_tools.cmd_qr import latency_summary
from simulators.pass_render import render_pass_frame

TEXT = "GP1:QR CLI TEST 42"


def lanectl(*argv: str) -> int:
    return lanectl_main.main(list(argv))


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(render_pass_frame(TEXT, rng=rng)).save(tmp_path / "a.png")
    Image.fromarray(render_pass_frame(None, rng=rng)).save(tmp_path / "b.jpg", quality=90)
    return tmp_path


def test_decode_json_contract(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(images / "a.png"), str(images / "b.jpg")]
    assert lanectl("qr", "decode", *files, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["file"] for o in out] == files
    assert out[0]["texts"] == [TEXT] and out[1]["texts"] == []
    assert all(set(o) == {"file", "texts", "ms"} and o["ms"] >= 0 for o in out)


def test_decode_bad_file_is_reported_not_raised(images: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    files = [str(tmp_path / "broken.png"), str(images / "a.png"), str(tmp_path / "none.png")]
    assert lanectl("qr", "decode", *files, "--json") == 1
    out = json.loads(capsys.readouterr().out)
    assert "error" in out[0] and "error" in out[2]
    assert out[1]["texts"] == [TEXT]


def test_decode_plain_output(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lanectl("qr", "decode", str(images / "a.png")) == 0
    assert TEXT in capsys.readouterr().out


def test_live_from_a_folder(images: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    frame = np.asarray(Image.open(images / "a.png"))
    for i in range(4):
        Image.fromarray(frame).save(frames / f"{i:03}.png")
    assert lanectl("qr", "live", "--source", f"dir://{frames}", "--json") == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["event"], line["text"]) for line in lines] == [("read", TEXT)]
    summary = json.loads(err)
    assert summary["frames"] == 4 and summary["p95_ms"] >= summary["median_ms"] > 0


@pytest.mark.parametrize(
    "timings",
    [[1.0, 9.0], [5.0, 1.0, 3.0], [2.0] * 19 + [40.0], [float(n) for n in range(100, 0, -1)]],
)
def test_p95_is_never_below_the_median(timings: list[float]) -> None:
    summary = latency_summary(timings)
    assert min(timings) <= summary["median_ms"] <= summary["p95_ms"] <= max(timings)


def test_p95_of_a_known_spread() -> None:
    summary = latency_summary([float(n) for n in range(1, 101)])  # 1..100 ms, in any order
    assert summary == {"median_ms": 50.5, "p95_ms": 95.05}
    assert latency_summary([1.0, 9.0]) == {"median_ms": 5.0, "p95_ms": 8.6}


def test_live_bad_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert lanectl("qr", "live", "--source", "bogus://x") == 2
    assert "unknown frame source" in capsys.readouterr().err
