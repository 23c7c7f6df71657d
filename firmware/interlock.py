"""The barrier safety interlock: one state machine, pure, time as a parameter.

Invariants (DESIGN.md section 5), enforced here and checked after every step by the tests:
  S1 after boot: no motion and red until the host handshake and the sensor self-check pass.
  S2 never start or continue a close with presence, blocked beam, fault or stale input.
  S3 obstruction while closing: stop closing and open at once (first sample, no debounce).
  S4 start a close only after "clear" has held for t_clear.
  S5 travel time per direction is bounded; overrun or both limits active -> FAULT.
  S6 open and close relays never on together; a dead time separates a reversal.
  S7 green only at the confirmed open limit, with no fault and a live host link.
  S8 host silent > hb_timeout: red, pending closes dropped, no close starts; stale or
     duplicate commands are rejected (controller.py).
  S9 checks_ran tells main.py the checks of this iteration ran, so it may feed the WDT.

Ticks only go through diff(), which wraps (2^30 on the RP2040). Long-lived comparisons are
latched into booleans so that a quiet week cannot wrap a difference back into range.
"""

try:
    from micropython import const
except ImportError:
    def const(x):  # type: ignore[misc,no-redef]
        return x

from ticks import ticks_diff

# Input bits (logical meaning; board.py turns electrical levels into these).
I_LOOP_A = const(0x01)  # vehicle present before the barrier
I_LOOP_B = const(0x02)  # vehicle present under/after the barrier
I_PHOTO = const(0x04)  # photo-eye beam blocked
I_LIM_OPEN = const(0x08)  # at the open limit
I_LIM_CLOSED = const(0x10)  # at the closed limit
I_DECK_FRONT = const(0x20)  # deck position beam clear
I_DECK_REAR = const(0x40)
I_TECH_KEY = const(0x80)
PRESENCE = const(0x07)
INPUT_NAMES = ("loop_a", "loop_b", "photo_eye", "limit_open", "limit_closed",
               "deck_front", "deck_rear", "tech_key")

# Output bits.
O_OPEN = const(0x01)
O_CLOSE = const(0x02)
O_RED = const(0x04)
O_GREEN = const(0x08)
O_BUZZER = const(0x10)
OUTPUT_NAMES = ("barrier_open", "barrier_close", "light_red", "light_green", "buzzer")

# States.
BOOT = const(0)
WAIT_HOST = const(1)
CLOSED = const(2)
OPENING = const(3)
OPEN = const(4)
CLOSING = const(5)
STOPPED = const(6)
FAULT = const(7)
MAINTENANCE = const(8)
STATE_NAMES = ("boot", "wait_host", "closed", "opening", "open", "closing", "stopped",
               "fault", "maintenance")

# Fault bits; all latch until CLEAR_FAULT except F_STALE (live while inputs are stale).
F_BOTH_LIMITS = const(0x01)
F_OPEN_TIMEOUT = const(0x02)
F_CLOSE_TIMEOUT = const(0x04)
F_STALE = const(0x08)
F_SELF_CHECK = const(0x10)
FAULT_NAMES = ("both_limits", "open_timeout", "close_timeout", "stale_input", "self_check")

# Flag bits (reported in state frames).
FL_LINK = const(0x01)
FL_HANDSHAKE = const(0x02)
FL_CLOSE_PENDING = const(0x04)
FL_PASSED = const(0x08)
FL_PATH_CLEAR = const(0x10)
FL_GRANTED = const(0x20)
FLAG_NAMES = ("link", "handshake", "close_pending", "passed", "path_clear", "granted")

# Command result codes.
R_OK = const(0)
R_PENDING = const(1)  # accepted, waits for the path to be clear
R_EXPIRED = const(2)
R_STALE = const(3)
R_NOT_READY = const(4)
R_FAULT = const(5)
R_BAD_REQUEST = const(6)
R_UNKNOWN = const(7)
RESULT_NAMES = ("ok", "pending", "expired", "stale", "not_ready", "fault", "bad_request",
                "unknown_type")

T_CLEAR_MIN_MS = const(100)  # S4 cannot be configured away
DEAD_MIN_MS = const(10)  # a relay needs this long to release
MAX_DEAD_MS = const(5000)  # upper bound of the configurable dead time
STALE_MS = const(50)  # inputs older than this count as unknown = occupied
SELF_CHECK_MS = const(100)  # fresh, plausible samples needed after boot


