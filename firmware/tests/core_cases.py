"""Firmware core tests that run unchanged under CPython (pytest) and the MicroPython unix port
(run_core.py): COBS, CRC, the link codec, golden vectors, the interlock and the controller."""

import json

import cobs
import controller
import interlock as il
import link
from crc16 import crc16
from fw_rig import PERIOD, Rig

try:
    _HERE = __file__.rsplit("/", 1)[0]
except NameError:
    _HERE = "."
VECTORS = _HERE + "/../vectors/link_vectors.json"


def _vectors():
    with open(VECTORS) as f:
        return json.load(f)


def _lcg(seed):
    state = [seed]

    def nxt(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return state[0] % n

    return nxt


def _feed(rx, data):
    found = []
    for b in data:
        n = rx.push(b)
        if n:
            found.append(bytes(rx.frame[:n]))
    return found


# ---- CRC and COBS ----
def test_crc_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_cobs_known_encodings():
    assert cobs.encode(b"") == b"\x01"
    assert cobs.encode(b"\x00") == b"\x01\x01"
    assert cobs.encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs.encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255)) + b"\x01"


def test_cobs_round_trip_random():
    rnd = _lcg(7)
    for length in (0, 1, 2, 253, 254, 255, 256, 300, 600):
        for _ in range(3):
            data = bytes(rnd(4) and rnd(256) for _ in range(length))
            enc = cobs.encode(data)
            assert 0 not in enc
            assert len(enc) <= length + length // 254 + 1
            assert cobs.decode(enc) == data


def test_cobs_rejects_bad_input():
    assert cobs.decode(b"\x05\x01\x02") is None  # code runs past the end
    assert cobs.decode(b"\x03\x01\x00") is None  # zero inside
    assert cobs.decode_into(b"\x04\x01\x02\x03", 4, bytearray(2)) == -1  # no room


# ---- link ----
def test_frame_round_trip_and_counters():
    rx = link.Receiver()
    wire = link.encode_frame(link.T_OPEN, 5, 9, b"\x00\x01\x02\x03")
    frames = _feed(rx, wire)
    assert frames == [bytes((1, link.T_OPEN, 5, 9, 0, 1, 2, 3)) + wire_crc(wire)]
    assert rx.frames == 1 and rx.errors() == 0


def wire_crc(wire):
    raw = cobs.decode(wire[:-1])
    return raw[-2:]


def test_back_to_back_frames_and_leading_delimiters():
    rx = link.Receiver()
    a = link.encode_frame(link.T_HEARTBEAT, 0, 0, b"\x00\x00\x00\x01")
    b = link.encode_frame(link.T_CLOSE_WHEN_CLEAR, 1, 0, b"\xff" * 4)
    frames = _feed(rx, b"\x00\x00" + a + b + b"\x00")
    assert [f[1] for f in frames] == [link.T_HEARTBEAT, link.T_CLOSE_WHEN_CLEAR]
    assert rx.errors() == 0


def test_every_single_byte_corruption_is_caught():
    wire = link.encode_frame(link.T_OPEN, 3, 0, b"\x00\x00\x07\xd0")
    for i in range(len(wire) - 1):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(wire)
            bad[i] ^= flip
            rx = link.Receiver()
            frames = _feed(rx, bytes(bad) + wire)
            # The corrupted frame is dropped (or split at an injected 0x00) and counted;
            # the intact copy after it always decodes.
            assert frames[-1] == cobs.decode(wire[:-1]), (i, flip)
            assert len(frames) == 1 and rx.errors() >= 1, (i, flip)


def test_garbage_and_oversize_resync():
    rx = link.Receiver()
    good = link.encode_frame(link.T_HEARTBEAT, 0, 0, b"\x00\x00\x00\x05")
    frames = _feed(rx, b"\x01" * 600 + b"\x00" + b"\x13\x37\x00" + good)
    assert len(frames) == 1
    assert rx.err_size >= 1 and rx.errors() >= 2


def test_payload_limit():
    link.encode_frame(link.T_STATE, 0, 0, b"\x01" * link.MAX_PAYLOAD)
    try:
        link.encode_frame(link.T_STATE, 0, 0, b"\x01" * (link.MAX_PAYLOAD + 1))
    except ValueError:
        return
    raise AssertionError("oversized payload accepted")


def test_largest_frame_decodes():
    rx = link.Receiver()
    wire = link.encode_frame(link.T_STATE, 1, 2, bytes(range(1, 241)))
    assert len(_feed(rx, wire)) == 1


