"""Snapshot evidence: JPEG with outlines, bounded folder, oldest evicted first."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from edge_agent.vision.evidence import EvidenceStore, draw_polygon


def noisy(seed: int, shape: tuple[int, int] = (720, 1280)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_snapshot_of_the_remembered_frame(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "ev")
    assert store.snapshot("nothing-yet") is None
    frame = np.zeros((100, 200), np.uint8)
    store.remember(frame, 0.0, [((10, 10), (60, 10), (60, 60), (10, 60))])
    snapshot = store.snapshot("transit 42/weight.declared_mismatch")
    assert snapshot is not None and snapshot.media_type == "image/jpeg"
    path = snapshot.path
    assert path.suffix == ".jpg" and path.parent == tmp_path / "ev"
    assert "/" not in path.name and path.name.startswith("transit_42_weight")
    assert path.read_bytes() == snapshot.data  # the bytes uploaded are the bytes kept
    img = np.asarray(Image.open(io.BytesIO(snapshot.data)))
    assert img.shape == (100, 200)
    assert img[10, 35] > 200 and img[35, 35] < 30  # outline drawn, inside untouched
    assert frame.max() == 0  # the caller's frame is not modified


def test_large_frames_are_scaled_down(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, max_side=640)
    snapshot = store.save(noisy(0), "big")
    assert max(Image.open(snapshot.path).size) <= 640


def test_cap_evicts_oldest_first(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, cap_bytes=1_000_000, max_side=1280)
    paths = []
    for i in range(8):
        paths.append(store.save(noisy(i), f"s{i}").path)
        os.utime(paths[-1], ns=(i * 10**9, i * 10**9))  # distinct ages
    assert store.total_bytes() <= 1_000_000
    remaining = store.files()
    assert remaining and remaining[-1] == paths[-1]
    assert not paths[0].exists()
    assert [p for p in paths if p.exists()] == remaining


def test_draw_polygon_clips_at_the_border() -> None:
    image = np.zeros((20, 20), np.uint8)
    draw_polygon(image, ((-5, -5), (30, -5), (30, 30), (-5, 30)))
    assert image.max() == 255


def test_outlines_stay_drawn_for_a_second_of_frames_without_any(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    frame = np.zeros((100, 200), np.uint8)
    square = ((10, 10), (60, 10), (60, 60), (10, 60))
    store.remember(frame, 5.0, [square])
    store.remember(frame, 5.9)  # the motion gate skipped this one: no outline of its own
    kept = store.snapshot("kept")
    store.remember(frame, 6.0)
    gone = store.snapshot("gone")
    assert kept is not None and gone is not None
    assert np.asarray(Image.open(io.BytesIO(kept.data)))[10, 35] > 200
    assert np.asarray(Image.open(io.BytesIO(gone.data))).max() < 30
