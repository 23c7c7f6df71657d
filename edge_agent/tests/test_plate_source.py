"""The lane's plate reader on the scripted engine: frames in, the lane's plate inputs out."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import PlatesSection
from edge_agent.lane.actions import KeepCrop
from edge_agent.lane.inputs import IdentitySeen, IdentitySourceChanged
from edge_agent.plate_source import READ_EVERY_S, REPEAT_S, PlateSource
from edge_agent.vision.evidence import EvidenceStore
from edge_agent.vision.plates_fake import ENGINES, ScriptedPlates

FRAME = np.full((720, 1280), 90, dtype=np.uint8)


@pytest.fixture
def engine() -> ScriptedPlates:
    fake = ENGINES.register("plate-source-test", ScriptedPlates())
    yield fake
    ENGINES.unregister("plate-source-test")


def source(**settings: object) -> PlateSource:
    config = PlatesSection(engine="fake-plates://plate-source-test", **settings)  # type: ignore[arg-type]
    return PlateSource(config)


def test_a_region_of_the_pass_camera_is_read_and_its_plate_handed_over(
    engine: ScriptedPlates,
) -> None:
    plates = source(region=(100, 400, 640, 200))
    assert plates.open(1.0) is None  # the engine started: nothing to report
    engine.show("沪A12345")
    [seen] = plates.read(FRAME, 1.0)
    assert isinstance(seen, IdentitySeen)
    assert (seen.kind, seen.reads, seen.at) == ("plate", ("沪A12345",), 1.0)
    assert engine.shapes == [(200, 640)]  # only the region went to the engine
    crop = plates.crop(seen.crop_ref or "")
    assert crop is not None and 0 < crop.shape[0] < 200 and 0 < crop.shape[1] < 640
    assert plates.status()["ok"] is True and plates.status()["reads"] == 1


def test_frames_are_read_at_a_bounded_rate_and_a_plate_repeated_only_now_and_then(
    engine: ScriptedPlates,
) -> None:
    plates = source(region=(0, 0, 1280, 720))
    plates.open(0.0)
    engine.show("沪A12345")
    handed: list[float] = []
    for i in range(40):  # 4 s of frames at 10 Hz
        at = i / 10
        handed += [item.at for item in plates.read(FRAME, at)]
    assert engine.calls == pytest.approx(4.0 / READ_EVERY_S, abs=4)
    assert len(handed) == pytest.approx(4.0 / REPEAT_S, abs=1)
    engine.show("沪B99999")  # another plate comes into view: handed over at once
    [seen] = plates.read(FRAME, 10.0)
    assert isinstance(seen, IdentitySeen) and seen.reads == ("沪B99999",)
    engine.show()
    assert plates.read(FRAME, 11.0) == []  # nothing read: nothing to tell


def test_a_missing_engine_is_reported_once_and_not_a_crash(
    engine: ScriptedPlates, caplog: pytest.LogCaptureFixture,
) -> None:
    engine.missing = "hyperlpr2 model file missing: mininet_ssd_v1.caffemodel"
    plates = source(source="uvc:1")
    change = plates.open(5.0)
    assert isinstance(change, IdentitySourceChanged)
    assert (change.kind, change.up) == ("plate", False)
    assert "plate engine missing" in change.reason and "caffemodel" in change.reason
    assert plates.open(6.0) is None  # not retried: a missing model does not come back
    assert plates.read(FRAME, 7.0) == []
    status = plates.status()
    assert status["ok"] is False and "caffemodel" in status["error"]
    assert any("cannot run" in r.getMessage() and "vehicle.plate_unread" in r.getMessage()
               for r in caplog.records)


def test_a_held_truck_s_crop_becomes_evidence_chunks(engine: ScriptedPlates,
                                                      tmp_path: Path) -> None:
    plates = source(region=(0, 0, 1280, 720))
    plates.open(0.0)
    engine.show("沪C55555")
    [seen] = plates.read(FRAME, 1.0)
    assert isinstance(seen, IdentitySeen) and seen.crop_ref
    store = EvidenceStore(tmp_path / "evidence")
    chunks: list[dict[str, object]] = []

    def record(chunk: dict[str, object]) -> dict[str, object]:
        chunks.append(chunk)
        return chunk

    action = KeepCrop("t1", "plate", seen.crop_ref, "t1-vehicle.plate_mismatch-crop")
    assert plates.save_crop(action, store, record)
    assert chunks and all(c["ref"] == action.ref for c in chunks)
    assert [p.name.startswith("t1-vehicle.plate_mismatch-crop") for p in store.files()] == [True]
    gone = KeepCrop("t1", "plate", "plate-999", "t1-x")
    assert not plates.save_crop(gone, store, lambda chunk: chunk)


def test_the_reader_thread_reads_the_pass_camera_s_newest_frame(engine: ScriptedPlates) -> None:
    plates = source(region=(0, 0, 640, 360))
    engine.show("沪A12345")
    stop, got = threading.Event(), threading.Event()
    put: list[object] = []
    clock = iter(float(i) for i in range(1_000_000))

    def latest() -> tuple[np.ndarray, float]:
        return FRAME, next(clock)

    def collect(item: object) -> None:
        put.append(item)
        got.set()

    thread = threading.Thread(target=plates.run, args=(collect, lambda: 0.0, stop, latest))
    thread.start()
    try:
        assert got.wait(10.0)
    finally:
        stop.set()
        thread.join(5.0)
    assert not thread.is_alive()
    assert isinstance(put[0], IdentitySeen) and put[0].reads == ("沪A12345",)
