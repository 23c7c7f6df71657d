"""IO-board entry point: pick the release to run, build the objects, then the 5 ms safety loop.

One iteration: sample inputs, take pending link bytes, run the interlock checks, drive the
relays, report, push queued TX bytes without blocking, and only then feed the watchdog (S9).
The wait between iterations is a poll on the link, so a command is handled as soon as it
arrives instead of at the next 5 ms tick.

Releases (PROTOCOL.md, "Firmware update"). The files beside this one are the release the
board was installed with. `lanectl fw deploy` keeps newer ones in the working directory:
app/ the release to run, app.prev/ the one before it, and app.trial while a swapped-in
release has not proven itself. At boot, before any release module is loaded, this file runs
app/main.py when there is one. A release on trial ("" in app.trial) boots once ("1") and
commits itself (removes app.trial) when a host has shaken hands and the barrier rests closed
without a fault. Finding "1" at boot means the trial ended otherwise (a crash, which resets
the board at once, a hang and the watchdog, a power cut): app and app.prev are swapped back
before anything runs, and the failed release is marked (app.prev/FAILED) so that no
rollback returns to it.

Maintenance hands the port to the REPL (mpremote): once the host has gone silent, CR Ctrl-C
ends the loop with the barrier relays off, and a timer keeps the watchdog fed for at most
REPL_SESSION_S while the REPL works; machine.reset() ends the session.
"""

import gc
import os
import select
import sys

import machine
import micropython

FW_VERSION = (0, 1, 0)
PERIOD_MS = 5
RX_BUDGET = 512  # bytes taken per iteration, so a flood cannot starve the checks
TX_CAPACITY = 2048
CR = 13
CTRL_C = 3
REPL_SESSION_S = 600
APP = "app"
APP_PREV = "app.prev"
APP_SWAP = "app.swap"  # app on its way to app.prev while a swap runs
TRIAL = "app.trial"
FAILED = "/FAILED"


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


def _here():
    try:
        return __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    except NameError:  # run as the board's main.py without a file name
        return "."


def firmware_manifest():
    from manifest import manifest_hash

    here = _here()

    def read(name):
        with open(here + "/" + name, "rb") as f:
            return f.read()

    return manifest_hash(read, os.listdir(here))


# ---- releases ----
def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def swap_releases():
    """app <-> app.prev by renames; either may be absent (no app: the installed one runs)."""
    had_app = _exists(APP)
    if had_app:
        os.rename(APP, APP_SWAP)
    if _exists(APP_PREV):
        os.rename(APP_PREV, APP)
    if had_app:
        os.rename(APP_SWAP, APP_PREV)


def finish_swap():
    """Complete a swap that a reset cut short (app.swap left behind)."""
    if _exists(APP_SWAP):
        if not _exists(APP) and _exists(APP_PREV):
            os.rename(APP_PREV, APP)
        os.rename(APP_SWAP, APP_PREV)


def select_release():
    """The folder to run from: APP when a release is deployed there, else None (this one)."""
    try:
        finish_swap()
        trial = _read(TRIAL)
        if trial == b"":
            with open(TRIAL, "wb") as f:
                f.write(b"1")  # this boot is the trial
        elif trial is not None:
            swap_releases()  # the trial ended without a commit: the previous release returns
            if _exists(APP_PREV):
                open(APP_PREV + FAILED, "wb").close()
            os.remove(TRIAL)
        return APP if _exists(APP + "/main.py") else None
    except OSError:
        return None  # a damaged deploy area: run the release installed with the board


def run_release(folder):
    """Run folder/main.py with that folder's modules instead of this one's."""
    here = _here()
    path = os.getcwd().rstrip("/") + "/" + folder
    sys.path[:] = [path] + [p for p in sys.path if p not in ("", ".", here)]
    import main as release

    release.main()


def on_trial():
    return _read(TRIAL) == b"1"


def commit_trial():
    try:
        os.remove(TRIAL)
    except OSError:
        pass


def keep_watchdog_fed(board):
    """After the loop stopped for the REPL: feed the watchdog for up to REPL_SESSION_S."""
    left = [REPL_SESSION_S * 2]

    def feed(timer):
        if left[0] > 0:
            left[0] -= 1
            board.feed_watchdog()
        else:
            timer.deinit()  # a forgotten session ends in a reset back into the firmware

    machine.Timer(-1, period=500, mode=machine.Timer.PERIODIC, callback=feed)  # a soft timer


# ---- the safety loop ----
def main():
    from board import Board
    from controller import Controller
    from interlock import CLOSED, MAINTENANCE, O_RED, Interlock
    from link import Receiver
    from ticks import ticks_diff, ticks_ms, ticks_us

    micropython.kbd_intr(-1)  # 0x03 in a binary frame must not raise KeyboardInterrupt
    rx_stream = sys.stdin.buffer
    board = Board()
    now = ticks_ms()
    lock = Interlock(now)
    tx = TxQueue(sys.stdout.buffer)
    ctl = Controller(lock, tx.put, now, reset_cause=board.reset_cause(), fw=FW_VERSION,
                     manifest=firmware_manifest())
    trial = on_trial()
    rx = Receiver()
    rx_poll = select.poll()
    rx_poll.register(rx_stream, select.POLLIN)
    board.start_watchdog()
    gc.collect()
    last_start = ticks_us()
    snapshots = 0
    prev_byte = 0
    try:
        while True:
            start = ticks_us()
            period_us = ticks_diff(start, last_start)
            last_start = start
            now = ticks_ms()
            lock.sample(board.read_inputs(), now)
            # The REPL may take the port only in maintenance with no host talking the link.
            repl_ok = lock.state == MAINTENANCE and not lock.link
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
                b = chunk[0]
                if repl_ok and b == CTRL_C and prev_byte == CR:
                    raise KeyboardInterrupt
                prev_byte = b
                n = rx.push(b)
                if n:
                    ctl.on_frame(rx.frame, n, now)
                budget -= 1
            lock.step(now)
            out = ctl.outputs(now)
            board.write_outputs(out)
            before = ctl.seq
            ctl.tick(now, period_us)
            tx.pump()
            if lock.checks_ran:
                board.feed_watchdog()  # S9
            if trial and lock.state == CLOSED and lock.handshake and not lock.faults:
                trial = False
                commit_trial()  # once, at rest: the new release proved itself
            if ctl.seq != before:
                snapshots += 1
                if snapshots % 8 == 0:
                    gc.collect()  # at a known point, not in the middle of a command
            wait = PERIOD_MS - ticks_diff(ticks_ms(), now)
            if wait > 0:
                rx_poll.poll(wait)  # wakes early when link bytes arrive
    except KeyboardInterrupt:
        board.write_outputs(O_RED)  # maintenance had the relays off already; keep them so
        keep_watchdog_fed(board)
        micropython.kbd_intr(3)
        raise  # the script ends; the REPL takes the port


def boot():
    release = select_release()
    if release is None:
        main()
        return
    try:
        run_release(release)
    except KeyboardInterrupt:
        raise  # maintenance: the REPL takes the port
    except Exception as exc:
        if on_trial():  # a release on trial that cannot run: back to the previous one now
            sys.print_exception(exc)
            machine.reset()
        raise


if __name__ == "__main__":
    boot()