# ---- golden vectors ----
def test_golden_vectors_encode_and_decode():
    doc = _vectors()
    assert doc["names"]["inputs"] == list(il.INPUT_NAMES)
    assert doc["names"]["outputs"] == list(il.OUTPUT_NAMES)
    assert doc["names"]["barrier_states"] == list(il.STATE_NAMES)
    assert doc["names"]["faults"] == list(il.FAULT_NAMES)
    assert doc["names"]["flags"] == list(il.FLAG_NAMES)
    assert doc["names"]["results"] == list(il.RESULT_NAMES)
    for name, number in doc["types"].items():  # every PROTOCOL.md name is a T_ constant
        const = "T_" + name.upper()
        module = link if hasattr(link, const) else controller
        assert getattr(module, const, None) == number, const
    for v in doc["frames"]:
        payload = bytes.fromhex(v["payload"])
        wire = bytes.fromhex(v["wire"])
        assert link.encode_frame(v["type"], v["seq"], v["ack"], payload) == wire, v["name"]
        rx = link.Receiver()
        frames = _feed(rx, wire)
        assert len(frames) == 1, v["name"]
        f = frames[0]
        assert (f[1], f[2], f[3], f[4:-2], f[-2:]) == (
            v["type"], v["seq"], v["ack"], payload, bytes.fromhex(v["crc"])), v["name"]
    for g in doc["garbage"]:
        rx = link.Receiver()
        assert _feed(rx, bytes.fromhex(g["wire"])) == [], g["name"]
        assert getattr(rx, "err_" + g["error"]) == 1, g["name"]


def test_state_vector_matches_the_controller_layout():
    import struct

    from controller import STATE_FMT

    doc = _vectors()
    v = [f for f in doc["frames"] if f["name"] == "snapshot"][0]
    fields = struct.unpack(STATE_FMT, bytes.fromhex(v["payload"]))
    m = v["meaning"]
    names = doc["names"]
    assert fields[0] == sum(1 << names["inputs"].index(n) for n in m["inputs"])
    assert names["barrier_states"][fields[2]] == m["barrier"]
    assert fields[5:] == (m["uptime_ms"], m["loop_max_us"], m["last_command"])


def test_output_pulse_vectors_get_their_answers():
    doc = _vectors()
    cases = [v for v in doc["frames"] if v["type"] == controller.T_OUTPUT_PULSE]
    assert len(cases) >= 2 and {v["answer"] for v in cases} == {"ok", "bad_request"}
    r = Rig()
    r.host_ms = 1000  # the vectors' deadline (3000) lies ahead of the host clock after boot
    r.boot()
    for v in cases:
        before = (r.ctl.pulse_bits, r.ctl.pulse_until)
        r.send_host(v["type"], v["seq"], bytes.fromhex(v["payload"]))
        assert r.results.get(v["seq"]) == v["answer"], v["name"]
        if v["answer"] == "ok":
            bit = il.OUTPUT_NAMES.index(v["meaning"]["output"])
            assert r.ctl.outputs(r.now) & (1 << bit), v["name"]
        else:
            assert (r.ctl.pulse_bits, r.ctl.pulse_until) == before, v["name"]


def _pulse(r, output, ms, **kw):
    bit = il.OUTPUT_NAMES.index(output)
    return r.command(controller.T_OUTPUT_PULSE, extra=bytes((bit,)) + ms.to_bytes(2, "big"), **kw)


def _reported_outputs(r):
    """The outputs byte of the latest STATE or SNAPSHOT frame the board sent."""
    for ftype, _seq, _ack, payload in reversed(r.frames):
        if ftype in (link.T_STATE, link.T_SNAPSHOT):
            return payload[2]
    raise AssertionError("no state frame")


def test_pulse_drives_the_output_for_its_duration_then_reports_the_end():
    r = Rig()
    r.boot()
    assert not _reported_outputs(r) & il.O_BUZZER
    assert _pulse(r, "buzzer", 300) == "ok"
    r.step()
    assert r.ctl.outputs(r.now) & il.O_BUZZER and _reported_outputs(r) & il.O_BUZZER
    assert not r.outputs & il.O_BUZZER  # the interlock's own outputs are untouched
    r.run(280)
    assert r.ctl.outputs(r.now) & il.O_BUZZER
    assert r.run_until(lambda: not r.ctl.outputs(r.now) & il.O_BUZZER, 30)
    r.step()
    assert not _reported_outputs(r) & il.O_BUZZER  # reported at once, not at the next snapshot


