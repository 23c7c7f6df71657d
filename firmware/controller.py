"""Host command handling and state reporting on top of the interlock.

Commands carry a sequence number and a deadline in the host's millisecond clock. The board
follows the host clock from HELLO and heartbeats (keeping the most advanced estimate, so a
delayed heartbeat cannot turn the clock back) and rejects a command whose deadline passed.
A duplicate (retransmission) gets its recorded result again and is not executed twice;
a sequence number behind the window is stale.

OUTPUT_PULSE lets a technician sound the buzzer or light the red lamp for a moment. Only
those two: both are the safe aspect, the barrier relays stay the interlock's alone, and
green keeps its S7 meaning (a red pulse darkens green rather than showing both).
"""

try:
    from micropython import const
except ImportError:
    def const(x):  # type: ignore[misc,no-redef]
        return x

import struct

import interlock as il
import link
from ticks import ticks_diff

PROTOCOL = const(1)
SNAPSHOT_MS = const(200)
HISTORY = const(8)  # remembered (seq, result) pairs for duplicates
MAX_AHEAD_MS = const(60000)  # a deadline further ahead than this is a bad request
STATE_FMT = ">HBBHBIIB"  # inputs outputs state faults flags uptime_ms loop_max_us last_seq
HELLO_ACK_FMT = ">BBIBBB8sI"  # proto reset_cause host_boot fw(3) manifest uptime_ms
T_OUTPUT_PULSE = const(0x15)  # host -> board (the other types are in link.py)
PULSE_OUTPUTS = const(0x14)  # light_red | buzzer: the outputs a pulse may switch on
PULSE_MIN_MS = const(10)
PULSE_MAX_MS = const(10000)


