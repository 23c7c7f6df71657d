"""The perspective warp the frame renderers share (a card or a plate seen at an angle)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def perspective_coeffs(dst: NDArray[np.float64], src: NDArray[np.float64]) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src``."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(rows, float), src.reshape(8).astype(float))
    return tuple(float(c) for c in coeffs)