def test_red_pulse_darkens_green_and_a_new_pulse_replaces_the_running_one():
    r = Rig()
    r.boot()
    r.open()
    r.run_until(lambda: r.state == "open")
    r.run(10)
    assert r.ctl.outputs(r.now) & il.O_GREEN
    assert _pulse(r, "light_red", 5000) == "ok"
    r.step()
    out = r.ctl.outputs(r.now)
    assert out & il.O_RED and not out & il.O_GREEN
    assert _pulse(r, "light_red", 100) == "ok"  # replaces the 5 s pulse
    r.run(150)
    out = r.ctl.outputs(r.now)
    assert out & il.O_GREEN and not out & il.O_RED
    assert r.state == "open"  # a pulse never moves the barrier


def test_pulse_follows_the_readiness_rules():
    r = Rig()
    r.run(150, heartbeat=False)
    assert _pulse(r, "buzzer", 100) == "not_ready"  # no handshake yet
    r.hello()
    r.run(50)
    r.both_limits = True
    r.run(30)
    assert r.state == "fault"
    assert _pulse(r, "buzzer", 100) == "fault"
    assert _pulse(r, "buzzer", 100, valid_ms=-5) == "expired"
    assert not r.ctl.outputs(r.now) & il.O_BUZZER


# ---- interlock and controller, through the rig (S1-S9 checked at every step) ----
def test_s1_nothing_moves_before_the_handshake():
    r = Rig()
    assert r.open() == "not_ready"
    r.run(2000, heartbeat=False)
    assert r.state == "wait_host"
    assert r.outputs == il.O_RED
    r.hello()
    r.run(20)
    assert r.state == "closed"


def test_s1_self_check_fails_on_both_limits():
    r = Rig()
    r.both_limits = True
    r.boot()
    assert r.state == "fault"
    assert r.lock.faults & il.F_SELF_CHECK
    assert r.open() == "fault"


def test_open_drives_to_the_limit_then_green():
    r = Rig()
    r.boot()
    assert r.open() == "ok"
    assert r.state == "opening"
    assert r.run_until(lambda: r.state == "open", 2000)
    r.run(10)
    assert r.outputs & il.O_GREEN and not r.outputs & (il.O_OPEN | il.O_CLOSE)


def test_auto_close_after_passage_waits_t_clear():
    r = Rig(t_clear=500)
    r.boot()
    r.open()
    r.run_until(lambda: r.state == "open")
    r.pass_vehicle()
    assert not r.outputs & il.O_GREEN  # red as soon as the vehicle is under the arm
    r.run(480)
    assert r.state == "open"  # clear has not held t_clear yet
    assert r.run_until(lambda: r.state == "closing", 100)
    assert r.run_until(lambda: r.state == "closed", 2000)
    assert r.outputs == il.O_RED


def test_no_auto_close_without_passage():
    r = Rig()
    r.boot()
    r.open()
    r.run(5000)
    assert r.state == "open"


def test_close_when_clear_is_pending_while_occupied():
    r = Rig()
    r.boot()
    r.open()
    r.run_until(lambda: r.state == "open")
    r.loop_a = True
    r.step()
    assert r.close() == "pending"
    r.run(3000)
    assert r.state == "open" and not r.outputs & il.O_CLOSE
    r.loop_a = False
    assert r.run_until(lambda: r.state == "closed", 3000)


def test_s3_obstruction_while_closing_reopens_then_closes_again():
    r = Rig()
    r.boot()
    r.open()
    r.close_behind_vehicle()
    r.run(300)
    r.photo = True
    r.step()
    assert not r.outputs & il.O_CLOSE  # stopped on the first sample
    assert r.state == "opening"
    r.run(400)
    assert r.outputs & il.O_OPEN
    r.photo = False
    assert r.run_until(lambda: r.state == "open", 2000)
    assert r.run_until(lambda: r.state == "closed", 3000)


def test_s5_travel_timeout_faults():
    r = Rig()
    r.boot()
    r.arm_stuck = True
    r.open()
    assert r.run_until(lambda: r.state == "fault", 5000)
    assert r.lock.faults & il.F_OPEN_TIMEOUT
    assert r.outputs == il.O_RED
    r.arm_stuck = False
    assert r.command(link.T_CLEAR_FAULT) == "ok"
    r.run(20)
    assert r.state == "closed"


def test_s5_both_limits_fault_latches():
    r = Rig()
    r.boot()
    r.both_limits = True
    r.run(30)
    assert r.state == "fault" and r.lock.faults & il.F_BOTH_LIMITS
    assert r.command(link.T_CLEAR_FAULT) == "fault"  # cause still present
    r.both_limits = False
    r.run(20)
    assert r.command(link.T_CLEAR_FAULT) == "ok"


