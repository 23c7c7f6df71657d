"""Raspberry Pi Pico wiring: the only file that names pins or electrical levels.

INPUTS/OUTPUTS are plain literals in the protocol's bit order (iohost.py reads them to drive
the simulated pins). active_low=True means the logical "true" is a low pin.

Inputs are wired fail-safe with the internal pull-up: a cut wire or a dead detector reads
high. Loop detectors and the photo-eye use their normally-closed "clear" contact to ground,
so high = vehicle present / beam blocked. Limit switches and the key close to ground when
active; the deck beam receivers pull low while the beam is clear (cut wire = not clear).
"""

from machine import WDT, Pin, reset_cause

INPUTS = (
    ("loop_a", 2, False),
    ("loop_b", 3, False),
    ("photo_eye", 4, False),
    ("limit_open", 5, True),
    ("limit_closed", 6, True),
    ("deck_front", 7, True),
    ("deck_rear", 8, True),
    ("tech_key", 9, True),
)
# Relay drivers are active high; all off (barrier stopped, lamps dark) on reset.
OUTPUTS = (
    ("barrier_open", 16, False),
    ("barrier_close", 17, False),
    ("light_red", 18, False),
    ("light_green", 19, False),
    ("buzzer", 20, False),
)
WDT_TIMEOUT_MS = 1000

# Protocol reset-cause codes (PROTOCOL.md).
RESET_UNKNOWN = 0
RESET_POWER_ON = 1
RESET_WATCHDOG = 2


class Board:
    def __init__(self):
        self._inputs = [Pin(gpio, Pin.IN, Pin.PULL_UP) for _, gpio, _ in INPUTS]
        self._in_invert = 0
        for i, (_, _, active_low) in enumerate(INPUTS):
            if active_low:
                self._in_invert |= 1 << i
        self._outputs = []
        self._out_invert = 0
        for i, (_, gpio, active_low) in enumerate(OUTPUTS):
            self._outputs.append(Pin(gpio, Pin.OUT, value=1 if active_low else 0))
            if active_low:
                self._out_invert |= 1 << i
        self._written = -1
        self.wdt = None

    def read_inputs(self):
        """Logical input bits (bit i = INPUTS[i])."""
        bits = 0
        i = 0
        for pin in self._inputs:
            if pin.value():
                bits |= 1 << i
            i += 1
        return bits ^ self._in_invert

    def write_outputs(self, bits):
        """Drive the relays; only changed pins are written."""
        level = bits ^ self._out_invert
        changed = level ^ self._written if self._written >= 0 else 0xFF
        if not changed:
            return
        i = 0
        for pin in self._outputs:
            if changed & (1 << i):
                pin.value((level >> i) & 1)
            i += 1
        self._written = level

    def start_watchdog(self):
        self.wdt = WDT(timeout=WDT_TIMEOUT_MS)

    def feed_watchdog(self):
        if self.wdt is not None:
            self.wdt.feed()

    def reset_cause(self):
        import machine

        cause = reset_cause()
        if cause == getattr(machine, "WDT_RESET", -1):
            return RESET_WATCHDOG
        if cause == getattr(machine, "PWRON_RESET", -1):
            return RESET_POWER_ON
        return RESET_UNKNOWN
