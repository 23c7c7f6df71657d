"""Evidence chunking: bounded parts that reassemble exactly, in any order, or not at all."""

from __future__ import annotations

import os
import random

import pytest

from edge_agent.errors import LocalProtocolError, RemoteProtocolError
from edge_agent.telemetry.evidence_chunks import CHUNK_BYTES, assemble_evidence, chunk_evidence


def test_a_file_round_trips_through_bounded_chunks_in_any_order_with_duplicates() -> None:
    data = os.urandom(3 * CHUNK_BYTES + 123)
    chunks = chunk_evidence("t1-weight.frozen", data, "image/jpeg")
    assert len(chunks) == 4
    assert all(len(c["data"]) <= (CHUNK_BYTES * 4) // 3 + 4 for c in chunks)
    shuffled = chunks + chunks[:2]
    random.Random(7).shuffle(shuffled)
    assert assemble_evidence(shuffled, "t1-weight.frozen") == data


def test_missing_parts_mean_not_yet() -> None:
    chunks = chunk_evidence("r", os.urandom(2 * CHUNK_BYTES), "image/jpeg")
    assert assemble_evidence(chunks[:1], "r") is None
    assert assemble_evidence(chunks, "other-ref") is None


def test_a_tampered_part_is_refused() -> None:
    chunks = chunk_evidence("r", os.urandom(CHUNK_BYTES + 10), "image/jpeg")
    tampered = dict(chunks[1], data="QUFBQQ==")
    with pytest.raises(RemoteProtocolError, match="hash"):
        assemble_evidence([chunks[0], tampered], "r")


def test_parts_that_disagree_are_refused() -> None:
    first = chunk_evidence("r", os.urandom(CHUNK_BYTES + 10), "image/jpeg")
    second = chunk_evidence("r", os.urandom(CHUNK_BYTES + 10), "image/jpeg")
    with pytest.raises(RemoteProtocolError, match="disagree"):
        assemble_evidence([first[0], second[1]], "r")


def test_empty_or_oversized_evidence_is_our_mistake() -> None:
    with pytest.raises(LocalProtocolError):
        chunk_evidence("r", b"", "image/jpeg")
    with pytest.raises(LocalProtocolError):
        chunk_evidence("", b"x", "image/jpeg")
