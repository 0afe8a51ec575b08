"""Avg@K, the unbiased pass@K estimator and the seeded item-bootstrap interval (pairs: test_compare_intervals)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from m2rl.evaluate.metrics import (
    avg_at_k,
    bootstrap_ci,
    pass_at_k,
    pass_at_k_item,
)


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c correct) that contain a correct one."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_enumerating_every_subset(case):
    n, c, k = case
    assert pass_at_k_item(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k))


def test_pass_at_k_with_k_equal_n_is_any_correct_and_pass_at_1_is_the_mean():
    rewards = [[0, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]]
    assert pass_at_k(rewards, 4) == pytest.approx(2 / 3)
    assert pass_at_k(rewards, 1) == pytest.approx(avg_at_k(rewards))
    assert avg_at_k(rewards) == pytest.approx((0.25 + 0 + 1) / 3)


def test_pass_at_k_needs_k_samples():
    with pytest.raises(ValueError, match="at least 4 samples"):
        pass_at_k_item(2, 1, 4)


def test_avg_at_k_weights_items_equally_whatever_their_sample_count():
    assert avg_at_k([[1.0], [0.0, 0.0, 0.0]]) == pytest.approx(0.5)
    assert math.isnan(avg_at_k([]))


def test_bootstrap_interval_is_seeded_contains_the_mean_and_shrinks_with_more_items():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 2, size=40).astype(float)
    large = rng.integers(0, 2, size=4000).astype(float)
    lo, hi = bootstrap_ci(small, samples=500, seed=3)
    assert (lo, hi) == bootstrap_ci(small, samples=500, seed=3)
    assert (lo, hi) != bootstrap_ci(small, samples=500, seed=4)
    assert lo <= small.mean() <= hi
    lo_l, hi_l = bootstrap_ci(large, samples=500, seed=3)
    assert hi_l - lo_l < (hi - lo) / 3
