"""The guided checks of ``lanectl io test``, each a ``Check`` with its evidence.

Prompts go to stderr as ``>>> INPUT -> on|off: what to do``, and each step waits for that
input to change, so the checks also run unattended while something else drives the inputs.
Inputs a technician works by hand (photo-eye, deck beams, key) must change and change back;
the lamps are read from the board's own output state (red at rest, green only at the open
limit), the buzzer is pulsed and seen on and off; with loop A (then B) occupied the barrier
opens, CLOSE_WHEN_CLEAR is answered ``pending`` and the barrier stays open, and it closes
once the loop is clear.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from edge_agent.protocols.iolink_session import BoardSnapshot
from host_tools.board_session import BoardSession


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    evidence: str


class Technician:
    """Prompts on stderr; the input change itself is the answer."""

    def __init__(self, step_timeout_s: float) -> None:
        self.step_timeout_s = step_timeout_s

    def ask(self, name: str, value: bool, what: str) -> None:
        state = "on" if value else "off"
        print(f">>> {name} -> {state}: {what} (waiting up to {self.step_timeout_s:g} s)",
              file=sys.stderr, flush=True)  # fmt: skip


def _input_after_prompt(
    session: BoardSession, tech: Technician, name: str, value: bool, what: str
) -> float | None:
    """Prompt, then seconds until the input reads ``value`` (None: it did not change)."""
    session.mark()
    asked = time.monotonic()
    tech.ask(name, value, what)
    if session.snapshot.inputs[name] == value:
        return 0.0
    event = session.wait(  # the board reports each change in a state of its own
        lambda e: isinstance(e, BoardSnapshot) and e.inputs[name] == value, tech.step_timeout_s
    )
    return None if event is None else max(0.0, event.at - asked)


def check_limits(snap: BoardSnapshot) -> Check:
    lim_open, lim_closed = snap.inputs["limit_open"], snap.inputs["limit_closed"]
    seen = f"limit_open={int(lim_open)} limit_closed={int(lim_closed)}, barrier {snap.barrier}"
    if lim_open == lim_closed:
        return Check("limit_switches", False, f"{seen}: exactly one limit must be active")
    expected = {"closed": (False, True), "open": (True, False)}.get(snap.barrier)
    if expected is None:
        return Check("limit_switches", False, f"{seen}: the barrier should rest at a limit")
    if (lim_open, lim_closed) != expected:
        return Check("limit_switches", False, f"{seen}: the switches contradict the state")
    return Check("limit_switches", True, f"{seen}: consistent")


def check_input(session: BoardSession, tech: Technician, name: str, active: bool,
                do: str, undo: str) -> Check:  # fmt: skip
    """An input the technician changes by hand: it must read ``active`` after ``do`` and go
    back after ``undo`` (a reading already ``active`` is first brought back to rest)."""
    wait_s, rest = tech.step_timeout_s, not active
    at_rest = session.snapshot.inputs[name] == rest
    if not at_rest and _input_after_prompt(session, tech, name, rest, undo) is None:
        return Check(name, False, f"reads {_level(active)} and stayed so for {wait_s:g} s: "
                         "stuck, misaligned or miswired")  # fmt: skip
    on = _input_after_prompt(session, tech, name, active, do)
    if on is None:
        return Check(name, False, f"no change within {wait_s:g} s of the prompt: the input "
                     f"stayed {_level(rest)} (stuck, miswired or not powered)")  # fmt: skip
    off = _input_after_prompt(session, tech, name, rest, undo)
    if off is None:
        return Check(name, False, f"{_level(active)} seen after {on:.2f} s, then it stayed so "
                     f"for {wait_s:g} s")  # fmt: skip
    return Check(name, True, f"{name} read {_level(active)} {on:.2f} s after the prompt, "
                 f"{_level(rest)} {off:.2f} s after the next")  # fmt: skip


def _level(value: bool) -> str:
    return "on" if value else "off"


# name, the logical value when the technician acts, what to do, how to undo it
HAND_INPUTS = (
    ("photo_eye", True, "block the photo-eye beam", "clear the photo-eye beam"),
    ("deck_front", False, "block the front deck position beam", "clear the front deck beam"),
    ("deck_rear", False, "block the rear deck position beam", "clear the rear deck beam"),
    ("tech_key", True, "turn the technician key on", "turn the technician key off"),
)


def check_photo_eye(session: BoardSession, tech: Technician) -> Check:
    return check_input(session, tech, *HAND_INPUTS[0])


def check_lamps_at_rest(snap: BoardSnapshot) -> Check:
    red, green = snap.outputs["light_red"], snap.outputs["light_green"]
    seen = f"light_red={int(red)} light_green={int(green)}, barrier {snap.barrier}"
    if red and not green:
        return Check("lamps_at_rest", True, f"{seen}: red shown while closed (look: is the "
                     "red lamp lit?)")  # fmt: skip
    return Check("lamps_at_rest", False, f"{seen}: a closed lane must show red, never green")


def check_green(opened: BoardSnapshot | None) -> Check:
    """Green is the interlock's alone (S7): lit at the open limit after OPEN, from loop A's run."""
    if opened is None:
        return Check("light_green", False, "not run: the barrier never reached open in the "
                     "loop checks")  # fmt: skip
    if opened.outputs["light_green"] and not opened.outputs["light_red"]:
        return Check("light_green", True, "green shown, red dark at the open limit after OPEN "
                     "(look: did the green lamp light?)")  # fmt: skip
    return Check("light_green", False, f"at the open limit: light_green="
                 f"{int(opened.outputs['light_green'])} light_red="
                 f"{int(opened.outputs['light_red'])}; green must show there")  # fmt: skip


def watch_output(session: BoardSession, name: str, seconds: float) -> list[tuple[float, bool]]:
    """Changes of output ``name`` in the board's state frames, until it went on and off."""
    changes: list[tuple[float, bool]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(changes) < 2:
        event = session.wait(lambda e: isinstance(e, BoardSnapshot), end - time.monotonic())
        if isinstance(event, BoardSnapshot):
            value = event.outputs[name]
            if value != (changes[-1][1] if changes else False):
                changes.append((event.at, value))
    return changes


def check_buzzer(session: BoardSession, seconds: float = 0.5) -> Check:
    if session.snapshot.outputs["buzzer"]:
        return Check("buzzer", False, "not run: the buzzer is already on")
    session.mark()
    result = session.result(session.board.pulse_output("buzzer", seconds))
    seen = watch_output(session, "buzzer", seconds + 1.0) if result == "ok" else []
    if len(seen) == 2:
        return Check("buzzer", True, f"OUTPUT_PULSE {seconds:g} s: the board drove the buzzer "
                     f"for {seen[1][0] - seen[0][0]:.2f} s (listen: did it sound?)")
    return Check("buzzer", False, f"OUTPUT_PULSE {seconds:g} s answered {result}; the buzzer "
                 + ("went on but not off" if seen else "was never seen on"))  # fmt: skip


def check_loop_blocks_close(
    session: BoardSession, tech: Technician, loop: str, travel_s: float, t_clear_s: float,
    opened: list[BoardSnapshot] | None = None,
) -> Check:
    """``opened`` gets the state seen at the open limit (the green lamp check reads it)."""
    name = f"{loop}_blocks_close"
    label = "loop A (before the barrier)" if loop == "loop_a" else "loop B (under/after it)"
    snap = session.snapshot
    if snap.barrier != "closed" or snap.faults:
        return Check(name, False, f"not run: needs the barrier closed at rest without faults "
                     f"(barrier {snap.barrier}, faults {sorted(snap.faults) or '-'})")  # fmt: skip
    if snap.inputs[loop]:
        return Check(name, False, f"not run: {loop} reads occupied before the test (stuck "
                     "occupied, or a vehicle on it); the barrier was not opened")  # fmt: skip
    on = _input_after_prompt(session, tech, loop, True,
                             f"occupy {label}; the barrier will then open")  # fmt: skip
    if on is None:
        return Check(name, False, f"{loop} stayed clear for {tech.step_timeout_s:g} s after the "
                     "prompt (stuck clear, miswired, detector off); the barrier was not opened")
    open_result = session.result(session.board.open_barrier(valid_for_s=2.0))
    if open_result != "ok":
        return Check(name, False, f"{loop} on after {on:.2f} s; OPEN answered {open_result}")
    at_open = session.barrier("open", travel_s + 2.0)
    if at_open is not None and opened is not None:
        opened.append(at_open)
    if at_open is None:
        return _give_back(session, tech, loop, Check(name, False, f"OPEN ok but the barrier "
                          f"did not report open within {travel_s + 2:g} s"), travel_s, t_clear_s)
    close_result = session.result(session.board.close_when_clear(valid_for_s=2.0))
    session.mark()
    held_s = t_clear_s + 0.5
    moved = session.wait(lambda e: isinstance(e, BoardSnapshot) and e.barrier != "open", held_s)
    evidence = (f"{loop} on after {on:.2f} s; opened; CLOSE_WHEN_CLEAR answered {close_result}; "
                + ("the barrier stayed open" if moved is None else
                   f"the barrier went {moved.barrier if isinstance(moved, BoardSnapshot) else '?'}")
                + f" for {held_s:g} s")  # fmt: skip
    if close_result != "pending" or moved is not None:
        return _give_back(session, tech, loop, Check(name, False, evidence), travel_s, t_clear_s)
    off = _input_after_prompt(session, tech, loop, False, f"clear {label}; the barrier will close")
    if off is None:
        return Check(name, False, f"{evidence}; then {loop} stayed occupied: the barrier is left "
                     "open (it never closes on an occupied loop)")  # fmt: skip
    cleared_at = time.monotonic()
    if session.barrier("closed", t_clear_s + travel_s + 2.0) is None:
        return Check(name, False, f"{evidence}; {loop} cleared but the barrier did not close "
                     f"(now {session.snapshot.barrier})")  # fmt: skip
    took = time.monotonic() - cleared_at
    return Check(name, True, f"{evidence}; closed {took:.2f} s after {loop} cleared")


def _give_back(
    session: BoardSession, tech: Technician, loop: str, failed: Check, travel_s: float,
    t_clear_s: float,
) -> Check:
    """After a failed step with the barrier up: clear the loop and ask the board to close."""
    if session.snapshot.inputs[loop]:
        _input_after_prompt(session, tech, loop, False, "clear the loop; the barrier will close")
    session.result(session.board.close_when_clear(valid_for_s=2.0))
    if session.barrier("closed", t_clear_s + travel_s + 2.0) is None:
        return Check(failed.name, False, failed.evidence + "; the barrier was left "
                     + session.snapshot.barrier)  # fmt: skip
    return failed
