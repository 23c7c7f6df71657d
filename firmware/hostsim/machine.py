"""Host stand-in for MicroPython's `machine` (unix port), placed first on MICROPYPATH.

Pins talk to the simulator over a TCP side channel named by GATELANE_IOSIM=host:port,
one ASCII line per message:
  board -> sim   "h <ticks_us>"                 once, after connecting
                 "o <gpio> <level> <ticks_us>"  every output change, sent at once
                 "w <ticks_us>"                 watchdog expired (the process then exits)
  sim -> board   "i <gpio> <level>"             input level, applied on the next read
                 "g"                            initial levels sent, start
Without GATELANE_IOSIM the pins work standalone (inputs read their pull level).
GATELANE_RESET_CAUSE (power_on | watchdog) sets reset_cause(); GATELANE_WDT_SCALE stretches
the watchdog timeout (a factor) on slow hosts.

Like a Pico, the simulated board keeps its serial port alive when the firmware script ends
(an error, or Ctrl-C in maintenance): a Pico then shows its REPL, the unix port would exit.
So, with the side channel connected, a raw REPL (Ctrl-A, the mode mpremote uses, raw-paste
included) is served on stdin/stdout from sys.atexit. reset() reboots through the watchdog,
as rp2's machine.reset() does (the board then reports reset cause "watchdog"). Soft timers
and the watchdog keep running while the REPL waits for input.
"""

import os
import select
import socket
import sys
import time

PWRON_RESET = 1
WDT_RESET = 3

_levels = {}
_sock = None
_poll = None
_rxbuf = b""
_wdt = None
_timers = []
_halting = False  # the process is ending like a reset or power-off: no REPL


def _connect():
    global _sock, _poll
    addr = os.getenv("GATELANE_IOSIM")
    if not addr:
        return
    host, port = addr.rsplit(":", 1)
    s = socket.socket()
    s.connect(socket.getaddrinfo(host, int(port))[0][-1])
    _sock = s
    _send("h %d\n" % time.ticks_us())
    while not _handle_lines(s.recv(256)):
        pass
    _poll = select.poll()
    _poll.register(s, select.POLLIN)


def _send(text):
    if _sock is not None:
        _sock.write(text.encode())


def _handle_lines(data):
    """Apply received lines; True once the start marker was seen."""
    global _rxbuf
    if not data:
        _halt(0)  # the simulator went away: so does the board
    _rxbuf += data
    started = False
    while b"\n" in _rxbuf:
        line, _rxbuf = _rxbuf.split(b"\n", 1)
        parts = line.split()
        if parts and parts[0] == b"i":
            _levels[int(parts[1])] = int(parts[2])
        elif parts and parts[0] == b"g":
            started = True
    return started


def _halt(code):
    global _halting
    _halting = True
    sys.exit(code)


def _pump():
    if _poll is not None:
        while _poll.poll(0):
            _handle_lines(_sock.recv(256))
    if _timers:
        now = time.ticks_ms()
        for timer in list(_timers):
            timer._due(now)
    if _wdt is not None:
        _wdt._check()


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        self.mode = mode
        if id not in _levels:
            _levels[id] = 1 if pull == Pin.PULL_UP else 0
        if mode == Pin.OUT:
            self.value(0 if value is None else value)

    def value(self, v=None):
        if v is None:
            if self.mode != Pin.OUT:
                _pump()
            return _levels[self.id]
        v = 1 if v else 0
        if _levels.get(self.id) != v or self.mode == Pin.OUT and not hasattr(self, "_sent"):
            _levels[self.id] = v
            self._sent = True
            _send("o %d %d %d\n" % (self.id, v, time.ticks_us()))
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class WDT:
    """Exits the process like a reset when not fed within the timeout (checked on pin reads)."""

    def __init__(self, id=0, timeout=5000):
        global _wdt
        scale = os.getenv("GATELANE_WDT_SCALE")  # a loaded CI host may stretch it
        self.timeout = int(timeout * float(scale)) if scale else timeout
        self.fed = time.ticks_ms()
        _wdt = self

    def feed(self):
        self.fed = time.ticks_ms()

    def _check(self):
        if time.ticks_diff(time.ticks_ms(), self.fed) > self.timeout:
            _send("w %d\n" % time.ticks_us())
            _halt(75)


