"""A simulated lane around the firmware core (interlock + controller), for CPython and
MicroPython alike: a tick source wrapping at 2^30 started just before the wrap, a barrier arm
fed by the relays, a host that talks through real link frames, and the S1-S9 checks run
after every step."""

import interlock as il
import link
from controller import Controller
from ticks import make_diff

PERIOD = 1 << 30
DIFF = make_diff(PERIOD)
STEP_MS = 5
TRAVEL_MS = 1000  # of the simulated arm; the interlock's timeout is config (4000 default)


def max_tick(a, b):
    return a if DIFF(a, b) >= 0 else b


class InvariantError(AssertionError):
    pass


class Rig:
    def __init__(self, start=PERIOD - 3000, travel_ms=TRAVEL_MS, t_clear=500, dead=200,
                 check=True):
        self.now = start
        self.lock = il.Interlock(self.now, DIFF, t_clear_ms=t_clear, dead_ms=dead)
        self.sent = []
        self.ctl = Controller(self.lock, self._collect, self.now, DIFF)
        self.rx = link.Receiver()
        self.arm = 0  # ms of travel from closed (0) to open (travel_ms)
        self.travel_ms = travel_ms
        self.loop_a = False
        self.loop_b = False
        self.photo = False
        self.stale = False  # stop sampling inputs
        self.arm_stuck = False  # the arm does not move (motor failure)
        self.both_limits = False  # a shorted limit switch
        self.host_seq = 0
        self.host_ms = 50000
        self.host_last = None  # tick of the last host frame (None = never)
        self.check = check
        self.frames = []  # decoded board frames (type, seq, ack, payload), the latest
        self.results = {}  # command seq -> result name
        self.elapsed = 0
        self.last_occupied = self.now
        self.open_on_at = None
        self.close_on_at = None
        self.open_off_at = self.now
        self.close_off_at = self.now
        self.prev_out = self.lock.outputs
        self.both_for = 0
        self.stale_for = 0
        self.configured_at = self.now
        self.prev_state = il.BOOT

    # ---- the world ----
    def _collect(self, frame):
        self.sent.append(frame)
        return True

    def inputs(self):
        bits = 0
        if self.loop_a:
            bits |= il.I_LOOP_A
        if self.loop_b:
            bits |= il.I_LOOP_B
        if self.photo:
            bits |= il.I_PHOTO
        if self.arm >= self.travel_ms or self.both_limits:
            bits |= il.I_LIM_OPEN
        if self.arm <= 0 or self.both_limits:
            bits |= il.I_LIM_CLOSED
        return bits | il.I_DECK_FRONT | il.I_DECK_REAR

    def step(self):
        out = self.lock.outputs
        if not self.arm_stuck:
            if out & il.O_OPEN and not out & il.O_CLOSE:
                self.arm = min(self.travel_ms, self.arm + STEP_MS)
            elif out & il.O_CLOSE and not out & il.O_OPEN:
                self.arm = max(0, self.arm - STEP_MS)
        self.now = (self.now + STEP_MS) % PERIOD
        self.elapsed += STEP_MS
        self.host_ms = (self.host_ms + STEP_MS) & 0xFFFFFFFF
        if not self.stale:
            self.lock.sample(self.inputs(), self.now)
        self.lock.step(self.now)
        self.ctl.tick(self.now, 100)
        self._drain()
        if self.check:
            self.check_invariants()

    def run(self, ms, heartbeat=True):
        for _ in range(ms // STEP_MS):
            if heartbeat and self.elapsed % 200 == 0:
                self.send_host(link.T_HEARTBEAT, 0, self.host_ms.to_bytes(4, "big"))
            self.step()

    def _drain(self):
        for frame in self.sent:
            for b in frame:
                n = self.rx.push(b)
                if n:
                    f = self.rx.frame
                    self.frames.append((f[1], f[2], f[3], bytes(f[4:n - 2])))
                    if f[1] == link.T_RESULT:
                        self.results[f[4]] = il.RESULT_NAMES[f[5]]
        self.sent = []
        if len(self.frames) > 100:
            del self.frames[:50]  # bounded: long walks run in a small heap

    # ---- the host ----
    def send_host(self, ftype, seq, payload=b""):
        wire = link.encode_frame(ftype, seq, 0, payload)
        rx = link.Receiver()
        for b in wire:
            n = rx.push(b)
            if n:
                self.host_last = self.now
                self.ctl.on_frame(rx.frame, n, self.now)
        self._drain()

    def hello(self):
        payload = bytes((1,)) + (7).to_bytes(4, "big") + self.host_ms.to_bytes(4, "big")
        self.send_host(link.T_HELLO, self.host_seq, payload)

    def command(self, ftype, valid_ms=1000, seq=None, extra=b""):
        """Send a command; return its result name (or None when none came)."""
        if seq is None:
            self.host_seq = self.host_seq % 255 + 1
            seq = self.host_seq
        deadline = (self.host_ms + valid_ms) & 0xFFFFFFFF
        self.results.pop(seq, None)
        self.send_host(ftype, seq, deadline.to_bytes(4, "big") + extra)
        return self.results.pop(seq, None)

    def open(self, **kw):
        return self.command(link.T_OPEN, **kw)

    def close(self, **kw):
        return self.command(link.T_CLOSE_WHEN_CLEAR, **kw)

    def boot(self):
        """Boot, self-check and handshake: the barrier is closed and idle afterwards."""
        self.run(150, heartbeat=False)
        self.hello()
        self.run(50)

    def pass_vehicle(self, ms=600):
        self.loop_b = True
        self.run(ms)
        self.loop_b = False

    def close_behind_vehicle(self):
        """From an accepted OPEN: the arm opens, a vehicle passes, the arm starts closing."""
        self.run_until(lambda: self.state == "open")
        self.pass_vehicle()
        self.run_until(lambda: self.state == "closing")

    def run_until(self, predicate, limit_ms=10000):
        waited = 0
        while not predicate():
            if waited >= limit_ms:
                return False
            self.run(STEP_MS)
            waited += STEP_MS
        return True

    @property
    def state(self):
        return il.STATE_NAMES[self.lock.state]

    @property
    def outputs(self):
        return self.lock.outputs

    # ---- S1-S9 ----
    def check_invariants(self):
        lock = self.lock
        out = lock.outputs
        now = self.now
        self.stale_for = self.stale_for + STEP_MS if self.stale else 0
        # What the interlock can know: the sample, or "occupied" once inputs are stale.
        presence = self.inputs() & il.PRESENCE if not self.stale else 0
        if self.stale_for > il.STALE_MS:
            presence = il.PRESENCE  # unknown counts as occupied
        if presence:
            self.last_occupied = now
        rising_open = out & il.O_OPEN and not self.prev_out & il.O_OPEN
        rising_close = out & il.O_CLOSE and not self.prev_out & il.O_CLOSE
        if self.prev_out & il.O_OPEN and not out & il.O_OPEN:
            self.open_off_at = now
        if self.prev_out & il.O_CLOSE and not out & il.O_CLOSE:
            self.close_off_at = now
        self.prev_out = out

        def fail(rule, why):
            raise InvariantError("%s violated at +%d ms in %s: %s" % (
                rule, self.elapsed, il.STATE_NAMES[lock.state], why))

        if not lock.checks_ran:
            fail("S9", "step returned without its checks")
        if not lock.handshake and out & (il.O_OPEN | il.O_CLOSE | il.O_GREEN):
            fail("S1", "motion or green before the handshake")
        if bool(out & il.O_RED) == bool(out & il.O_GREEN):
            fail("S7", "exactly one of red/green must be on")
        if out & il.O_OPEN and out & il.O_CLOSE:
            fail("S6", "both relays on")
        if rising_open and DIFF(now, self.close_off_at) < lock.dead_ms:
            fail("S6", "open relay on within the dead time")
        if rising_close and DIFF(now, self.open_off_at) < lock.dead_ms:
            fail("S6", "close relay on within the dead time")
        if out & il.O_CLOSE:
            if presence:
                fail("S2/S3", "close relay on with presence or stale input")
            if lock.faults:
                fail("S2", "close relay on with a fault")
        start_close = lock.state == il.CLOSING and self.prev_state != il.CLOSING
        self.prev_state = lock.state
        if start_close:  # the decision to close (the relay follows after the dead time)
            if DIFF(now, max_tick(self.last_occupied, self.configured_at)) < lock.t_clear_ms:
                fail("S4", "close started before clear held t_clear")
            if self.host_last is None or DIFF(now, self.host_last) > lock.hb_timeout_ms:
                fail("S8", "close started with a silent host")
        if rising_open:
            self.open_on_at = now
        if rising_close:
            self.close_on_at = now
        if out & il.O_OPEN and DIFF(now, self.open_on_at) > lock.travel_ms + STEP_MS:
            fail("S5", "open relay on beyond the travel time")
        if out & il.O_CLOSE and DIFF(now, self.close_on_at) > lock.travel_ms + STEP_MS:
            fail("S5", "close relay on beyond the travel time")
        if out & il.O_GREEN:
            if not self.inputs() & il.I_LIM_OPEN or lock.faults or lock.state != il.OPEN:
                fail("S7", "green without the open limit or with a fault")
            if self.host_last is None or DIFF(now, self.host_last) > lock.hb_timeout_ms + STEP_MS:
                fail("S8", "green with a silent host")
        if not self.both_limits:
            self.both_for = 0
        elif not self.stale:  # the interlock only learns of it from samples
            self.both_for += STEP_MS
        latched = lock.faults & (il.F_BOTH_LIMITS | il.F_SELF_CHECK)
        if self.both_for > 3 * STEP_MS and lock.state != il.BOOT and not latched:
            fail("S5", "both limits active without a latched fault")
        if lock.faults & ~il.F_STALE and lock.state not in (il.FAULT, il.MAINTENANCE):
            fail("S5", "a latched fault outside the fault state")


def random_walk(seed, steps, rig=None):
    """Drive a rig with random sensors, commands, link and hardware faults for ``steps`` loop
    iterations; the rig checks S1-S9 after each. Returns the rig and the states visited."""
    r = rig or Rig()
    state = [seed & 0x7FFFFFFF or 1]

    def rnd(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] >> 8) % n

    visited = set()
    silent = 0
    r.run(150, heartbeat=False)
    r.hello()
    for _ in range(steps):
        roll = rnd(1000)
        # Vehicles come now and then and leave again after a while.
        if r.loop_a and rnd(60) == 0:
            r.loop_a = False
        if r.loop_b and rnd(60) == 0:
            r.loop_b = False
        if r.photo and rnd(30) == 0:
            r.photo = False
        if roll < 4:
            r.loop_a = True
        elif roll < 8:
            r.loop_b = True
        elif roll < 10:
            r.photo = True
        elif roll < 70:
            pass
        elif roll < 90:
            r.open(valid_ms=rnd(1500) - 100)
        elif roll < 105:
            r.close(valid_ms=rnd(1500) - 100)
        elif roll < 110:
            r.open(seq=(r.host_seq - rnd(12)) % 256)  # duplicates and stale seqs
        elif roll < 111:
            silent = 150 + rnd(400)  # host silent for 0.75..2.75 s
        elif roll < 113:
            r.stale = True
        elif roll < 114:
            r.arm_stuck = not r.arm_stuck
        elif roll < 115 and rnd(3) == 0:
            r.both_limits = not r.both_limits
        elif roll < 126:
            r.command(link.T_CLEAR_FAULT)
        elif roll < 128:
            r.hello()
        elif roll < 130:
            cfg = (100 + rnd(900), 500 + rnd(3000), 20 + rnd(400))
            r.host_seq = r.host_seq % 255 + 1
            r.configured_at = r.now
            r.send_host(link.T_CONFIG, r.host_seq, bytes((
                cfg[0] >> 8, cfg[0] & 255, cfg[1] >> 8, cfg[1] & 255, cfg[2] >> 8, cfg[2] & 255)))
        elif roll < 131:
            r.command(link.T_MAINTENANCE, extra=bytes((rnd(2),)))
        if silent:
            silent -= 1
        elif r.elapsed % 200 == 0:
            r.send_host(link.T_HEARTBEAT, 0, r.host_ms.to_bytes(4, "big"))
        if r.stale and rnd(50) == 0:
            r.stale = False  # stalls are short
        r.step()
        visited.add(r.state)
    return r, visited
