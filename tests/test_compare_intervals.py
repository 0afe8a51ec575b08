"""The crossed bootstrap on known answers: identical sets, shifted sets, and coverage of a known effect."""

from __future__ import annotations

import numpy as np
import pytest

from m2rl.compare.costs import CPU_TIME_HOURS, CPU_WALL_HOURS, GPU_HOURS, SeedCost, cost_ratio, run_cost
from m2rl.compare.intervals import CrossedBootstrap, Part
from m2rl.evaluate.metrics import bootstrap_ci

N_ITEMS, K = 80, 4


def results(rng: np.random.Generator, solve_rate: np.ndarray, seeds: int) -> np.ndarray:
    """seeds x items Avg@K, each item solved with its own probability."""
    rates = np.clip(np.broadcast_to(solve_rate, (seeds, solve_rate.shape[-1])), 0, 1)
    return rng.binomial(K, rates) / K


def simulated_study(rng: np.random.Generator, seeds: int, effect: float, seed_spread: float) -> np.ndarray:
    """Per-seed, per-item differences of two models on shared items: a known effect, item difficulty
    shared by both models, each seed's training luck, and K-sample noise."""
    difficulty = rng.random(N_ITEMS)
    luck_a, luck_b = rng.normal(0, seed_spread, (2, seeds, 1))
    a = results(rng, 0.8 - difficulty + effect + luck_a, seeds)
    b = results(rng, 0.8 - difficulty + luck_b, seeds)
    return a - b


def true_effect(effect: float) -> float:
    """The expected difference over items (clipping at 0 and 1 makes it a little less than `effect`)."""
    difficulty = np.linspace(0, 1, 200_001)
    return float(np.mean(np.clip(0.8 - difficulty + effect, 0, 1) - np.clip(0.8 - difficulty, 0, 1)))


def coverage(seeds: int, seed_spread: float, studies: int = 300) -> float:
    rng = np.random.default_rng(seeds)
    truth, hits = true_effect(0.05), 0
    for study in range(studies):
        interval = (
            CrossedBootstrap(400, seed=study)
            .estimate([Part(1.0, "x", simulated_study(rng, seeds, 0.05, seed_spread))])
            .ci95
        )
        hits += interval[0] <= truth <= interval[1]
    return hits / studies


def test_identical_result_sets_give_an_interval_covering_zero():
    rng = np.random.default_rng(0)
    scores = results(rng, rng.random(N_ITEMS), seeds=3)
    boot = CrossedBootstrap(500, seed=1)
    paired = boot.estimate([Part(1.0, "math:all", scores - scores)])
    assert paired.value == 0 and paired.ci95 == (0.0, 0.0)
    # seeds drawn independently for each side: a real spread, still around 0
    unpaired = boot.estimate([Part(1.0, "math:all", scores)], minus=[Part(1.0, "math:all", scores)])
    assert unpaired.ci95[0] < 0 < unpaired.ci95[1] and not unpaired.excludes_zero


def test_a_shifted_result_set_gives_an_interval_excluding_zero():
    rng = np.random.default_rng(0)
    rate = rng.random(N_ITEMS) * 0.8
    better, worse = results(rng, rate + 0.15, seeds=2), results(rng, rate, seeds=2)
    boot = CrossedBootstrap(500, seed=0)
    up = boot.estimate([Part(1.0, "math:all", better - worse)])
    down = boot.estimate([Part(1.0, "math:all", worse - better)])
    assert up.ci95[0] > 0 and up.excludes_zero
    assert down.ci95[1] < 0 and down.value == pytest.approx(-up.value)
    assert up.ci95[0] <= up.value <= up.ci95[1]


def test_intervals_cover_a_known_effect_95_percent_of_the_time_with_one_seed():
    assert 0.92 <= coverage(seeds=1, seed_spread=0.0) <= 0.98


def test_intervals_cover_a_known_effect_near_95_percent_with_three_seeds():
    # seeds vary about as much as the item sample does: the crossed bootstrap errs a little wide
    assert 0.92 <= coverage(seeds=3, seed_spread=0.05) <= 0.99