class Timer:
    """Soft timer: callbacks run from the pin polls and the REPL's idle wait, like rp2's
    scheduled (soft) timer callbacks."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kwargs):
        self.period = 0
        self.callback = None
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode=PERIODIC, period=-1, freq=-1, callback=None, **_):
        self.mode = mode
        self.period = period if period > 0 else int(1000 / freq)
        self.callback = callback
        self.at = time.ticks_add(time.ticks_ms(), self.period)
        if self not in _timers:
            _timers.append(self)

    def deinit(self):
        if self in _timers:
            _timers.remove(self)

    def _due(self, now):
        if time.ticks_diff(now, self.at) < 0:
            return
        if self.mode == Timer.PERIODIC:
            self.at = time.ticks_add(self.at, self.period)
        else:
            self.deinit()
        if self.callback is not None:
            self.callback(self)


def reset_cause():
    return WDT_RESET if os.getenv("GATELANE_RESET_CAUSE") == "watchdog" else PWRON_RESET


def reset():
    _send("w %d\n" % time.ticks_us())  # rp2 resets through the watchdog
    _halt(76)


def unique_id():
    return b"\xe6\x61\x00\x00\x00\x00\x00\x01"


def freq(hz=None):
    return 125000000


def idle():
    pass


# ---- the REPL a Pico shows once main.py ends ----
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 256


def _serve_repl():
    if _halting or _sock is None:
        return  # reset, watchdog, power-off: nothing survives
    rx = sys.stdin.buffer
    tx = sys.stdout.buffer
    waiting = select.poll()
    waiting.register(rx, select.POLLIN)
    scope = {"__name__": "__main__"}
    raw = False
    code = bytearray()

    def read1():
        while not waiting.poll(20):
            _pump()  # soft timers and the watchdog run while the REPL idles
        b = rx.read(1)
        if not b:
            raise SystemExit  # nobody on the other end any more
        return b[0]

    def run(source):
        try:
            exec(bytes(source), scope)
        except SystemExit:
            raise
        except BaseException as exc:  # the error section of the raw REPL reply
            tx.write(b"\x04")
            sys.print_exception(exc, sys.stdout)
            tx.write(b"\x04")
            return
        tx.write(b"\x04\x04")

    sys.stderr.write("machine: the firmware script ended; serving the REPL\n")
    tx.write(b"\r\nMicroPython (host board) REPL\r\n>>> ")
    try:
        while True:
            c = read1()
            if c == 1:  # Ctrl-A: raw REPL
                raw = True
                code = bytearray()
                tx.write(RAW_BANNER + b">")
            elif c == 2:  # Ctrl-B: friendly REPL
                raw = False
                tx.write(b"\r\n>>> ")
            elif c == 3:  # Ctrl-C
                code = bytearray()
                if not raw:
                    tx.write(b"\r\n>>> ")
            elif not raw:
                pass  # the friendly REPL only prompts; mpremote works in raw mode
            elif c == 4 and not code:  # Ctrl-D on an empty line: soft reboot, fresh globals
                scope = {"__name__": "__main__"}
                tx.write(b"OK\r\nMPY: soft reboot\r\n" + RAW_BANNER + b">")
            elif c == 4:
                tx.write(b"OK")
                run(code)
                code = bytearray()
                tx.write(b">")
            elif c == 5 and not code:  # Ctrl-E: raw-paste request, "A" Ctrl-A follows
                if read1() != 65 or read1() != 1:
                    continue
                tx.write(b"R\x01" + bytes((PASTE_WINDOW & 0xFF, PASTE_WINDOW >> 8)))
                got = 0
                while True:
                    b = read1()
                    if b == 4:
                        break
                    code.append(b)
                    got += 1
                    if got % PASTE_WINDOW == 0:
                        tx.write(b"\x01")  # room for another window
                tx.write(b"\x04")
                run(code)
                code = bytearray()
                tx.write(b">")
            else:
                code.append(c)
    except SystemExit:
        return  # machine.reset(), the watchdog, or the port went away


_connect()
if _sock is not None:
    sys.atexit(_serve_repl)
