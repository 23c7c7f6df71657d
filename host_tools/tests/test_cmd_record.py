"""``lanectl record`` and ``lanectl version`` on real logs written by RecordStore."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent import __version__
from edge_agent.protocols import gp1
from edge_agent.records import LOG_NAME
from edge_agent.records.codec import public_key_text, split_frames
from edge_agent.records.segments import all_segments
from edge_agent.records.software import software_id
from edge_agent.records.tests.sample_log import write_log
from host_tools.lanectl import main

Capture = pytest.CaptureFixture[str]
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


@pytest.fixture
def lane(tmp_path: Path) -> Path:
    """A state dir whose log has 5 transits and a config change (one segment)."""
    return write_log(tmp_path / "state", KEY)


@pytest.fixture
def segmented(tmp_path: Path) -> Path:
    return write_log(tmp_path / "seg", KEY, transits=6, segment_bytes=1500)


def run(capsys: Capture, *args: str) -> tuple[int, str, str]:
    code = main(["record", *args])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out, out.err


def last_hash(capsys: Capture, where: Path) -> str:
    code, out, _ = run(capsys, "verify", "--state-dir", str(where), "--json")
    assert code == 0
    return str(json.loads(out)["last"]["hash"])


# -- show --------------------------------------------------------------------------------------
def test_show_lists_every_record(lane: Path, capsys: Capture) -> None:
    code, out, _ = run(capsys, "show", "--state-dir", str(lane))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 1 + 7
    assert lines[2].split()[:3] == ["0", "1", "transit"]
    assert "2026-12-03 13:14:58 UTC" in lines[2] and "indicator_kg=32480.0" in lines[2]
    assert "decision=open" in lines[2] and "config_change" in lines[-1]


def test_show_json_last_and_seq(lane: Path, capsys: Capture) -> None:
    code, out, _ = run(capsys, "show", "--state-dir", str(lane), "--last", "2", "--json")
    records = json.loads(out)["records"]
    assert code == 0 and [r["seq"] for r in records] == [5, 6]
    code, out, _ = run(capsys, "show", str(lane), "--seq", "3", "--json")
    (rec,) = json.loads(out)["records"]
    assert code == 0 and rec["seq"] == 3 and rec["body"]["release_no"] == "R-2026-0002"
    code, out, _ = run(capsys, "show", str(lane), "--seq", "3")
    assert code == 0 and "R-2026-0002" in out and "2026-12-03 13:16:58 UTC" in out


def test_show_a_missing_seq_is_a_clear_error(lane: Path, capsys: Capture) -> None:
    code, _, err = run(capsys, "show", str(lane), "--seq", "99")
    assert code == 2 and "has no record 99" in err


def test_show_counts_seq_in_a_segment(segmented: Path, capsys: Capture) -> None:
    code, out, _ = run(capsys, "show", str(segmented), "--segment", "1", "--json")
    records = json.loads(out)["records"]
    assert code == 0 and records and {r["segment"] for r in records} == {1}
    assert records[0]["kind"] == "header"


# -- verify ------------------------------------------------------------------------------------
def test_verify_an_intact_log(lane: Path, capsys: Capture) -> None:
    code, out, _ = run(capsys, "verify", "--state-dir", str(lane))
    assert code == 0 and "intact: 7 records in 1 segment(s)" in out and "not pinned" in out


def test_verify_names_the_edited_record(lane: Path, capsys: Capture) -> None:
    log = lane / LOG_NAME
    data = bytearray(log.read_bytes())
    third = split_frames(bytes(data)).frames[3].offset
    data[third + 40] ^= 0x04
    log.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", "--state-dir", str(lane))
    assert code == 1 and "NOT INTACT" in out and "record 3 (byte" in out
    assert "3 records before it verify" in out


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_verify_fails_for_any_changed_byte_of_any_segment(segmented: Path, capsys: Capture,
                                                          data: st.DataObject) -> None:
    paths = all_segments(segmented)
    path = data.draw(st.sampled_from(paths), label="segment")
    original = path.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    changed = bytearray(original)
    changed[position] ^= data.draw(st.integers(1, 255), label="xor")
    path.write_bytes(bytes(changed))
    try:
        code, out, _ = run(capsys, "verify", str(segmented), "--json")
    finally:
        path.write_bytes(original)
    verdict = json.loads(out)
    assert code == 1 and not verdict["ok"] and verdict["bad_segment"] == path.name


def test_verify_a_deleted_or_reordered_segment(segmented: Path, capsys: Capture) -> None:
    paths = all_segments(segmented)
    middle = paths[1].read_bytes()
    paths[1].unlink()
    code, out, _ = run(capsys, "verify", str(segmented))
    assert code == 1 and paths[2].name in out and "follows segment" in out
    paths[1].write_bytes(paths[2].read_bytes())
    paths[2].write_bytes(middle)  # two segments' contents swapped under their names
    code, out, _ = run(capsys, "verify", str(segmented))
    assert code == 1 and "file name" in out


def test_verify_truncated_log(lane: Path, capsys: Capture) -> None:
    known = last_hash(capsys, lane)
    log = lane / LOG_NAME
    data = log.read_bytes()
    log.write_bytes(data[:-10])  # a torn tail
    code, out, _ = run(capsys, "verify", str(lane))
    assert code == 1 and "torn tail" in out
    whole = split_frames(data).frames
    log.write_bytes(data[: whole[-1].offset])  # the last record cut off whole
    assert run(capsys, "verify", str(lane))[0] == 0
    code, out, _ = run(capsys, "verify", str(lane), "--known", known[:16])
    assert code == 1 and "is not in the log" in out


def test_verify_pins_the_lane_key(lane: Path, tmp_path: Path, capsys: Capture) -> None:
    pem = tmp_path / "lane.pem"
    pem.write_bytes(KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    code, out, _ = run(capsys, "verify", str(lane), "--pubkey", str(pem))
    assert code == 0 and "(pinned)" in out
    foreign = public_key_text(Ed25519PrivateKey.generate().public_key())
    code, out, _ = run(capsys, "verify", str(lane), "--pubkey", foreign)
    assert code == 1 and "record 0" in out and "foreign" in out


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"just some text\n", b"GR\x00"])
def test_a_corrupt_file_is_exit_1_with_a_reason(tmp_path: Path, capsys: Capture,
                                                content: bytes) -> None:  # fmt: skip
    bad = tmp_path / "records.log"
    bad.write_bytes(content)
    code, out, _ = run(capsys, "verify", str(bad))
    assert code == 1 and "NOT INTACT" in out


@pytest.mark.parametrize("action", ["show", "verify", "export --output x.jsonl", "ticket --seq 1"])
def test_a_missing_log_is_exit_2_and_one_line(tmp_path: Path, capsys: Capture,
                                              action: str) -> None:  # fmt: skip
    name, *rest = action.split()
    code, _, err = run(capsys, name, *rest, "--state-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, name, *rest, "--state-dir", str(tmp_path))
    assert code == 2 and "no transaction log here" in err


def test_an_unreadable_log_is_exit_2(lane: Path, capsys: Capture,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    code, _, err = run(capsys, "verify", str(lane / LOG_NAME))
    assert code == 2 and "permission denied" in err


def test_bad_arguments_are_exit_2(lane: Path, capsys: Capture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["record", "verify", str(lane), "--known", "abc"])
    assert stop.value.code == 2 and "hash" in capsys.readouterr().err
    code, _, err = run(capsys, "verify", str(lane), "--pubkey", "not-a-key")
    assert code == 2 and "PEM public key" in err
    code, _, err = run(capsys, "verify", str(lane), "--state-dir", str(lane))
    assert code == 2 and "not both" in err


def test_state_dir_from_the_config(lane: Path, tmp_path: Path, capsys: Capture) -> None:
    _key, trust = gp1.write_keypair(tmp_path / "keys", "ed25519")
    config = tmp_path / "agent.toml"
    config.write_text(f'[lane]\nsite = "BZ01"\nlane = "L3"\ngate = "G3"\nstate_dir = "{lane}"\n\n'
                      '[io_board]\nurl = "fake-ioboard://x"\n\n[weighbridge]\n'
                      'url = "fake-indicator://x"\nprotocol = "yaohua-tf0"\nmax_kg = 60000\n'
                      'e_kg = 20\n\n[camera]\nsource = "fake-camera://x"\n\n[passes]\n'
                      f'trust_list = "{trust}"\n\n[mqtt]\nbroker = "mqtt://127.0.0.1:9"\n'
                      'lab = true\n')  # fmt: skip
    code, out, _ = run(capsys, "verify", "--config", str(config))
    assert code == 0 and str(lane) in out


# -- export ------------------------------------------------------------------------------------
def test_export_jsonl_verifies_offline(segmented: Path, tmp_path: Path, capsys: Capture) -> None:
    out_file = tmp_path / "lane.jsonl"
    code, out, _ = run(capsys, "export", str(segmented), "--output", str(out_file))
    assert code == 0 and "as jsonl" in out
    lines = out_file.read_bytes().splitlines()
    assert all(json.loads(line)["hash"] for line in lines)
    assert run(capsys, "verify", str(out_file))[0] == 0
    lines[3] = lines[3].replace(b'"decision":"open"', b'"decision":"hold"')
    out_file.write_bytes(b"\n".join(lines) + b"\n")
    code, out, _ = run(capsys, "verify", str(out_file))
    assert code == 1 and "line 4" in out


def test_export_tar_has_the_raw_log_and_key(segmented: Path, tmp_path: Path,
                                            capsys: Capture) -> None:  # fmt: skip
    out_file = tmp_path / "lane.tar.gz"
    assert run(capsys, "export", str(segmented), "--output", str(out_file))[0] == 0
    with tarfile.open(out_file) as archive:
        names = archive.getnames()
        key_pem = archive.extractfile("public-key.pem").read()  # type: ignore[union-attr]
        log = archive.extractfile(LOG_NAME).read()  # type: ignore[union-attr]
    assert {p.name for p in all_segments(segmented)} <= set(names) and "verdict.json" in names
    assert log == (segmented / LOG_NAME).read_bytes()
    pem = tmp_path / "key.pem"
    pem.write_bytes(key_pem)
    code, out, _ = run(capsys, "verify", str(out_file), "--pubkey", str(pem))
    assert code == 0 and "(pinned)" in out


def test_export_refuses_to_overwrite(lane: Path, tmp_path: Path, capsys: Capture) -> None:
    target = tmp_path / "x.jsonl"
    target.write_text("keep me")
    code, _, err = run(capsys, "export", str(lane), "--output", str(target))
    assert code == 2 and "--force" in err and target.read_text() == "keep me"
    assert run(capsys, "export", str(lane), "--output", str(target), "--force")[0] == 0


def test_export_of_a_broken_log_says_so(lane: Path, tmp_path: Path, capsys: Capture) -> None:
    log = lane / LOG_NAME
    data = bytearray(log.read_bytes())
    data[-30] ^= 1
    log.write_bytes(bytes(data))
    code, _, err = run(capsys, "export", str(lane), "--output", str(tmp_path / "x.tar"))
    assert code == 1 and "NOT INTACT" in err and "exported anyway" in err
    with tarfile.open(tmp_path / "x.tar") as archive:
        assert archive.extractfile(LOG_NAME).read() == bytes(data)  # type: ignore[union-attr]


# -- ticket ------------------------------------------------------------------------------------
def test_ticket_text(lane: Path, capsys: Capture) -> None:
    code, out, _ = run(capsys, "ticket", "--seq", "2", "--state-dir", str(lane))
    assert code == 0 and "WEIGHING TICKET" in out and "Gross     32 500 kg" in out
    assert "R-2026-0001" in out and "沪A12345" in out and "segment 0 seq 2" in out
    assert "Software  0.1.0" in out


def test_ticket_escpos_to_a_file(lane: Path, tmp_path: Path, capsys: Capture) -> None:
    target = tmp_path / "printer.bin"
    code, out, _ = run(capsys, "ticket", "--seq", "2", str(lane), "--format", "escpos",
                       "--output", str(target))  # fmt: skip
    printed = target.read_bytes()
    assert code == 0 and out == ""
    assert printed.startswith(b"\x1b@") and printed.endswith(b"\x1dV\x01")
    assert "沪A12345".encode("gb18030") in printed


def test_ticket_hash_is_the_known_record(lane: Path, capsys: Capture) -> None:
    code, out, _ = run(capsys, "ticket", "--seq", "2", str(lane), "--json")
    ticket = json.loads(out)
    assert code == 0 and ticket["seq"] == 2
    grouped = next(line for line in ticket["lines"] if line.startswith("Hash"))
    assert run(capsys, "verify", str(lane), "--known", grouped.removeprefix("Hash"))[0] == 0


@pytest.mark.parametrize(("seq", "message"), [("0", "only a transit"), ("6", "only a transit"),
                                              ("40", "has no record 40")])
def test_ticket_refusals(lane: Path, capsys: Capture, seq: str, message: str) -> None:  # fmt: skip
    code, _, err = run(capsys, "ticket", "--seq", seq, str(lane))
    assert code == 2 and message in err


def test_ticket_after_the_fault_is_refused(lane: Path, capsys: Capture) -> None:
    log = lane / LOG_NAME
    data = bytearray(log.read_bytes())
    data[split_frames(bytes(data)).frames[3].offset + 50] ^= 1
    log.write_bytes(bytes(data))
    code, _, err = run(capsys, "ticket", "--seq", "4", str(lane))
    assert code == 1 and "NOT INTACT" in err
    code, out, err = run(capsys, "ticket", "--seq", "2", str(lane))
    assert code == 0 and "WEIGHING TICKET" in out and "comes before the fault" in err


# -- version -----------------------------------------------------------------------------------
def test_version_adds_the_software_id(capsys: Capture) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"lanectl {__version__}"
    assert software_id()["sha256"] in out[1]
    assert main(["version", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["software_id"] == software_id() and "edge_agent/weighing" in doc["modules"]


def test_export_to_stdout_is_the_tarball(lane: Path, capsys: Capture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    sink = io.BytesIO()

    class Stdout(io.TextIOWrapper):
        pass

    fake = Stdout(sink)
    monkeypatch.setattr("sys.stdout", fake)
    assert main(["record", "export", str(lane), "--output", "-", "--format", "tar"]) == 0
    fake.flush()
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue())) as archive:
        assert LOG_NAME in archive.getnames()


def test_show_and_ticket_default_to_the_newest_segment(segmented: Path, capsys: Capture) -> None:
    code, out, _ = run(capsys, "show", str(segmented), "--seq", "0", "--json")
    (header,) = json.loads(out)["records"]
    newest = max(int(p.stem[8:]) for p in all_segments(segmented) if p.name != LOG_NAME) + 1
    assert code == 0 and header["segment"] == newest == header["body"]["segment"]
    code, _, err = run(capsys, "show", str(segmented), "--segment", "99")
    assert code == 2 and "no segment 99" in err
    code, out, _ = run(capsys, "ticket", "--seq", "1", "--segment", "1", str(segmented))
    assert code == 0 and "segment 1 seq 1" in out


def test_an_append_in_flight_is_read_again_not_reported(lane: Path, capsys: Capture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    log = lane / LOG_NAME
    whole = log.read_bytes()
    log.write_bytes(whole[:-100])  # the agent is half way through writing the last frame

    def the_write_lands(_seconds: float) -> None:
        log.write_bytes(whole)

    monkeypatch.setattr("host_tools.record_source.time.sleep", the_write_lands)
    code, out, _ = run(capsys, "verify", str(lane))
    assert code == 0 and "intact: 7 records" in out
