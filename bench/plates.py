"""Plate reading, measured: the raw engine against the lane's judgement, per condition and kind.

For each plate kind (blue, yellow, green new-energy, EU-style Latin) and each condition
(clean, perspective, blur, night, dirt, occlusion), ``plates_per_cell`` seeded sightings: a
truck front in a 1280x720 colour frame (``simulators.plate_render``, 0.5 px/mm, so a blue
plate is 220 px wide), three frames per sighting as a camera at ``CAMERA_FPS`` gives them.

- raw: the engine's first-frame reads; read = one equals the plate's characters exactly,
  wrong = a read that is not the plate.
- ours: the lane's judgement on the first frame, ``match_plate(reads, [pass plate])``;
  read = accepted. Wrong = accepted when it should not be: the same reads matched against a
  decoy pass whose plate differs from the truck's in one serial character.
- vote: ``vote_plate`` over the three frames, then ``plates_match`` as above.
- time to read: a truck's plate comes into view at 0; the lane needs k frames
  (first accepted single frame, or the vote's 2 or 3), so k x frame period + that frame's
  decode time; the period is the camera's, or the decode time when decoding is slower.
- grey: the clean first frames as the ``sim://`` wire carries them (greyscale).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_agent.identity.plate_match import match_plate, plates_match
from edge_agent.vision.plate_vote import vote_plate
from simulators.plate_render import (
    CONDITIONS,
    DIGITS,
    KINDS,
    LATIN,
    LETTERS,
    draw_condition,
    plate_layout,
    random_plate_text,
    render_plate_frame,
    to_gray,
)

PLATES_PER_CELL = 5
FRAMES_PER_SIGHTING = 3
CAMERA_FPS = 8.0
PX_PER_MM = 0.5
SEED = 36


@dataclass
class Sighting:
    kind: str
    condition: str
    text: str
    decoy: str
    frames: list[list[str]] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    gray_reads: list[str] | None = None

    @property
    def chars(self) -> str:
        return self.text.replace("-", "")


def decoy_plate(text: str, kind: str, rng: np.random.Generator) -> str:
    """Another truck's plate: one serial character changed within its class (digit or
    letter), never into a confusable twin, so a lane must tell the two apart."""
    start = 4 if kind == "eu" else 2  # past the province and letter, or the first pair
    positions = [i for i in range(start, len(text)) if text[i] not in "-"]
    pos = positions[int(rng.integers(0, len(positions)))]
    pool = DIGITS if text[pos].isdigit() else (LATIN if kind == "eu" else LETTERS)
    choices = [c for c in pool if c != text[pos] and not plates_match(c, text[pos])]
    return text[:pos] + choices[int(rng.integers(0, len(choices)))] + text[pos + 1:]


def _sightings(per_cell: int, engine: Any) -> tuple[list[Sighting], list[float]]:
    sightings: list[Sighting] = []
    render_ms: list[float] = []
    for k, kind in enumerate(KINDS):
        sample = random_plate_text(kind, np.random.default_rng(0))
        width_px = plate_layout(kind, sample).size_mm[0] * PX_PER_MM
        for c, condition in enumerate(CONDITIONS):
            for i in range(per_cell):
                rng = np.random.default_rng([SEED, k, c, i])
                text = random_plate_text(kind, rng)
                seen = Sighting(kind, condition, text, decoy_plate(text, kind, rng))
                drawn = draw_condition(condition, rng)
                centre = (float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.55, 0.7)))
                for f in range(FRAMES_PER_SIGHTING):
                    started = time.perf_counter()
                    frame = render_plate_frame(text, kind, rng=rng, condition=drawn,
                                               plate_width_px=width_px, centre=centre,
                                               scene_seed=i % 6)
                    render_ms.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    reads = [r.text for r in engine.read(frame.image)]
                    seen.decode_ms.append((time.perf_counter() - started) * 1000)
                    seen.frames.append(reads)
                    if f == 0 and condition == "clean":
                        seen.gray_reads = [r.text for r in engine.read(to_gray(frame.image))]
                sightings.append(seen)
    return sightings, render_ms


def _accepted(reads: list[str], plate: str) -> bool:
    return match_plate(reads, [plate]).matched is not None


def _voted(frames: list[list[str]], plate: str) -> bool:
    text = vote_plate(frames).text
    return text is not None and plates_match(text, plate)


def _time_to_read(seen: Sighting, period_ms: float, vote: bool) -> float | None:
    for k in range(2 if vote else 1, len(seen.frames) + 1):
        ok = _voted(seen.frames[:k], seen.text) if vote else _accepted(seen.frames[k - 1],
                                                                       seen.text)
        if ok:
            return k * max(period_ms, seen.decode_ms[k - 1]) + seen.decode_ms[k - 1]
    return None


def _pct(hits: int, of: int) -> float:
    return round(100 * hits / of, 1) if of else 0.0


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 0) if values else None


def cell_figures(cell: list[Sighting], period_ms: float) -> dict[str, Any]:
    """Read and wrong-read rates (percent of the cell's sightings) and time to read."""
    n = len(cell)
    raw_read = sum(s.chars in s.frames[0] for s in cell)
    raw_wrong = sum(any(t != s.chars for t in s.frames[0]) for s in cell)
    ours_read = sum(_accepted(s.frames[0], s.text) for s in cell)
    ours_wrong = sum(_accepted(s.frames[0], s.decoy) for s in cell)
    any_wrong = sum(any(_accepted(f, s.decoy) for f in s.frames) for s in cell)
    vote_read = sum(_voted(s.frames, s.text) for s in cell)
    vote_wrong = sum(_voted(s.frames, s.decoy) for s in cell)
    single_t = [t for s in cell if (t := _time_to_read(s, period_ms, vote=False)) is not None]
    vote_t = [t for s in cell if (t := _time_to_read(s, period_ms, vote=True)) is not None]
    return {
        "sightings": n,
        "raw_read_pct": _pct(raw_read, n), "raw_wrong_pct": _pct(raw_wrong, n),
        "ours_read_pct": _pct(ours_read, n), "ours_wrong_pct": _pct(ours_wrong, n),
        "vote_read_pct": _pct(vote_read, n), "vote_wrong_pct": _pct(vote_wrong, n),
        "ours_any_frame_read_pct": _pct(len(single_t), n),
        "ours_any_frame_wrong_pct": _pct(any_wrong, n),
        "time_to_read_ms_median": _median(single_t),
        "vote_time_to_read_ms_median": _median(vote_t),
        "examples": [{"plate": s.text, "reads": s.frames[0]} for s in cell[:2]],
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _print_table(cells: dict[str, dict[str, dict[str, Any]]]) -> None:
    print(f"  {'':<19}{'raw (1 frame)':>15}{'ours (1 frame)':>15}{'ours (any of 3)':>16}"
          f"{'vote (3)':>14}{'time to read ms':>18}")
    print(f"  {'kind':<7}{'condition':<12}" + f"{'read':>8}{'wrong':>7}" * 4
          + f"{'ours':>9}{'vote':>9}")
    for kind, rows in cells.items():
        for condition, r in rows.items():
            t1, t3 = r["time_to_read_ms_median"], r["vote_time_to_read_ms_median"]
            print(f"  {kind:<7}{condition:<12}{r['raw_read_pct']:>7.0f}%"
                  f"{r['raw_wrong_pct']:>6.0f}%{r['ours_read_pct']:>7.0f}%"
                  f"{r['ours_wrong_pct']:>6.0f}%{r['ours_any_frame_read_pct']:>7.0f}%"
                  f"{r['ours_any_frame_wrong_pct']:>6.0f}%{r['vote_read_pct']:>7.0f}%"
                  f"{r['vote_wrong_pct']:>6.0f}%{_ms(t1):>9}{_ms(t3):>9}")


def run(results: dict[str, Any], plates_per_cell: int = PLATES_PER_CELL) -> None:
    from edge_agent.vision.plates import default_engine

    engine = default_engine()  # PlateEngineMissing names what is not installed
    started = time.perf_counter()
    sightings, render_ms = _sightings(plates_per_cell, engine)
    decode = [ms for s in sightings for ms in s.decode_ms]
    period_ms = max(1000 / CAMERA_FPS, float(np.median(decode)))
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in KINDS:
        cells[kind] = {c: cell_figures([s for s in sightings
                                        if s.kind == kind and s.condition == c], period_ms)
                       for c in CONDITIONS}
    gray: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        clean = [s for s in sightings if s.kind == kind and s.gray_reads is not None]
        gray[kind] = {
            "raw_read_pct": _pct(sum(s.chars in (s.gray_reads or []) for s in clean),
                                 len(clean)),
            "ours_read_pct": _pct(sum(_accepted(s.gray_reads or [], s.text) for s in clean),
                                  len(clean)),
        }
    out: dict[str, Any] = {
        "plates_per_cell": plates_per_cell, "frames_per_sighting": FRAMES_PER_SIGHTING,
        "frame": "1280x720 BGR", "px_per_mm": PX_PER_MM, "camera_fps": CAMERA_FPS,
        "frame_period_used_ms": round(period_ms, 1),
        "decode_ms_p50": round(float(np.percentile(decode, 50)), 1),
        "decode_ms_p99": round(float(np.percentile(decode, 99)), 1),
        "render_ms_p50": round(float(np.percentile(render_ms, 50)), 1),
        "cells": cells, "gray_clean_first_frame": gray,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"\nPlate reading ({plates_per_cell} plates per cell, {FRAMES_PER_SIGHTING} frames "
          f"each, 1280x720, {PX_PER_MM} px/mm: blue plate 220 px wide)")
    _print_table(cells)
    print(f"  decode ms per frame p50 {out['decode_ms_p50']}, p99 {out['decode_ms_p99']}; "
          f"time to read = frames x {out['frame_period_used_ms']} ms + decode")
    print("  greyscale (sim:// wire), clean first frame: " + ", ".join(
        f"{k} raw {g['raw_read_pct']:.0f}% ours {g['ours_read_pct']:.0f}%"
        for k, g in gray.items()))
    results["plates"] = out
