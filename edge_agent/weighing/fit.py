"""Fit a constant plus one or two decaying oscillations to a stretch of weight samples.

After a truck stops, the deck reading is the static weight W plus the truck's body heave
(0.8-4 Hz, one mode or a bounce and a pitch mode, damped from lightly to strongly), aliased
wheel hop and noise. Modelling the swing

    x(t) = W + sum_m exp(-s_m t) (a_m cos(w_m t) + b_m sin(w_m t)) + noise

lets us read W long before the swing has died down, which is when a classical "all samples
within 1 e" detector would answer. For fixed (s_m, w_m) the model is linear in W, a_m, b_m,
so we solve it by least squares over a grid of (s, w) and refine around the best point
(variable projection); a second mode is searched with the first held, then both are refined
in turn. The residual tells whether the model explains the data at all (a truck still
rolling or a ramp inside the window does not fit), and the least-squares covariance gives an
honest standard error of W.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Fine at the low end: a lightly damped deck decays at 0.1-0.3 /s and must not be read as 0.
DECAY_GRID = np.array([0.0, 0.07, 0.15, 0.25, 0.4, 0.6, 0.9, 1.3, 1.9, 2.7, 3.8, 5.5, 8.0])
FREQ_POINTS = 20
MIN_FREQ_HZ = 0.4
MAX_FREQ_HZ = 4.5
REFINE_ROUNDS = 2
LINEAR_PER_MODE = 2
NONLINEAR_PER_MODE = 2


@dataclass(frozen=True, slots=True)
class Mode:
    """One fitted swing (times relative to the window start)."""

    amplitude: float
    decay_per_s: float
    freq_hz: float

    def left_after(self, span_s: float) -> float:
        """The swing's amplitude ``span_s`` after the window start."""
        return self.amplitude * float(np.exp(-self.decay_per_s * span_s))


@dataclass(frozen=True, slots=True)
class OscillationFit:
    """Result of :func:`fit_decaying_oscillation` (times relative to the window start).

    ``amplitude``, ``decay_per_s`` and ``freq_hz`` are those of the largest mode."""

    level: float
    level_stderr: float
    amplitude: float
    decay_per_s: float
    freq_hz: float
    residual_rms: float
    samples: int
    modes: tuple[Mode, ...] = ()


def _mode_basis(tau: FloatArray, decay: float, freq: float) -> FloatArray:
    envelope = np.exp(-decay * tau)
    phase = 2 * np.pi * freq * tau
    basis: FloatArray = np.stack([envelope * np.cos(phase), envelope * np.sin(phase)], axis=-1)
    return basis


