"""Random mode changes, hand commands and lane inputs against the real firmware core.

The whole LaneAgent runs on the in-package fakes in virtual time (the fake IO board runs
firmware/interlock.py and controller.py); modes are set through the control path the socket
uses. After every 10 ms: the direction relays are never on together (S6), the arm is never
driven down with a loop or the photo-eye occupied (S2/S3), no OPEN reaches the board while
the lane is out of service or in maintenance, and a board in MAINTENANCE drives no relay.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.control import CONTROL, ControlRequest
from edge_agent.lane.modes import LaneMode
from edge_agent.protocols.iolink import MsgType
from edge_agent.vision.pipeline import QrRead
from simulators.scenarios import DEMO
from simulators.virtual_lane import QR_OUTLINE, VirtualLane

PRESENCE = frozenset({"loop_a", "loop_b", "photo_eye"})
CLOSED_MODES = (LaneMode.OUT_OF_SERVICE, LaneMode.MAINTENANCE)

_MODES = [LaneMode.MANUAL, LaneMode.MANUAL, LaneMode.IN_SERVICE, LaneMode.OUT_OF_SERVICE,
          LaneMode.MAINTENANCE]  # manual most: the mode where a person moves the arm
_HAND = st.tuples(st.just("hand"), st.sampled_from(["open", "close"]))
OPS = st.one_of(
    st.tuples(st.just("mode"), st.sampled_from(_MODES)),
    _HAND, _HAND, _HAND,
    st.tuples(st.just("input"), st.sampled_from(["loop_a", "loop_b", "photo_eye", "tech_key"]),
              st.booleans()),
    st.tuples(st.just("input"), st.sampled_from(["loop_b", "photo_eye"]), st.booleans()),
    st.tuples(st.just("truck"), st.sampled_from([0.0, 30_000.0])),
    st.tuples(st.just("pass")),
    # open by hand, close by hand, and someone steps under the arm as it comes down
    st.tuples(st.just("cycle"), st.sampled_from(["loop_a", "loop_b", "photo_eye"]),
              st.sampled_from([0.32, 0.4, 0.6])),
)


class Rig:
    def __init__(self, workdir: Path) -> None:
        self.lane = VirtualLane(workdir, DEMO)
        self.agent, self.board = self.lane.agent, self.lane.board
        self.pass_text = self.lane.issue_pass(DEMO.trucks[0])
        self.opens_seen = 0

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        request = ControlRequest(op, 0, "tech", reason="random", **fields)
        self.agent.command(CONTROL, request, self.lane.clock())
        reply = request.wait(0.0)
        assert reply is not None, "the agent answered no control request"
        return reply

    def apply(self, op: tuple[Any, ...]) -> None:
        now = self.lane.clock()
        match op:
            case ("mode", mode):
                self.ask("mode", mode=mode)
            case ("hand", action):
                self.ask("barrier", open=action == "open")
            case ("input", name, value):
                self.board.set_input(name, value)
            case ("truck", kg):
                self.lane.indicator.set_weight(kg, motion=False)
            case ("pass",):
                assert self.pass_text is not None
                self.agent.handle(QrRead(self.pass_text, QR_OUTLINE, now, "virtual", 0.0), now)
            case ("cycle", name, after_s):
                self.ask("barrier", open=True)
                self.run(1.2)
                self.ask("barrier", open=False)
                self.run(after_s)
                self.board.set_input(name, True)
                self.run(0.2)
                self.board.set_input(name, False)

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.01)):
            self.lane.clock.advance(0.01)
            now = self.lane.clock()
            for event in self.lane.devices.board.read_events(0.0):
                self.agent.handle(event, now)
            for arrival in self.lane.devices.weighbridge.read(0.0):
                self.agent.handle(arrival, now)
            self.agent.tick(now)
            self.check()

    def check(self) -> None:
        board, mode = self.board, self.agent.machine.modes.mode
        outputs, seen = board.outputs(), board.seen_inputs()
        assert board.relay_conflicts == 0, "S6: both direction relays on"
        if outputs["barrier_close"]:
            assert not seen & PRESENCE, f"S2: closing with {sorted(seen & PRESENCE)} occupied"
        opens = len(board.received(MsgType.OPEN))
        if mode in CLOSED_MODES:
            assert opens == self.opens_seen, f"an OPEN reached the board in {mode}"
        self.opens_seen = opens
        if board.barrier == "maintenance":
            assert not outputs["barrier_open"] and not outputs["barrier_close"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.sampled_from(_MODES),
       ops=st.lists(st.tuples(OPS, st.sampled_from([0.05, 0.3, 1.5])), min_size=8,
                    max_size=20))  # fmt: skip
def test_no_mode_or_hand_command_gets_past_the_firmware_interlocks(
    start: LaneMode, ops: list[tuple[tuple[Any, ...], float]],
) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        rig = Rig(Path(workdir))
        try:
            rig.run(0.5)  # the link is up, the board reports the barrier
            for op, wait_s in [(("mode", start), 0.05), *ops]:
                rig.apply(op)
                rig.run(wait_s)
        finally:
            rig.lane.close()
