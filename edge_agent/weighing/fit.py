"""Fit a constant plus one decaying oscillation to a stretch of weight samples.

After a truck stops, the deck reading is the static weight W plus the truck's body heave
(1-3 Hz, decaying over a few seconds), wheel hop and noise. Modelling the heave

    x(t) = W + exp(-s t) (a cos(w t) + b sin(w t)) + noise

lets us read W long before the swing has died down, which is when a classical "all samples
within 1 e" detector would answer. For a fixed (s, w) the model is linear in (W, a, b), so we
solve it by least squares over a grid of (s, w) and refine around the best point (variable
projection). The residual tells whether the model explains the data at all (a truck still
rolling or a ramp inside the window does not fit), and the least-squares covariance gives an
honest standard error of W.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DECAY_GRID = np.array([0.0, 0.25, 0.5, 0.8, 1.2, 1.7, 2.4, 3.3, 4.5])
FREQ_POINTS = 20
MIN_FREQ_HZ = 0.4
MAX_FREQ_HZ = 4.0
REFINE_ROUNDS = 2
# Three linear parameters plus the two searched ones.
PARAMETERS = 5


@dataclass(frozen=True, slots=True)
class OscillationFit:
    """Result of :func:`fit_decaying_oscillation` (times relative to the window start)."""

    level: float
    level_stderr: float
    amplitude: float
    decay_per_s: float
    freq_hz: float
    residual_rms: float
    samples: int


def _solve(tau: FloatArray, x: FloatArray, decay: FloatArray, freq: FloatArray) -> tuple[
    FloatArray, FloatArray, FloatArray
]:
    """Least squares for every (decay, freq) pair; returns (rss, beta, gram) per pair."""
    envelope = np.exp(-decay[:, None] * tau[None, :])  # (D, N)
    phase = 2 * np.pi * freq[:, None] * tau[None, :]  # (F, N)
    b1 = envelope[:, None, :] * np.cos(phase)[None, :, :]  # (D, F, N)
    b2 = envelope[:, None, :] * np.sin(phase)[None, :, :]
    ones = np.ones_like(b1)
    basis = np.stack([ones, b1, b2], axis=-1)  # (D, F, N, 3)
    gram = np.einsum("dfni,dfnj->dfij", basis, basis)
    rhs = np.einsum("dfni,n->dfi", basis, x)
    ridge = 1e-9 * np.trace(gram, axis1=-2, axis2=-1)[..., None, None] * np.eye(3)
    beta = np.linalg.solve(gram + ridge, rhs[..., None])[..., 0]
    rss = np.maximum(float(x @ x) - np.einsum("dfi,dfi->df", beta, rhs), 0.0)
    return rss, beta, gram + ridge


def fit_decaying_oscillation(t: FloatArray, x: FloatArray) -> OscillationFit | None:
    """Fit ``W + exp(-s t)(a cos wt + b sin wt)`` to samples ``x`` at times ``t``.

    Returns None when there are too few samples for the five parameters.
    """
    n = len(t)
    if n < PARAMETERS + 3 or t[-1] <= t[0]:
        return None
    tau = t - t[0]
    offset = float(np.mean(x))
    centred = x - offset
    rate = (n - 1) / float(tau[-1])
    top = min(MAX_FREQ_HZ, 0.49 * rate)
    freq = np.linspace(MIN_FREQ_HZ, max(top, MIN_FREQ_HZ + 0.1), FREQ_POINTS)
    decay = DECAY_GRID
    rss, beta, gram = _solve(tau, centred, decay, freq)
    d, f = np.unravel_index(int(np.argmin(rss)), rss.shape)
    best_decay, best_freq = float(decay[d]), float(freq[f])
    step_decay = 0.5 * float(np.max(np.diff(decay)))
    step_freq = float(freq[1] - freq[0])
    for _ in range(REFINE_ROUNDS):
        step_decay, step_freq = step_decay / 2, step_freq / 2
        local_decay = np.maximum(best_decay + step_decay * np.array([-1.0, 0.0, 1.0]), 0.0)
        local_freq = np.maximum(best_freq + step_freq * np.array([-1.0, 0.0, 1.0]), 0.05)
        rss, beta, gram = _solve(tau, centred, local_decay, local_freq)
        d, f = np.unravel_index(int(np.argmin(rss)), rss.shape)
        best_decay, best_freq = float(local_decay[d]), float(local_freq[f])
    coef = beta[d, f]
    sigma2 = float(rss[d, f]) / (n - PARAMETERS)
    try:
        cov0 = float(np.linalg.inv(gram[d, f])[0, 0])
    except np.linalg.LinAlgError:
        return None
    return OscillationFit(
        level=offset + float(coef[0]),
        level_stderr=float(np.sqrt(max(sigma2 * cov0, 0.0))),
        amplitude=float(np.hypot(coef[1], coef[2])),
        decay_per_s=best_decay,
        freq_hz=best_freq,
        residual_rms=float(np.sqrt(rss[d, f] / n)),
        samples=n,
    )
