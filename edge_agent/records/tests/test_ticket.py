"""The weighing ticket: golden text and ESC/POS bytes of one fixed transit record."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.records.codec import GENESIS, Record, make_record
from edge_agent.records.tests.sample_log import SOFTWARE, UTC0
from edge_agent.records.ticket import (
    TicketError,
    columns,
    kg_text,
    render_escpos,
    render_text,
    software_for,
    ticket_from_record,
    ticket_lines,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
HEADER = make_record(KEY, seq=0, kind="header", utc=UTC0, mono=0.0,
                     body={"site": "BZ01", "lane": "L3"}, prev_hash=GENESIS)  # fmt: skip
# Fixed here, not built by bodies.py, so the golden bytes change only when the ticket does.
BODY = {"transit_id": "t-000017", "boot_id": 1, "decision": "open", "reasons": [],
        "weight_kg": 32480.0, "estimate_kg": 32483.0, "indicator_kg": 32480.0,
        "indicator_stable": True, "release_no": "R-2026-0017",
        "pass": {"release_no": "R-2026-0017", "plates": ["沪A12345", "沪B6789挂"]},
        "plates": ["沪A12345", "沪B6789挂"], "containers": ["MSCU1234565"],
        "plates_read": ["沪A12345"], "plate_read": "沪A12345", "software": SOFTWARE}
TRANSIT = make_record(KEY, seq=17, kind="transit", utc=UTC0 + 62.5, mono=62.5, body=BODY,
                      prev_hash="1" * 64)  # fmt: skip

GOLDEN_32 = """\
        WEIGHING TICKET
            BZ01 L3
--------------------------------
Time UTC  2026-12-03 13:16:00
Gross     32 480 kg
Pass      R-2026-0017
Plates    沪A12345, 沪B6789挂
Container MSCU1234565
Camera    沪A12345
Decision  open
Transit   t-000017
--------------------------------
Record    segment 3 seq 17
Hash      ddca 0ad3 e1af d364
          6cff 682e d9cc 5bf1
          755c c78b 04c3 fef5
          0c52 69bc ff68 a2e8
Software  0.1.0
SW id     abab abab abab abab
          abab abab abab abab
          abab abab abab abab
          abab abab abab abab
"""


def ticket() -> str:
    return render_text(ticket_from_record(TRANSIT, HEADER, segment=3))


def test_text_ticket_is_golden() -> None:
    assert TRANSIT.hash.startswith("ddca0ad3e1afd364")  # the record the golden text shows
    assert ticket() == GOLDEN_32


def test_escpos_ticket_is_golden() -> None:
    printed = render_escpos(ticket_from_record(TRANSIT, HEADER, segment=3))
    body = GOLDEN_32.split("\n", 1)[1]  # after the title line
    expected = (b"\x1b@" b"\x1c&" b"\x1ba\x01" b"\x1bE\x01" b"WEIGHING TICKET\n" b"\x1bE\x00"
                b"\x1ba\x00" + body.encode("gb18030") + b"\x1bd\x04" b"\x1dV\x01")
    assert printed == expected
    assert printed.startswith(b"\x1b@") and printed.endswith(b"\x1dV\x01")  # init ... cut


def test_cp437_printer_gets_question_marks_not_a_crash() -> None:
    printed = render_escpos(ticket_from_record(TRANSIT, HEADER), encoding="cp437")
    assert printed.startswith(b"\x1b@\x1bt\x00")
    assert b"?A12345" in printed and b"32 480 kg" in printed


@pytest.mark.parametrize("width", [24, 32, 42, 48, 80])
def test_no_line_is_wider_than_the_paper(width: int) -> None:
    lines = ticket_lines(ticket_from_record(TRANSIT, HEADER), width)
    assert all(columns(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "").count(TRANSIT.hash) == 1  # the hash in full


def test_software_on_record_wins_over_the_one_given() -> None:
    t = ticket_from_record(TRANSIT, HEADER, {"version": "9.9.9", "sha256": "cd" * 32})
    assert (t.software, t.software_hash) == (SOFTWARE["version"], SOFTWARE["sha256"])
    bare = make_record(KEY, seq=2, kind="transit", utc=UTC0, mono=0.0,
                       body={"indicator_kg": 1000}, prev_hash="1" * 64)  # fmt: skip
    given = ticket_from_record(bare, None, {"version": "9.9.9", "sha256": "cd" * 32})
    assert given.software == "9.9.9" and given.lane == ""


def test_software_for_follows_updates() -> None:
    def rec(seq: int, kind: str, body: dict[str, object]) -> Record:
        return make_record(KEY, seq=seq, kind=kind, utc=UTC0, mono=0.0, body=body,
                           prev_hash="1" * 64)  # fmt: skip

    header = rec(0, "header", {"anchor": {"software": {"version": "0.1.0", "sha256": "a"}}})
    update = rec(1, "software_update", {"old": None, "new": {"version": "0.2.0", "sha256": "b"}})
    assert software_for([header])["version"] == "0.1.0"
    assert software_for([header, update])["version"] == "0.2.0"
    assert software_for([rec(0, "header", {})]) == {}


def test_no_indication_no_ticket() -> None:
    body = {**TRANSIT.body, "indicator_kg": None}
    held = make_record(KEY, seq=3, kind="transit", utc=UTC0, mono=0.0, body=body,
                       prev_hash="1" * 64)  # fmt: skip
    with pytest.raises(TicketError, match="no indicator value"):
        ticket_from_record(held)
    with pytest.raises(TicketError, match="only a transit"):
        ticket_from_record(HEADER)


def test_unknown_printer_encoding_is_refused() -> None:
    with pytest.raises(TicketError, match="encoding"):
        render_escpos(ticket_from_record(TRANSIT), encoding="utf-16")


@pytest.mark.parametrize(("kg", "text"), [(32480, "32 480 kg"), (980.0, "980 kg"),
                                          (1234567, "1 234 567 kg"), (32480.5, "32480.5 kg")])
def test_kg_text(kg: float, text: str) -> None:  # fmt: skip
    assert kg_text(kg) == text
