"""A plate read agreed over several camera frames of one truck. Pure functions.

One frame's read can be one character off (a glint, a speck of dirt, noise at night); the next
frame's is often right, or wrong elsewhere. ``vote_plate`` takes each frame's reads and
returns a text only when enough frames support it:

1. whole reads: the text that at least ``min_agree`` frames read (compared after
   ``normalise_plate``, so 8/B or 0/D are one vote) wins, unless another text has as many;
2. otherwise, per character: among the frames with a read of the most common length, every
   position needs ``min_agree`` frames agreeing on it (the province character too).

Neither step guesses: a position that frames disagree on gives no text (``None``), so
the lane reports the plate unread rather than a plate nobody saw.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.identity.plate_match import MAX_PLATE_CHARS, normalise_plate

DEFAULT_MIN_AGREE = 2


@dataclass(frozen=True, slots=True)
class PlateVote:
    text: str | None  # the agreed read, as one frame printed it; None: no agreement
    frames: int  # frames considered
    support: int  # frames that back the text (whole read, or the weakest character)
    by_character: bool = False  # agreed per character rather than as a whole read


def _keys(reads: Sequence[str]) -> dict[str, str]:
    """One frame's usable reads: normalised key -> the first raw text with that key."""
    out: dict[str, str] = {}
    for raw in reads:
        if not isinstance(raw, str):
            continue
        key = normalise_plate(raw)
        if 0 < len(key) <= MAX_PLATE_CHARS and key not in out:
            out[key] = raw
    return out


def vote_plate(frames: Sequence[Sequence[str]], min_agree: int = DEFAULT_MIN_AGREE) -> PlateVote:
    """The plate text at least ``min_agree`` of ``frames`` agree on (see the module doc).

    ``frames`` holds each frame's read texts, oldest first; a frame without a read is an
    empty sequence. Never raises on odd input: non-text reads are ignored.
    """
    need = max(1, int(min_agree))
    per_frame = [_keys(reads) for reads in frames]
    counts: Counter[str] = Counter(key for keys in per_frame for key in keys)
    if not counts:
        return PlateVote(None, len(frames), 0)
    ranked = counts.most_common(2)
    best, votes = ranked[0]
    tie = len(ranked) > 1 and ranked[1][1] == votes
    if votes >= need and not tie:
        raw = next(keys[best] for keys in per_frame if best in keys)
        return PlateVote(raw, len(frames), votes)
    return _by_character(per_frame, need, len(frames))


def _by_character(per_frame: list[dict[str, str]], need: int, frames: int) -> PlateVote:
    lengths = Counter(len(key) for keys in per_frame for key in keys)
    length, _ = lengths.most_common(1)[0]
    # One read per frame: a frame does not get two votes for its two plates.
    rows = [next((k, keys[k]) for k in keys if len(k) == length)
            for keys in per_frame if any(len(k) == length for k in keys)]
    if len(rows) < need:
        return PlateVote(None, frames, 0)
    text, weakest = [], len(rows)
    for pos in range(length):
        tally = Counter(key[pos] for key, _ in rows)
        (ch, n), *rest = tally.most_common(2)
        if n < need or (rest and rest[0][1] == n):
            return PlateVote(None, frames, 0)
        weakest = min(weakest, n)
        # Print the character as a frame that voted for it read it (B, not the folded 8).
        text.append(next(_raw_char(raw, pos, length) for key, raw in rows if key[pos] == ch))
    return PlateVote("".join(text), frames, weakest, by_character=True)


def _raw_char(raw: str, pos: int, length: int) -> str:
    """The raw character behind position ``pos`` of a read's normalised key."""
    chars = [c for c in raw if normalise_plate(c)]
    if len(chars) == length:
        return chars[pos].upper()
    return normalise_plate(raw)[pos]
