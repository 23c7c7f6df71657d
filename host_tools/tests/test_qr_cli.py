"""``lanectl qr decode`` and ``lanectl qr live`` contracts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from host_tools import cmd_qr
from simulators.pass_render import render_pass_frame

TEXT = "GP1:QR CLI TEST 42"


def lanectl(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="lanectl")
    cmd_qr.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


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
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["event"], line["text"]) for line in lines] == [("read", TEXT)]


def test_live_bad_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert lanectl("qr", "live", "--source", "bogus://x") == 2
    assert "unknown frame source" in capsys.readouterr().err
