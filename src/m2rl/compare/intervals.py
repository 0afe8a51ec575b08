"""95% intervals over both sources of a study's variance, training seeds and test items: a crossed bootstrap.

A score is a mean over seeds (one training lineage per seed) and test items. The items are *crossed*
with the seeds, not nested in them: every seed and every model is evaluated on the same test set (it
depends on the data seed, not the training seed). The bootstrap therefore resamples the two factors
independently, as Owen's pigeonhole bootstrap for crossed random effects does ("The pigeonhole
bootstrap", Ann. Appl. Stat. 2007): each resample draws seeds with replacement and, per benchmark, one
set of items with replacement that every drawn seed and every model share. Drawing items afresh inside
each seed (a nested two-level bootstrap) would treat a shared hard item as independent luck per seed
and understate the item variance by the number of seeds. Differences are paired: a statistic is built
from per-seed, per-item differences (expert seed s minus SFT seed s on the same items), so item
difficulty and seed lineage cancel before resampling. With one seed the seed draw is trivial and the
interval is the item bootstrap alone.

Small-sample correction: with R seeds the plain bootstrap's seed variance is (R-1)/R of the unbiased
one (half of it with two seeds), so seed deviations are scaled by sqrt(R/(R-1)) before resampling. The
crossed bootstrap already counts the seed x item interaction more than once, which errs wide. What no
bootstrap can repair: with 2-3 seeds the spread between seeds is itself known only roughly, so the
seed part of an interval is a rough estimate; intervals say how many seeds they rest on. Simulated
studies (80 items, Avg@4, a known effect; tests/test_compare_intervals.py) cover it 95% of the time
with one seed, 95-100% with 2-4 seeds that vary less than the items do, and 86-91% when the spread
between 2-5 seeds dominates (a percentile bootstrap cannot widen to a t quantile).

Why not a library: `scipy.stats.bootstrap` resamples one level (its `paired=True` draws one index set
for all samples), so it cannot draw seeds and items as two crossed factors, and its BCa jackknife is
not defined for such a design. rliable (the RL field's reference, Agarwal et al. 2021) takes a runs x
tasks score matrix and resamples runs within each task (`StratifiedBootstrap`, built on `arch`): the
tasks stay fixed, so item variance would be left out if items were its tasks, each item would get its
own seed draw (breaking the seed pairing), and it adds `arch` to the dependencies. The design here is
a few lines of numpy: multinomial weights for seeds and for items, one matrix product per benchmark.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
DEFAULT_SAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A point estimate, its interval at `level` (None without per-item results), and what it rests on."""

    value: float
    ci95: tuple[float, float] | None = None
    n_seeds: int = 1
    n_items: int = 0
    per_seed: tuple[float, ...] = ()
    level: float = LEVEL  # of the interval: above 95% for one of a family (m2rl.compare.best)

    @property
    def excludes_zero(self) -> bool:
        return self.ci95 is not None and (self.ci95[0] > 0 or self.ci95[1] < 0)

    @property
    def half_width(self) -> float:
        return math.nan if self.ci95 is None else (self.ci95[1] - self.ci95[0]) / 2


@dataclass(frozen=True)
class Part:
    """One benchmark's share of a statistic: `weight` x the mean over seeds and items of `scores`.

    `scores` is seeds x items (for a paired difference, per-seed per-item differences); `items` names
    the item set, and every statistic that uses the same name gets the same item draws.
    """

    weight: float
    items: str
    scores: np.ndarray


def _stable_key(*parts: object) -> int:
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode())


def _multiplicities(rng: np.random.Generator, samples: int, n: int) -> np.ndarray:
    """How often each of n units is drawn in each of `samples` resamples with replacement."""
    draws = rng.integers(0, n, size=(samples, n)) + n * np.arange(samples)[:, None]
    return np.bincount(draws.ravel(), minlength=samples * n).reshape(samples, n).astype(float)


def _seed_corrected(scores: np.ndarray) -> np.ndarray:
    """Scale each seed's deviation from the seeds' mean by sqrt(R/(R-1)) (see the module docstring)."""
    seeds = scores.shape[0]
    if seeds < 2:
        return scores
    centre = scores.mean(axis=0, keepdims=True)
    return centre + math.sqrt(seeds / (seeds - 1)) * (scores - centre)


class CrossedBootstrap:
    """The resampling draws of one comparison: items per named item set, seeds per seed count (seeded)."""

    def __init__(self, samples: int = DEFAULT_SAMPLES, seed: int = 0):
        if samples < 100:
            raise ValueError(f"a 95% percentile interval needs at least 100 resamples, got {samples}")
        self.samples = samples
        self.seed = seed
        self._items: dict[str, np.ndarray] = {}
        self._seeds: dict[tuple[int, int], np.ndarray] = {}

    def _item_weights(self, items: str, n: int) -> np.ndarray:
        weights = self._items.get(items)
        if weights is None:
            rng = np.random.default_rng([self.seed, _stable_key("items", items)])
            weights = self._items[items] = _multiplicities(rng, self.samples, n)
        if weights.shape[1] != n:
            raise ValueError(f"item set {items!r} was drawn for {weights.shape[1]} items, not {n}")
        return weights

    def _seed_weights(self, seeds: int, stream: int) -> np.ndarray:
        key = (seeds, stream)
        if key not in self._seeds:
            rng = np.random.default_rng([self.seed, _stable_key("seeds", seeds, stream)])
            self._seeds[key] = _multiplicities(rng, self.samples, seeds)
        return self._seeds[key]

    def distribution(self, parts: Sequence[Part], stream: int = 0) -> np.ndarray:
        """The statistic sum(weight x mean over seeds and items) in every resample."""
        seeds = {part.scores.shape[0] for part in parts}
        if len(seeds) != 1:
            raise ValueError(f"every part of a statistic needs the same seeds, got {sorted(seeds)}")
        seed_weights = self._seed_weights(seeds.pop(), stream)
        total = np.zeros(self.samples)
        for part in parts:
            scores = _seed_corrected(np.asarray(part.scores, dtype=float))
            item_weights = self._item_weights(part.items, scores.shape[1])
            per_seed = item_weights @ scores.T / scores.shape[1]  # resamples x seeds
            total += part.weight * (per_seed * seed_weights).sum(axis=1) / scores.shape[0]
        return total

    def estimate(self, parts: Sequence[Part], minus: Sequence[Part] = (), level: float = LEVEL) -> Estimate:
        """`parts` (a score, or a paired difference), or `parts` minus `minus` where the seeds cannot be
        paired: then each side draws its own seeds, the items stay shared. `level`: the interval's."""
        draws = self.distribution(parts)
        value = _point(parts)
        if minus:
            draws = draws - self.distribution(minus, stream=1)
            value -= _point(minus)
        tail = (1 - level) / 2 * 100
        low, high = np.percentile(draws, [tail, 100 - tail])
        seeds = max(p.scores.shape[0] for p in (*parts, *minus))
        per_seed = (
            tuple(float(v) for v in sum(p.weight * p.scores.mean(axis=1) for p in parts)) if not minus else ()
        )
        return Estimate(
            value=value,
            ci95=(float(low), float(high)),
            n_seeds=seeds,
            n_items=sum(p.scores.shape[1] for p in parts),
            per_seed=per_seed,
            level=level,
        )


def _point(parts: Sequence[Part]) -> float:
    return float(sum(part.weight * float(np.mean(part.scores)) for part in parts))