def test_s6_reversal_waits_the_dead_time():
    r = Rig(dead=200)
    r.boot()
    r.open()
    r.run_until(lambda: r.state == "open")
    r.pass_vehicle()
    r.run_until(lambda: r.outputs & il.O_CLOSE)
    r.run(100)
    r.loop_a = True
    r.step()
    assert r.outputs & (il.O_OPEN | il.O_CLOSE) == 0
    r.run(180)
    assert not r.outputs & il.O_OPEN  # still inside the dead time
    assert r.run_until(lambda: r.outputs & il.O_OPEN, 40)


def test_s8_link_loss_red_and_no_close():
    r = Rig()
    r.boot()
    r.open()
    r.run_until(lambda: r.state == "open")
    r.run(100)
    assert r.outputs & il.O_GREEN
    r.run(1100, heartbeat=False)
    assert r.outputs & il.O_RED
    r.loop_b = True  # a vehicle passes while the host is silent
    r.run(300, heartbeat=False)
    r.loop_b = False
    r.run(2000, heartbeat=False)
    assert r.state == "open"  # never closes by itself on link loss
    r.run(2000)
    assert r.state == "open"  # nor when the host comes back: it must ask


def test_s8_link_loss_drops_pending_close():
    r = Rig()
    r.boot()
    r.open()
    r.run_until(lambda: r.state == "open")
    r.loop_a = True
    r.step()
    assert r.close() == "pending"
    r.run(1200, heartbeat=False)
    r.loop_a = False
    r.run(1500)  # heartbeats again, but the close was dropped with the link
    assert r.state == "open"
    assert r.close() == "ok"
    assert r.run_until(lambda: r.state == "closed", 3000)


def test_s2_stale_inputs_count_as_occupied():
    r = Rig()
    r.boot()
    r.open()
    r.close_behind_vehicle()
    r.stale = True
    r.run(60)
    assert r.state == "opening" and r.lock.faults & il.F_STALE
    r.stale = False
    assert r.run_until(lambda: r.state == "closed", 4000)


def test_duplicate_command_is_answered_not_rerun():
    r = Rig()
    r.boot()
    assert r.open() == "ok"
    seq = r.host_seq
    r.close_behind_vehicle()
    assert r.open(seq=seq) == "ok"  # retransmission: same answer...
    assert r.state == "closing"  # ...and the barrier is not reopened


def test_stale_and_expired_commands_rejected():
    r = Rig()
    r.boot()
    assert r.open() == "ok"
    r.run(1000)
    for _ in range(9):  # push the first seq out of the duplicate history
        r.close()
    assert r.open(seq=1) == "stale"
    assert r.open(valid_ms=-5) == "expired"
    assert r.open(valid_ms=120000) == "bad_request"
    assert r.command(0x55) == "unknown_type"


def test_config_bounds():
    r = Rig()
    r.boot()
    r.host_seq += 1
    r.send_host(link.T_CONFIG, r.host_seq, bytes((0x03, 0x20, 0x0B, 0xB8, 0x00, 0x64)))
    assert r.lock.t_clear_ms == 800 and r.lock.travel_ms == 3000 and r.lock.dead_ms == 100
    r.host_seq += 1
    r.send_host(link.T_CONFIG, r.host_seq, bytes((0, 0, 0, 0, 0, 0)))
    assert r.lock.t_clear_ms == 800


def test_snapshots_every_200ms_and_events_on_change():
    r = Rig()
    r.boot()
    start = len(r.frames)
    r.run(1000)
    snaps = [f for f in r.frames[start:] if f[0] == link.T_SNAPSHOT]
    assert 4 <= len(snaps) <= 6
    start = len(r.frames)
    r.loop_a = True
    r.step()
    events = [f for f in r.frames[start:] if f[0] == link.T_STATE]
    assert events and events[-1][3][1] & il.I_LOOP_A


def test_ticks_wrap_is_crossed():
    r = Rig(start=PERIOD - 100)
    r.boot()
    assert r.now < 1000  # the tick counter wrapped during boot
    r.open()
    assert r.run_until(lambda: r.state == "open", 2000)


def test_random_walk_keeps_every_invariant():
    from fw_rig import random_walk

    visited = set()
    steps = 0
    for seed in (1, 2, 3):
        rig, states = random_walk(seed=seed, steps=4000)
        visited |= states
        steps += 4000
        assert rig.elapsed >= 4000 * 5
    assert steps >= 10000
    # The walks reached the interesting states, so the checks were exercised there.
    for state in ("closed", "opening", "open", "closing", "stopped", "fault", "maintenance"):
        assert state in visited, (state, visited)
