"""Pareto dominance and hypervolume in numpy (no torch), in the maximisation convention.

Callers with minimised objectives negate those columns first (the :class:`Optimizer` does this
through its objective directions).
"""

from __future__ import annotations

import numpy as np

__all__ = ["hypervolume", "pareto_mask"]


def pareto_mask(y: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``y`` (shape ``(n, m)``, maximised).

    A row is dominated when another row is at least as good in every column and better in
    one. Duplicated non-dominated rows are all kept.
    """
    y = np.asarray(y, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"pareto_mask expects a 2-D array, got shape {y.shape}")
    n = len(y)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        ge = np.all(y >= y[i], axis=1)
        gt = np.any(y > y[i], axis=1)
        if np.any(ge & gt):
            mask[i] = False
    return mask


def hypervolume(y: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume dominated by ``y`` (shape ``(n, m)``, maximised) above ``ref`` (``(m,)``).

    Exact sweep for ``m <= 2``; for more objectives BoTorch's box decomposition is used
    (it needs the ``optimize`` extra).
    """
    y = np.asarray(y, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if len(y) == 0:
        return 0.0
    y = y[np.all(y > ref, axis=1)]
    if len(y) == 0:
        return 0.0
    m = y.shape[1]
    if m == 1:
        return float(np.max(y[:, 0]) - ref[0])
    if m == 2:
        front = y[pareto_mask(y)]
        front = front[np.argsort(-front[:, 0])]
        volume = 0.0
        prev_y1 = ref[1]
        for a, b in front:
            if b > prev_y1:
                volume += (a - ref[0]) * (b - prev_y1)
                prev_y1 = b
        return float(volume)
    from workbench._optional import require

    torch = require("torch", purpose="hypervolume of more than two objectives")
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    hv = Hypervolume(torch.as_tensor(ref, dtype=torch.float64))
    return float(hv.compute(torch.as_tensor(y[pareto_mask(y)], dtype=torch.float64)))
