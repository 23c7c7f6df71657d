"""IO-board entry point: build the objects, then the 5 ms safety loop forever.

One iteration: sample inputs, take pending link bytes, run the interlock checks, drive the
relays, report, push queued TX bytes without blocking, and only then feed the watchdog (S9).
The wait between iterations is a poll on the link, so a command is handled as soon as it
arrives instead of at the next 5 ms tick.
"""

import gc
import os
import select
import sys

import micropython
from board import Board
from controller import Controller
from interlock import MAINTENANCE, Interlock
from link import Receiver
from manifest import manifest_hash
from ticks import ticks_diff, ticks_ms, ticks_us

FW_VERSION = (0, 1, 0)
PERIOD_MS = 5
RX_BUDGET = 512  # bytes taken per iteration, so a flood cannot starve the checks
TX_CAPACITY = 2048


class TxQueue:
    """Bounded, non-blocking writer: drops a whole frame when full (snapshots heal it)."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = bytearray(TX_CAPACITY)
        self.n = 0
        self.drops = 0
        self.poll = select.poll()
        self.poll.register(stream, select.POLLOUT)

    def put(self, frame):
        m = len(frame)
        if self.n + m > TX_CAPACITY:
            self.drops += 1
            return False
        self.buf[self.n:self.n + m] = frame
        self.n += m
        return True

    def pump(self):
        while self.n:
            ready = self.poll.poll(0)
            if not ready or not ready[0][1] & select.POLLOUT:
                return
            chunk = min(self.n, 256)
            try:
                w = self.stream.write(memoryview(self.buf)[:chunk])
            except OSError:
                w = self.n  # nobody listening: discard, the next snapshot tells all
            if not w:
                return
            self.buf[:self.n - w] = self.buf[w:self.n]
            self.n -= w


def firmware_manifest():
    try:
        here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    except NameError:  # run as the board's main.py without a file name
        here = "."

    def read(name):
        with open(here + "/" + name, "rb") as f:
            return f.read()

    return manifest_hash(read, os.listdir(here))


def main():
    micropython.kbd_intr(-1)  # 0x03 in a binary frame must not raise KeyboardInterrupt
    rx_stream = sys.stdin.buffer
    board = Board()
    now = ticks_ms()
    lock = Interlock(now)
    tx = TxQueue(sys.stdout.buffer)
    ctl = Controller(lock, tx.put, now, reset_cause=board.reset_cause(), fw=FW_VERSION,
                     manifest=firmware_manifest())
    rx = Receiver()
    rx_poll = select.poll()
    rx_poll.register(rx_stream, select.POLLIN)
    board.start_watchdog()
    gc.collect()
    last_start = ticks_us()
    snapshots = 0
    in_maintenance = False
    while True:
        start = ticks_us()
        period_us = ticks_diff(start, last_start)
        last_start = start
        now = ticks_ms()
        lock.sample(board.read_inputs(), now)
        budget = RX_BUDGET
        while budget:
            ready = rx_poll.poll(0)
            if not ready or not ready[0][1] & select.POLLIN:
                break
            try:
                chunk = rx_stream.read(1)
            except OSError:
                chunk = None
            if not chunk:
                break
            n = rx.push(chunk[0])
            if n:
                ctl.on_frame(rx.frame, n, now)
            budget -= 1
        lock.step(now)
        board.write_outputs(lock.outputs)
        maintenance = lock.state == MAINTENANCE
        if maintenance != in_maintenance:
            in_maintenance = maintenance
            # Ctrl-C (and so mpremote) works only in maintenance, with the relays off.
            micropython.kbd_intr(3 if maintenance else -1)
        before = ctl.seq
        ctl.tick(now, period_us)
        tx.pump()
        if lock.checks_ran:
            board.feed_watchdog()  # S9
        if ctl.seq != before:
            snapshots += 1
            if snapshots % 8 == 0:
                gc.collect()  # at a known point, not in the middle of a command
        wait = PERIOD_MS - ticks_diff(ticks_ms(), now)
        if wait > 0:
            rx_poll.poll(wait)  # wakes early when link bytes arrive


if __name__ == "__main__":
    main()