class Interlock:
    def __init__(self, now, diff=ticks_diff, t_clear_ms=500, travel_ms=4000, dead_ms=200,
                 hb_timeout_ms=1000):
        self.diff = diff
        self.t_clear_ms = t_clear_ms
        self.travel_ms = travel_ms
        self.dead_ms = dead_ms
        self.hb_timeout_ms = hb_timeout_ms
        self.state = BOOT
        self.state_at = now
        self.boot_at = now
        self.inputs = PRESENCE  # unknown counts as occupied
        self._other_prev = 0
        self.samples = 0
        self.sampled_at = now
        self.fresh = False
        self.clear_since = now
        self.path_clear = False  # latched once clear has held t_clear
        self.outputs = O_RED
        self._open_off_at = now  # None once the dead time after release has passed
        self._close_off_at = now
        self.faults = 0
        self.handshake = False
        self.link = False
        self.host_at = now
        self.granted = False  # an OPEN was accepted and no close since
        self.passed = False  # loop B was occupied during this opening
        self.close_pending = False
        self.checks_ran = False

    # ---- inputs from the board and the host ----
    def sample(self, bits, now):
        """Record one poll of all inputs (logical bits)."""
        self.samples += 1
        self.sampled_at = now
        other = bits & ~PRESENCE & 0xFF
        # Limits, deck beams, key: "on" needs two equal samples (contact bounce), "off" counts
        # at once, so green drops and a limit is left the moment the switch opens.
        confirmed = other & self._other_prev
        self._other_prev = other
        # Presence takes effect on the first sample (asymmetric: clear must hold t_clear).
        self.inputs = (bits & PRESENCE) | confirmed

    def host_seen(self, now):
        self.host_at = now
        if self.handshake:
            self.link = True

    def hello(self, now):
        self.handshake = True
        self.host_seen(now)

    # ---- commands (return a result code) ----
    def _gate(self):
        if not self.handshake or not self.link:
            return R_NOT_READY
        if self.state in (BOOT, WAIT_HOST, MAINTENANCE):
            return R_NOT_READY
        if self.state == FAULT or self.faults & ~F_STALE:
            return R_FAULT
        return R_OK

    def request_open(self, now):
        code = self._gate()
        if code != R_OK:
            return code
        self.granted = True
        self.passed = False
        self.close_pending = False
        if self.state not in (OPEN, OPENING):
            self._enter(OPENING, now)
        return R_OK

    def request_close(self, now):
        code = self._gate()
        if code != R_OK:
            return code
        self.granted = False
        if self.state in (CLOSED, CLOSING):
            return R_OK
        self.close_pending = True
        return R_OK if self.path_clear else R_PENDING

    def clear_fault(self, now):
        if not self.handshake:
            return R_NOT_READY
        if self.state != FAULT:
            return R_OK
        both = I_LIM_OPEN | I_LIM_CLOSED
        if self.inputs & both == both or not self.fresh:
            return R_FAULT
        self.faults = 0
        self._enter(self._rest_state(), now)
        return R_OK

    def configure(self, t_clear_ms, travel_ms, dead_ms, now):
        if not (T_CLEAR_MIN_MS <= t_clear_ms <= 60000 and 500 <= travel_ms <= 60000
                and DEAD_MIN_MS <= dead_ms <= MAX_DEAD_MS):
            return R_BAD_REQUEST
        self.t_clear_ms = t_clear_ms
        self.travel_ms = travel_ms
        self.dead_ms = dead_ms
        self.path_clear = False  # S4: a new t_clear must hold in full before a close
        self.clear_since = now
        return R_OK

    def maintenance(self, enter, now):
        if not self.handshake:
            return R_NOT_READY
        if enter:
            if self.state in (OPENING, CLOSING) or self.outputs & (O_OPEN | O_CLOSE):
                return R_NOT_READY
            self.granted = False
            self.close_pending = False
            self._enter(MAINTENANCE, now)
        elif self.state == MAINTENANCE:
            # Maintenance never clears a latched fault: that takes CLEAR_FAULT.
            self._enter(FAULT if self.faults & ~F_STALE else self._rest_state(), now)
        return R_OK

    # ---- the checks, once per loop iteration ----
    def step(self, now):
        diff = self.diff
        self.checks_ran = False
        self.fresh = self.samples > 0 and 0 <= diff(now, self.sampled_at) <= STALE_MS
        if self.fresh:
            self.faults &= ~F_STALE
        else:
            self.faults |= F_STALE
        occupied = (self.inputs & PRESENCE) != 0 or not self.fresh
        if occupied:
            self.clear_since = now
            self.path_clear = False
        elif not self.path_clear and diff(now, self.clear_since) >= self.t_clear_ms:
            self.path_clear = True
        if self.link and diff(now, self.host_at) > self.hb_timeout_ms:
            self.link = False
        if not self.link:
            # S8: a silent host cancels every close that has not started.
            self.close_pending = False
            self.passed = False
        # Stale limits are unknown: a movement then runs on until fresh inputs or S5 stop it.
        lim_open = self.inputs & I_LIM_OPEN if self.fresh else 0
        lim_closed = self.inputs & I_LIM_CLOSED if self.fresh else 0
        st = self.state
        if lim_open and lim_closed and st != BOOT:
            if not self.faults & F_BOTH_LIMITS:
                self._fault(F_BOTH_LIMITS, now)
        elif st == BOOT:
            if diff(now, self.boot_at) >= SELF_CHECK_MS:
                if not self.fresh or (lim_open and lim_closed):
                    self._fault(F_SELF_CHECK, now)
                else:
                    self._enter(WAIT_HOST, now)
        elif st == WAIT_HOST:
            if self.handshake and self.link:
                self._enter(self._rest_state(), now)
        elif st == OPENING:
            if self.inputs & I_LOOP_B and self.granted:
                self.passed = True
            if lim_open:
                self._enter(OPEN, now)
            elif diff(now, self.state_at) > self.travel_ms:
                self._fault(F_OPEN_TIMEOUT, now)
        elif st == OPEN:
            if self.inputs & I_LOOP_B and self.granted:
                self.passed = True
            if self.passed or self.close_pending:
                self._maybe_close(now)
        elif st == CLOSING:
            if occupied or self.faults:
                # S2/S3: stop at once and reopen; close again once clear holds t_clear.
                self.close_pending = self.link
                self._enter(OPENING, now)
            elif lim_closed:
                self.close_pending = False
                self._enter(CLOSED, now)
            elif diff(now, self.state_at) > self.travel_ms:
                self._fault(F_CLOSE_TIMEOUT, now)
        elif st == STOPPED:
            if self.close_pending:
                self._maybe_close(now)
        self._drive(now)
        self.checks_ran = True

    def _maybe_close(self, now):
        # S2/S4/S8: only with a live host, no fault, and clear held for t_clear.
        if self.link and not self.faults and self.path_clear:
            self.granted = False
            self.passed = False
            self.close_pending = False
            self._enter(CLOSING, now)

    def _drive(self, now):
        diff = self.diff
        out = self.outputs
        want_open = self.state == OPENING
        want_close = self.state == CLOSING
        if out & O_OPEN and not want_open:
            out &= ~O_OPEN
            self._open_off_at = now
        if out & O_CLOSE and not want_close:
            out &= ~O_CLOSE
            self._close_off_at = now
        # Release times are forgotten after the longest configurable dead time (no wrap).
        if self._open_off_at is not None and diff(now, self._open_off_at) >= MAX_DEAD_MS:
            self._open_off_at = None
        if self._close_off_at is not None and diff(now, self._close_off_at) >= MAX_DEAD_MS:
            self._close_off_at = None
        # S6: energise a direction only when both are off and the dead time has passed.
        if not out & (O_OPEN | O_CLOSE) and (want_open or want_close):
            dead = self.dead_ms
            settled = ((self._open_off_at is None or diff(now, self._open_off_at) >= dead)
                       and (self._close_off_at is None or diff(now, self._close_off_at) >= dead))
            if settled:
                out |= O_OPEN if want_open else O_CLOSE
        green = (self.state == OPEN and self.inputs & I_LIM_OPEN and self.granted
                 and not self.passed and not self.faults and self.link)
        out &= O_OPEN | O_CLOSE
        out |= O_GREEN if green else O_RED
        if self.state == CLOSING:
            out |= O_BUZZER  # warn people near the arm while it moves down
        self.outputs = out

    def _rest_state(self):
        self.granted = False
        self.passed = False
        if self.inputs & I_LIM_CLOSED:
            return CLOSED
        if self.inputs & I_LIM_OPEN:
            return OPEN
        return STOPPED

    def _enter(self, state, now):
        self.state = state
        self.state_at = now

    def _fault(self, bit, now):
        self.faults |= bit
        self.granted = False
        self.passed = False
        self.close_pending = False
        self._enter(FAULT, now)

    def flags(self):
        f = 0
        if self.link:
            f |= FL_LINK
        if self.handshake:
            f |= FL_HANDSHAKE
        if self.close_pending:
            f |= FL_CLOSE_PENDING
        if self.passed:
            f |= FL_PASSED
        if self.path_clear:
            f |= FL_PATH_CLEAR
        if self.granted:
            f |= FL_GRANTED
        return f
