"""Avg@K, unbiased pass@K and the seeded item-bootstrap interval of one run's benchmark score.

Hand-written because they are a few lines of numpy and the estimator must be exactly the unbiased
one (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"), item-level. Intervals
over seeds and items, and paired differences between runs, are `m2rl.compare.intervals`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A sample counts as solved for pass@K when its reward reaches this value (rewards are binary 0/1).
SOLVED_AT = 0.5


def pass_at_k_item(n: int, correct: int, k: int) -> float:
    """Unbiased pass@k of one item with n samples of which `correct` are right: 1 - C(n-c,k)/C(n,k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per item, got {n}")
    if n - correct < k:
        return 1.0
    # C(n-c, k) / C(n, k) as a product, numerically stable for large n
    return float(1.0 - np.prod(1.0 - k / np.arange(n - correct + 1, n + 1)))


def item_means(rewards: Sequence[Sequence[float]]) -> np.ndarray:
    """Each item's mean reward over its samples."""
    return np.array([float(np.mean(r)) if len(r) else 0.0 for r in rewards], dtype=float)


def avg_at_k(rewards: Sequence[Sequence[float]]) -> float:
    """Avg@K: the mean over items of each item's mean reward over its K samples."""
    if not rewards:
        return float("nan")
    return float(item_means(rewards).mean())


def pass_at_k(rewards: Sequence[Sequence[float]], k: int) -> float:
    """Mean over items of the unbiased pass@k estimate."""
    if not rewards:
        return float("nan")
    return float(np.mean([pass_at_k_item(len(r), sum(1 for x in r if x >= SOLVED_AT), k) for r in rewards]))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, samples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (one value per item), seeded."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(samples, data.size))
    means = data[idx].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))