def test_with_one_seed_the_interval_is_the_item_bootstrap():
    rng = np.random.default_rng(3)
    scores = results(rng, rng.random(400), seeds=1)
    crossed = CrossedBootstrap(2000, seed=0).estimate([Part(1.0, "x", scores)]).ci95
    items = bootstrap_ci(scores[0], samples=2000, seed=0)
    assert crossed[1] - crossed[0] == pytest.approx(items[1] - items[0], rel=0.1)
    assert crossed[0] == pytest.approx(items[0], abs=0.01)


def test_spread_between_seeds_widens_the_interval():
    rng = np.random.default_rng(4)
    scores = results(rng, rng.random(N_ITEMS), seeds=3)
    luck = np.array([[-0.2], [0.0], [0.2]])
    boot = CrossedBootstrap(1000, seed=0)
    steady = boot.estimate([Part(1.0, "x", scores)]).ci95
    varied = boot.estimate([Part(1.0, "x", scores + luck)])
    assert varied.ci95[1] - varied.ci95[0] > 1.5 * (steady[1] - steady[0])
    assert varied.per_seed == pytest.approx(tuple((scores + luck).mean(axis=1)))


def test_pairing_on_shared_items_narrows_a_difference():
    rng = np.random.default_rng(0)
    difficulty = rng.random(300)
    a, b = (difficulty > 0.4).astype(float)[None], (difficulty > 0.45).astype(float)[None]
    boot = CrossedBootstrap(1000, seed=0)
    paired = boot.estimate([Part(1.0, "same", a - b)]).ci95
    unpaired = boot.estimate([Part(1.0, "a-items", a)], minus=[Part(1.0, "b-items", b)]).ci95
    assert paired[0] >= 0  # b never beats a on an item
    assert paired[1] - paired[0] < (unpaired[1] - unpaired[0]) / 2


def test_draws_are_seeded_and_a_weighted_statistic_combines_benchmarks():
    rng = np.random.default_rng(5)
    math_scores, code_scores = results(rng, rng.random(40), 2), results(rng, rng.random(60), 2)
    parts = [Part(0.5, "math:all", math_scores), Part(0.5, "code:all", code_scores)]
    first = CrossedBootstrap(300, seed=7).estimate(parts)
    assert first == CrossedBootstrap(300, seed=7).estimate(parts)
    assert first.ci95 != CrossedBootstrap(300, seed=8).estimate(parts).ci95
    assert first.value == pytest.approx((math_scores.mean() + code_scores.mean()) / 2)
    assert first.n_items == 100 and first.n_seeds == 2
    with pytest.raises(ValueError, match="at least 100 resamples"):
        CrossedBootstrap(50)


def test_the_cost_ratio_has_a_spread_over_seeds_and_none_with_one_seed():
    seeds = [
        SeedCost(s, mixed, {"RL-Math": 1.0, "RL-Code": 1.0}, 0.0) for s, mixed in enumerate((0.5, 0.6, 0.7))
    ]
    ratio = cost_ratio("RL-Multi", None, CPU_TIME_HOURS, seeds, samples=500, seed=0)
    assert ratio.ratio.value == pytest.approx(0.3)
    assert 0.25 <= ratio.ratio.ci95[0] < 0.3 < ratio.ratio.ci95[1] <= 0.35
    assert ratio.ratio.per_seed == pytest.approx((0.25, 0.3, 0.35))
    assert "over 3 seeds" in ratio.describe()
    single = cost_ratio("RL-Multi", None, GPU_HOURS, seeds[:1], samples=500, seed=0)
    assert single.ratio.ci95 is None
    assert single.describe() == "25.0% (0.5 / 2 GPU-hours; 1 seed: no spread)"


def test_a_run_costs_process_cpu_time_on_cpus_and_gpu_count_x_wall_on_gpus():
    cpu = {"device": {"type": "cpu", "count": 2}, "device_hours": 1.0, "cpu_seconds": 1800.0}
    assert run_cost(cpu) == (0.5, CPU_TIME_HOURS)
    assert run_cost({**cpu, "cpu_seconds": None}) == (1.0, CPU_WALL_HOURS)  # older manifests
    gpu = {"device": {"type": "cuda", "count": 8}, "device_hours": 16.0, "cpu_seconds": 99.0}
    assert run_cost(gpu) == (16.0, GPU_HOURS)
