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
        self.frames = []  # decoded board frames (type, seq, ack, payload)
        self.elapsed = 0
        self.last_occupied = self.now
        self.open_on_at = None
        self.close_on_at = None
        self.open_off_at = self.now
        self.close_off_at = self.now
        self.prev_out = self.lock.outputs
        self.both_for = 0
        self.stale_for = 0

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
        self.sent = []

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
        start = len(self.frames)
        self.send_host(ftype, seq, deadline.to_bytes(4, "big") + extra)
        for ftype_, _, _, payload in self.frames[start:]:
            if ftype_ == link.T_RESULT and payload[0] == seq:
                return il.RESULT_NAMES[payload[1]]
        return None

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
        presence = self.inputs() & il.PRESENCE
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
        if rising_close:
            if DIFF(now, self.last_occupied) < lock.t_clear_ms:
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
        self.both_for = self.both_for + STEP_MS if self.both_limits else 0
        if self.both_for > 3 * STEP_MS and lock.state not in (il.FAULT, il.BOOT):
            fail("S5", "both limits active without a fault")
