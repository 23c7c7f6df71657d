"""What the lane says: every event type it publishes and every code its events carry.

Both are ``StrEnum``: a member equals its string, so it goes on the wire as that string
(``json.dumps``, topics) and compares equal to it. The strings are contracts (design section
4.4 and 6): add members, never rename one.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """The ``type`` of an event the lane publishes (``evt/{type}``, or ``cmd_result``)."""

    # the lane machine: one truck's transit
    TRUCK_ARRIVED = "truck_arrived"
    PASS_READ = "pass_read"
    WEIGHT_COMMITTED = "weight_committed"
    DECISION = "decision"
    RELEASED = "released"
    RELEASE_REFUSED = "release_refused"
    REMOTE_VERDICT = "remote_verdict"  # an officer refused the truck or asked for a re-weigh
    PASS_USED = "pass_used"
    VEHICLE_PASSED = "vehicle_passed"
    TRANSIT_CLOSED = "transit_closed"
    # the lane machine: the lane's devices and records
    ABNORMALITY = "abnormality"
    BARRIER = "barrier"
    IO_LINK_RESTORED = "io_link_restored"
    STORAGE_RESTORED = "storage_restored"
    CAMERA_RESTORED = "camera_restored"
    IDENTITY_SOURCE_RESTORED = "identity_source_restored"  # a plate camera or engine is back
    LANE_MODE = "lane_mode"  # the lane's mode changed: who, why, since when, from what
    # the shell
    EVIDENCE = "evidence"
    CMD_RESULT = "cmd_result"
    DEAD_LETTER = "dead_letter"
    LANE_OFFLINE = "lane_offline"  # a planned stop: by whom and why, sent before disconnecting
    TRANSACTION_RECORD = "transaction_record"  # a record of the lane's log (docs/records.md)

    @property
    def urgent(self) -> bool:
        """Sent ahead of a backlog: an officer (or the backend's operator) is waiting for it."""
        return self in _URGENT


_URGENT = frozenset({EventType.ABNORMALITY, EventType.CMD_RESULT, EventType.DEAD_LETTER,
                     EventType.LANE_OFFLINE})


class Code(StrEnum):
    """A stable, dotted reason: why a pass was refused, a truck held or a command refused."""

    # a weighing abnormality
    WEIGHT_UNSTABLE_TIMEOUT = "weight.unstable_timeout"
    WEIGHT_NOT_ON_DECK = "weight.not_on_deck"
    WEIGHT_ZERO_OUT_OF_BAND = "weight.zero_out_of_band"
    WEIGHT_ZERO_DRIFT = "weight.zero_drift"
    WEIGHT_STEP_WHILE_STATIONARY = "weight.step_while_stationary"
    WEIGHT_FROZEN = "weight.frozen"
    WEIGHT_OVERLOAD = "weight.overload"
    WEIGHT_NEGATIVE = "weight.negative"
    WEIGHT_COMM_LOSS = "weight.comm_loss"
    WEIGHT_CHECKSUM_ERRORS = "weight.checksum_errors"
    WEIGHT_IMPLAUSIBLE_JUMP = "weight.implausible_jump"
    WEIGHT_DECLARED_MISMATCH = "weight.declared_mismatch"
    WEIGHT_NET_READING = "weight.net_reading"
    WEIGHT_INDICATION_MISMATCH = "weight.indication_mismatch"  # estimate vs indicator > 1 e
    WEIGHT_INDICATION_MISSING = "weight.indication_missing"  # no stable indication in time
    WEIGHT_SCALE_UNHEALTHY = "weight.scale_unhealthy"  # between trucks: zero, trend, noise
    # a refused pass, in the verifier's order; already_used comes from the pass ledger
    PASS_BAD_FORMAT = "pass.bad_format"
    PASS_UNKNOWN_KEY = "pass.unknown_key"
    PASS_BAD_SIGNATURE = "pass.bad_signature"
    PASS_EXPIRED = "pass.expired"
    PASS_NOT_YET_VALID = "pass.not_yet_valid"
    PASS_WRONG_SITE = "pass.wrong_site"
    PASS_WRONG_GATE = "pass.wrong_gate"
    PASS_WRONG_DIRECTION = "pass.wrong_direction"
    PASS_REVOKED = "pass.revoked"
    PASS_ALREADY_USED = "pass.already_used"
    PASS_BAD_CONTAINER = "pass.bad_container"  # a container number fails ISO 6346
    # the truck is not the one its pass names (identity checks, edge_agent/lane/identity.py)
    VEHICLE_PLATE_MISMATCH = "vehicle.plate_mismatch"  # plates read, none the pass names
    VEHICLE_PLATE_UNREAD = "vehicle.plate_unread"  # no plate read in time: hold or flag
    # containers and seals against the pass (edge_agent/identity/containers.py, seals.py)
    VEHICLE_CONTAINER_MISMATCH = "vehicle.container_mismatch"  # a container not on the pass
    VEHICLE_CONTAINER_UNREAD = "vehicle.container_unread"  # a container on the pass not seen
    VEHICLE_SEAL_MISMATCH = "vehicle.seal_mismatch"  # a seal open, or another seal instead
    VEHICLE_SEAL_UNREAD = "vehicle.seal_unread"  # a seal on the pass not seen
    VEHICLE_SEAL_TAMPERED = "vehicle.seal_tampered"  # an e-seal on the pass reports tampering
    # the lane itself
    LANE_IO_LINK_LOST = "lane.io_link_lost"
    LANE_SAFETY_FAULT = "lane.safety_fault"
    LANE_BARRIER_TIMEOUT = "lane.barrier_timeout"
    LANE_CAMERA_LOST = "lane.camera_lost"
    LANE_IDENTITY_SOURCE_LOST = "lane.identity_source_lost"  # plate camera or engine down
    LANE_STORAGE_FAULT = "lane.storage_fault"
    LANE_NO_TRUCK = "lane.no_truck"
    LANE_STATE_QUARANTINED = "lane.state_quarantined"
    LANE_RECORD_LOG_FAULT = "lane.record_log_fault"  # the transaction log refuses records
    LANE_OUT_OF_SERVICE = "lane.out_of_service"
    LANE_MAINTENANCE = "lane.maintenance"
    LANE_MANUAL = "lane.manual"
    # a refused remote command (``cmd_result``)
    CMD_BAD_FORMAT = "cmd.bad_format"
    CMD_UNKNOWN_KEY = "cmd.unknown_key"
    CMD_BAD_SIGNATURE = "cmd.bad_signature"
    CMD_WRONG_TOPIC = "cmd.wrong_topic"
    CMD_UNKNOWN_COMMAND = "cmd.unknown_command"
    CMD_KEY_NOT_ALLOWED = "cmd.key_not_allowed"
    CMD_WRONG_LANE = "cmd.wrong_lane"
    CMD_BAD_LIFETIME = "cmd.bad_lifetime"
    CMD_NOT_YET_VALID = "cmd.not_yet_valid"
    CMD_EXPIRED = "cmd.expired"
    CMD_INVALID_ARGS = "cmd.invalid_args"
    CMD_REPLAYED = "cmd.replayed"
    CMD_STALE_VERSION = "cmd.stale_version"
    CMD_STORAGE_FAULT = "cmd.storage_fault"
    CMD_PRECONDITION = "cmd.precondition"