class Controller:
    def __init__(self, lock, send, now, diff=ticks_diff, reset_cause=0, fw=(0, 0, 0),
                 manifest=b"\x00" * 8):
        self.il = lock
        self.send = send  # send(frame_bytes) -> bool; must never block
        self.diff = diff
        self.reset_cause = reset_cause
        self.fw = fw
        self.manifest = manifest
        self.seq = 0
        self.last_cmd = 0
        self.hist_seq = bytearray(HISTORY)
        self.hist_code = bytearray(HISTORY)
        self.hist_len = 0
        self.hist_at = 0
        self.host_ms = 0
        self.host_tick = now
        self.host_clock = False
        self.host_boot = 0
        self.last_tick = now
        self.uptime_ms = 0
        self.snap_at = now
        self.loop_max_us = 0
        self._reported = -1
        self._reported2 = -1
        self.pulse_bits = 0
        self.pulse_until = now

    # ---- receive ----
    def on_frame(self, frame, n, now):
        """Handle one valid decoded frame (frame[:n] including CRC)."""
        ftype = frame[1]
        seq = frame[2]
        payload = memoryview(frame)[link.HEADER:n - 2]
        lock = self.il
        lock.host_seen(now)
        if ftype == link.T_HEARTBEAT:
            if len(payload) >= 4:
                self._host_time(struct.unpack_from(">I", payload, 0)[0], now)
            return
        if ftype == link.T_HELLO:
            if len(payload) < 9:
                return
            _, self.host_boot, host_ms = struct.unpack_from(">BII", payload, 0)
            self.host_clock = False
            self._host_time(host_ms, now)
            self.last_cmd = seq
            self.hist_len = 0
            lock.hello(now)
            self._send(link.T_HELLO_ACK, struct.pack(
                HELLO_ACK_FMT, PROTOCOL, self.reset_cause, self.host_boot,
                self.fw[0], self.fw[1], self.fw[2], self.manifest, self.uptime_ms), seq)
            self._reported = -1  # follow with a full state frame
            return
        # Everything else is a command with a sequence number.
        for i in range(self.hist_len):
            if self.hist_seq[i] == seq:
                self._result(seq, self.hist_code[i])  # retransmission: same answer, no re-run
                return
        if not lock.handshake:
            self._result(seq, il.R_NOT_READY)
            return
        if not 0 < ((seq - self.last_cmd) & 0xFF) < 128:
            self._result(seq, il.R_STALE)
            return
        code = self._execute(ftype, payload, now)
        if code == il.R_NOT_READY and ftype != link.T_MAINTENANCE:
            self._result(seq, code)  # not recorded: a retransmission may succeed later
            return
        self.last_cmd = seq
        self.hist_seq[self.hist_at] = seq
        self.hist_code[self.hist_at] = code
        self.hist_at = (self.hist_at + 1) % HISTORY
        if self.hist_len < HISTORY:
            self.hist_len += 1
        self._result(seq, code)

    def _execute(self, ftype, payload, now):
        lock = self.il
        if ftype == link.T_CONFIG:
            if len(payload) < 6:
                return il.R_BAD_REQUEST
            t_clear, travel, dead = struct.unpack_from(">HHH", payload, 0)
            return lock.configure(t_clear, travel, dead, now)
        if ftype not in (link.T_OPEN, link.T_CLOSE_WHEN_CLEAR, link.T_CLEAR_FAULT,
                         link.T_MAINTENANCE, T_OUTPUT_PULSE):
            return il.R_UNKNOWN
        if len(payload) < 4:
            return il.R_BAD_REQUEST
        if not self.host_clock or not lock.link:
            return il.R_NOT_READY
        left = self._host_left(struct.unpack_from(">I", payload, 0)[0], now)
        if left < 0:
            return il.R_EXPIRED
        if left > MAX_AHEAD_MS:
            return il.R_BAD_REQUEST
        if ftype == link.T_OPEN:
            return lock.request_open(now)
        if ftype == link.T_CLOSE_WHEN_CLEAR:
            return lock.request_close(now)
        if ftype == link.T_CLEAR_FAULT:
            return lock.clear_fault(now)
        if ftype == T_OUTPUT_PULSE:
            return self._pulse(payload, now)
        if len(payload) < 5:
            return il.R_BAD_REQUEST
        return lock.maintenance(payload[4], now)

    def _pulse(self, payload, now):
        if len(payload) < 7:
            return il.R_BAD_REQUEST
        index = payload[4]
        ms = struct.unpack_from(">H", payload, 5)[0]
        if index > 7 or not (1 << index) & PULSE_OUTPUTS or not PULSE_MIN_MS <= ms <= PULSE_MAX_MS:
            return il.R_BAD_REQUEST
        code = self.il._gate()  # the barrier commands' readiness rules
        if code != il.R_OK:
            return code
        self.pulse_bits = 1 << index
        self.pulse_until = now + ms
        return il.R_OK

    def _host_time(self, host_ms, now):
        if not self.host_clock or self._host_left(host_ms, now) > 0:
            self.host_ms = host_ms
            self.host_tick = now
            self.host_clock = True

    def _host_left(self, deadline_ms, now):
        """Milliseconds from the estimated host time to deadline_ms (32-bit wrap)."""
        est = (self.host_ms + self.diff(now, self.host_tick)) & 0xFFFFFFFF
        d = (deadline_ms - est) & 0xFFFFFFFF
        return d - 0x100000000 if d & 0x80000000 else d

    # ---- send ----
    def _send(self, ftype, payload, ack=None):
        self.send(link.encode_frame(ftype, self.seq, self.last_cmd if ack is None else ack,
                                    payload))
        self.seq = (self.seq + 1) & 0xFF

    def _result(self, seq, code):
        self._send(link.T_RESULT, bytes((seq, code, self.il.state)), seq)

    def _composed(self):
        out = self.il.outputs
        if self.pulse_bits:
            out |= self.pulse_bits
            if self.pulse_bits & il.O_RED:
                out &= ~il.O_GREEN
        return out

    def outputs(self, now):
        """The relays to drive: the interlock's, plus a pulse while it lasts."""
        if self.pulse_bits and self.diff(now, self.pulse_until) >= 0:
            self.pulse_bits = 0
        return self._composed()

    def _state_payload(self):
        lock = self.il
        return struct.pack(STATE_FMT, lock.inputs, self._composed(), lock.state, lock.faults,
                           lock.flags(), self.uptime_ms & 0xFFFFFFFF, self.loop_max_us,
                           self.last_cmd)

    def tick(self, now, loop_us=0):
        """After the interlock step: report changes at once, a full snapshot every 200 ms."""
        lock = self.il
        if self.host_clock and lock.handshake and not lock.link:
            self.host_clock = False  # a silent host's clock estimate is no longer trusted
        self.uptime_ms += self.diff(now, self.last_tick)
        self.last_tick = now
        if loop_us > self.loop_max_us:
            self.loop_max_us = loop_us
        # Two small ints (no long-int allocation on a 32-bit port).
        self.outputs(now)  # a pulse that ended is reported as soon as it ends
        key = lock.inputs | self._composed() << 8 | lock.state << 16
        key2 = lock.faults | lock.flags() << 8
        if key != self._reported or key2 != self._reported2:
            self._reported = key
            self._reported2 = key2
            self._send(link.T_STATE, self._state_payload())
        if self.diff(now, self.snap_at) >= SNAPSHOT_MS:
            self.snap_at = now
            self._send(link.T_SNAPSHOT, self._state_payload())
            self.loop_max_us = 0  # the worst period per snapshot window