def _solve(
    tau: FloatArray, x: FloatArray, fixed: FloatArray, decay: FloatArray, freq: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Least squares for every (decay, freq) pair of a new mode beside the ``fixed`` columns
    (N, k) and the constant; returns (rss, beta, gram) per pair, beta = [W, fixed.., a, b]."""
    envelope = np.exp(-decay[:, None] * tau[None, :])  # (D, N)
    phase = 2 * np.pi * freq[:, None] * tau[None, :]  # (F, N)
    b1 = envelope[:, None, :] * np.cos(phase)[None, :, :]  # (D, F, N)
    b2 = envelope[:, None, :] * np.sin(phase)[None, :, :]
    shape = b1.shape
    columns = [np.ones(shape)]
    columns += [np.broadcast_to(fixed[:, k], shape) for k in range(fixed.shape[1])]
    basis = np.stack([*columns, b1, b2], axis=-1)  # (D, F, N, P)
    size = basis.shape[-1]
    gram = np.einsum("dfni,dfnj->dfij", basis, basis)
    rhs = np.einsum("dfni,n->dfi", basis, x)
    ridge = 1e-9 * np.trace(gram, axis1=-2, axis2=-1)[..., None, None] * np.eye(size)
    beta = np.linalg.solve(gram + ridge, rhs[..., None])[..., 0]
    rss = np.maximum(float(x @ x) - np.einsum("dfi,dfi->df", beta, rhs), 0.0)
    return rss, beta, gram + ridge


def _search(
    tau: FloatArray, x: FloatArray, fixed: FloatArray, freq_top: float,
    start: tuple[float, float] | None = None,
) -> tuple[float, float, float, FloatArray, FloatArray]:
    """Best (decay, freq) of one new mode beside ``fixed``: a grid (or around ``start``),
    then local refinement. Returns (decay, freq, rss, beta, gram)."""
    if start is None:
        decay = DECAY_GRID
        freq = np.linspace(MIN_FREQ_HZ, max(freq_top, MIN_FREQ_HZ + 0.1), FREQ_POINTS)
        rss, beta, gram = _solve(tau, x, fixed, decay, freq)
        d, f = np.unravel_index(int(np.argmin(rss)), rss.shape)
        best_decay, best_freq = float(decay[d]), float(freq[f])
        above, below = min(int(d) + 1, len(decay) - 1), max(int(d) - 1, 0)
        step_decay = 0.5 * max(float(decay[above] - decay[below]), 0.05)
        step_freq = float(freq[1] - freq[0])
    else:
        best_decay, best_freq = start
        step_decay, step_freq = max(0.15 * best_decay, 0.04), 0.05
    for _ in range(REFINE_ROUNDS):
        step_decay, step_freq = step_decay / 2, step_freq / 2
        local_decay = np.maximum(best_decay + step_decay * np.array([-1.0, 0.0, 1.0]), 0.0)
        local_freq = np.maximum(best_freq + step_freq * np.array([-1.0, 0.0, 1.0]), 0.05)
        rss, beta, gram = _solve(tau, x, fixed, local_decay, local_freq)
        d, f = np.unravel_index(int(np.argmin(rss)), rss.shape)
        best_decay, best_freq = float(local_decay[d]), float(local_freq[f])
    return best_decay, best_freq, float(rss[d, f]), beta[d, f], gram[d, f]


def fit_decaying_oscillation(
    t: FloatArray, x: FloatArray, *, modes: int = 1
) -> OscillationFit | None:
    """Fit ``W + sum of modes x exp(-s t)(a cos wt + b sin wt)`` to samples ``x`` at ``t``.

    Returns None when there are too few samples for the parameters.
    """
    n = len(t)
    parameters = 1 + modes * (LINEAR_PER_MODE + NONLINEAR_PER_MODE)
    if n < parameters + 3 or t[-1] <= t[0]:
        return None
    tau = t - t[0]
    offset = float(np.mean(x))
    centred = x - offset
    rate = (n - 1) / float(tau[-1])
    top = min(MAX_FREQ_HZ, 0.49 * rate)
    none = np.zeros((n, 0))
    decay0, freq0, rss, coef, gram = _search(tau, centred, none, top)
    second: tuple[float, float] | None = None
    if modes == 2:
        second = _search(tau, centred, _mode_basis(tau, decay0, freq0), top)[:2]
        # The first mode was found alone: refine it with the second one beside it.
        decay0, freq0, rss, coef, gram = _search(
            tau, centred, _mode_basis(tau, *second), top, start=(decay0, freq0))
    sigma2 = rss / (n - parameters)
    try:
        cov0 = float(np.linalg.inv(gram)[0, 0])
    except np.linalg.LinAlgError:
        return None
    # coef order: W, then the held mode's a, b (when two), then the searched mode's a, b.
    fitted = [Mode(float(np.hypot(coef[-2], coef[-1])), decay0, freq0)]
    if second is not None:
        fitted.append(Mode(float(np.hypot(coef[1], coef[2])), *second))
    largest = max(fitted, key=lambda m: m.amplitude)
    return OscillationFit(
        level=offset + float(coef[0]),
        level_stderr=float(np.sqrt(max(sigma2 * cov0, 0.0))),
        amplitude=largest.amplitude,
        decay_per_s=largest.decay_per_s,
        freq_hz=largest.freq_hz,
        residual_rms=float(np.sqrt(rss / n)),
        samples=n,
        modes=tuple(fitted),
    )
