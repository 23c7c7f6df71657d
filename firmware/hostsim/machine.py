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
        sys.exit(0)  # the simulator went away: so does the board
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


def _pump():
    if _poll is not None:
        while _poll.poll(0):
            _handle_lines(_sock.recv(256))
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
            sys.exit(75)


def reset_cause():
    return WDT_RESET if os.getenv("GATELANE_RESET_CAUSE") == "watchdog" else PWRON_RESET


def reset():
    sys.exit(76)


def unique_id():
    return b"\xe6\x61\x00\x00\x00\x00\x00\x01"


def freq(hz=None):
    return 125000000


def idle():
    pass


_connect()
