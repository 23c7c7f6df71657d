"""``lanectl weigh``: the decode and analyze output contracts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.protocols.indicators import PROTOCOLS, IndicatorReading, make_encoder
from host_tools import lanectl as lanectl_main
from simulators.weight_dynamics import generate_truck_trace


def lanectl(argv: list[str], *, as_json: bool = True) -> int:
    return lanectl_main.main([*argv, "--json"] if as_json else argv)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_trace(path: Path, seed: int, fault: str = "clean", beams: bool = True) -> None:
    trace = generate_truck_trace(seed, fault=fault)
    with path.open("w") as f:
        f.write("t_s,kg,front_clear,rear_clear\n" if beams else "t_s,kg\n")
        for t, kg, front, rear in trace.rows():
            f.write(f"{t:.3f},{kg:g},{front},{rear}\n" if beams else f"{t:.3f},{kg:g}\n")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_decode_prints_one_object_per_frame_or_error(protocol, tmp_path, capsys):
    encoder = make_encoder(protocol)
    data = (b"noise" + encoder.encode(IndicatorReading(1560.0, False))
            + encoder.encode(IndicatorReading(20.0, False)))
    capture = tmp_path / "capture.bin"
    capture.write_bytes(data)
    assert lanectl(["weigh", "decode", "--protocol", protocol, str(capture)]) == 0
    lines = json_lines(capsys.readouterr().out)
    readings = [line["kg"] for line in lines if line["type"] == "reading"]
    assert readings == [1560.0, 20.0]
    assert all(set(line) >= {"type", "raw"} for line in lines)


def test_decode_hex_input(tmp_path, capsys):
    capture = tmp_path / "capture.hex"
    capture.write_text("02 2B 30 30 31 35 36 30 30 31 39 03\n")
    assert lanectl(["weigh", "decode", "--protocol", "yaohua-tf0", "--hex", str(capture)]) == 0
    assert json_lines(capsys.readouterr().out)[0]["kg"] == 1560.0


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), protocol=st.sampled_from(PROTOCOLS))
def test_decode_never_crashes(tmp_path, capsys, data, protocol):
    capture = tmp_path / "random.bin"
    capture.write_bytes(data)
    assert lanectl(["weigh", "decode", "--protocol", protocol, str(capture)]) == 0
    json_lines(capsys.readouterr().out)


def test_decode_missing_file_is_exit_2(capsys):
    assert lanectl(["weigh", "decode", "--protocol", "toledo", "/nonexistent/x.bin"],
                   as_json=False) == 2
    assert "cannot read" in capsys.readouterr().err


def test_analyze_clean_trace(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    write_trace(trace, 5)
    truth = generate_truck_trace(5)
    assert lanectl(["weigh", "analyze", str(trace),
                    "--declared-kg", str(round(truth.truth_kg))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"decision", "weight_kg", "uncertainty_kg", "decided_at_s",
                        "abnormalities"}
    assert out["decision"] == "ok"
    assert abs(out["weight_kg"] - truth.truth_kg) <= 20
    assert out["decided_at_s"] >= truth.stop_at


def test_analyze_names_a_late_abnormality_and_holds(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    write_trace(trace, 2, fault="person", beams=False)
    assert lanectl(["weigh", "analyze", str(trace)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "hold"
    codes = [a["code"] for a in out["abnormalities"]]
    assert "weight.step_while_stationary" in codes
    late = next(a for a in out["abnormalities"] if a["code"] == "weight.step_while_stationary")
    assert late["at_s"] > out["decided_at_s"] and late["detail"]


def test_analyze_declared_mismatch(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    write_trace(trace, 5)
    truth = generate_truck_trace(5).truth_kg
    assert lanectl(["weigh", "analyze", str(trace), "--declared-kg", str(round(truth * 1.1)),
                    "--tolerance-kg", "200"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "hold"
    assert [a["code"] for a in out["abnormalities"]] == ["weight.declared_mismatch"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("t_s,kg\n0,1\n0.1,abc\n", "line 3"), ("t_s,kg\n1,0\n0.5,0\n", "backwards"),
     ("t_s,kg,front_clear,rear_clear\n0,0,1,2\n", "rear_clear"), ("", "no samples")],
)
def test_analyze_bad_trace_is_exit_2(tmp_path, capsys, content, message):
    trace = tmp_path / "bad.csv"
    trace.write_text(content)
    assert lanectl(["weigh", "analyze", str(trace)], as_json=False) == 2
    assert message in capsys.readouterr().err


def test_plot_writes_a_png(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    write_trace(trace, 1)
    out = tmp_path / "plot.png"
    assert lanectl(["weigh", "plot", str(trace), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert json.loads(capsys.readouterr().out)["decision"] == "ok"


def test_detect_finds_the_simulated_indicator(capsys):
    from simulators.weighbridge import WeighbridgeSim

    sim = WeighbridgeSim("ad-ascii", rate_hz=40, load_fn=lambda now: 3000.0)
    sim.start()
    try:
        assert lanectl(["weigh", "detect", "--port", sim.port, "--seconds", "0.15"]) == 0
    finally:
        sim.stop()
    out = json.loads(capsys.readouterr().out)
    assert out["found"] and out["best"]["protocol"] == "ad-ascii"
    assert len(out["candidates"]) == 8


def test_verify_and_monitor_against_the_simulator(tmp_path, capsys):
    from simulators.weighbridge import WeighbridgeSim

    sim = WeighbridgeSim("yaohua-tf0", rate_hz=25, load_fn=lambda now: 10000.0, seed=4)
    sim.start()
    record = tmp_path / "rec.csv"
    try:
        code = lanectl(["weigh", "verify", "--port", sim.port, "--protocol", "yaohua-tf0",
                        "--reference-kg", "10000", "--seconds", "10"])
        verdict = json.loads(capsys.readouterr().out)
        assert lanectl(["weigh", "monitor", "--port", sim.port, "--protocol", "yaohua-tf0",
                        "--seconds", "0.5", "--record", str(record)]) == 0
    finally:
        sim.stop()
    assert code == 0 and verdict["ok"] and abs(verdict["error_e"]) <= 1
    lines = json_lines(capsys.readouterr().out)
    assert any(line.get("type") == "reading" for line in lines)
    assert record.read_text().startswith("t_s,kg\n") and os.path.getsize(record) > 20


def test_plain_output_is_for_people(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    write_trace(trace, 1)
    assert lanectl(["weigh", "analyze", str(trace)], as_json=False) == 0
    out = capsys.readouterr().out
    assert "decision" in out and "{" not in out
    capture = tmp_path / "cap.bin"
    capture.write_bytes(make_encoder("toledo").encode(IndicatorReading(12340.0, False)) + b"junk")
    assert lanectl(["weigh", "decode", "--protocol", "toledo", str(capture)], as_json=False) == 0
    assert "12340 kg" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["monitor", "verify"])
def test_a_dead_port_is_one_line_exit_2(command, capsys):
    extra = ["--reference-kg", "1"] if command == "verify" else []
    argv = ["weigh", command, "--port", "/dev/ttyUSB-gone", "--protocol", "sma", *extra]
    assert lanectl(argv, as_json=False) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(f"lanectl weigh {command}: cannot open '/dev/ttyUSB-gone'")


def test_a_bad_plot_path_is_one_line_exit_2(tmp_path, capsys):
    trace = tmp_path / "trace.csv"
    write_trace(trace, 1)
    assert lanectl(["weigh", "plot", str(trace), "--out", str(tmp_path / "no" / "p.png")],
                   as_json=False) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "cannot write the plot" in line
