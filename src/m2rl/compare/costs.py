"""Compute cost of a run that does not move with other load, and the study's mix/merge cost ratio over seeds.

On GPUs a run's cost is GPU count x wall time of its dedicated allocation (`device_hours`); on a CPU it
is the CPU time its processes used (user + system, `cpu_seconds`), which another process competing
for the cores does not inflate, where wall time x processes does. Manifests written before m2rl
recorded CPU time fall back to wall x processes, with a note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from m2rl.compare.intervals import LEVEL, Estimate

GPU_HOURS = "GPU-hours"
CPU_TIME_HOURS = "CPU-hours (process CPU time)"
CPU_WALL_HOURS = "CPU-hours (wall x processes)"


def run_cost(manifest: Mapping[str, Any]) -> tuple[float, str]:
    """(hours, label) of a run's own compute from its manifest."""
    device = manifest.get("device") or {}
    wall_hours = float(manifest.get("device_hours") or 0.0)
    if device.get("type") == "cuda":
        return wall_hours, GPU_HOURS
    if manifest.get("cpu_seconds") is not None:
        return float(manifest["cpu_seconds"]) / 3600, CPU_TIME_HOURS
    return wall_hours, CPU_WALL_HOURS


def common_label(labels: set[str]) -> tuple[str, list[str]]:
    """One unit for every cost in a comparison, and notes on what it mixes or falls back to."""
    notes = []
    if CPU_WALL_HOURS in labels:
        notes.append(
            "CPU-hours of runs without a recorded process CPU time (older m2rl) are wall x processes, "
            "which grows with other load on the machine"
        )
    if len(labels) <= 1:
        return next(iter(labels), GPU_HOURS), notes
    if GPU_HOURS in labels:
        return "device-hours", [
            *notes,
            "runs mix CPU-hours and GPU-hours: costs are not comparable across devices",
        ]
    return "CPU-hours", notes


@dataclass(frozen=True)
class SeedCost:
    """One seed lineage's side of the ratio: the mixed run against its experts plus the merge."""

    seed: int | None
    mixed_hours: float
    expert_hours: dict[str, float]
    merge_hours: float

    @property
    def merge_side_hours(self) -> float:
        return sum(self.expert_hours.values()) + self.merge_hours

    @property
    def ratio(self) -> float:
        return self.mixed_hours / self.merge_side_hours if self.merge_side_hours > 0 else math.nan


@dataclass(frozen=True)
class CostRatio:
    """mixed-run cost / (expert costs + merge cost), as the paper's 2166.4 / 6524.8 = 33.2%, over seeds.

    The estimate is the ratio of the mean costs; its interval resamples seeds (None with one seed).
    """

    mixed: str
    merge: str | None
    hours_label: str
    seeds: tuple[SeedCost, ...]
    ratio: Estimate

    @property
    def mixed_hours(self) -> float:
        return float(np.mean([s.mixed_hours for s in self.seeds]))

    @property
    def merge_side_hours(self) -> float:
        return float(np.mean([s.merge_side_hours for s in self.seeds]))

    @property
    def merge_hours(self) -> float:
        return float(np.mean([s.merge_hours for s in self.seeds]))

    @property
    def expert_hours(self) -> dict[str, float]:
        """Each expert's cost, mean over seeds."""
        labels = dict.fromkeys(label for s in self.seeds for label in s.expert_hours)
        return {
            label: float(np.mean([s.expert_hours[label] for s in self.seeds if label in s.expert_hours]))
            for label in labels
        }

    def describe(self) -> str:
        """E.g. `33.2% (2166.4 / 6524.8 GPU-hours; 1 seed: no spread)`."""
        if math.isnan(self.ratio.value):
            return f"n/a (the experts and merge recorded no {self.hours_label})"
        shares = (
            f"{format_hours(self.mixed_hours)} / {format_hours(self.merge_side_hours)} {self.hours_label}"
        )
        if self.ratio.ci95 is None:
            return f"{self.ratio.value:.1%} ({shares}; 1 seed: no spread)"
        low, high = self.ratio.ci95
        per_seed = ", ".join(f"{r:.1%}" for r in self.ratio.per_seed)
        return (
            f"{self.ratio.value:.1%} [{low:.1%}, {high:.1%}] over {len(self.seeds)} seeds "
            f"(per seed {per_seed}; mean {shares})"
        )


def format_hours(value: float) -> str:
    """Hours, three significant digits for tiny CPU runs, one decimal for GPU-scale ones."""
    if value == 0:
        return "0"
    return f"{value:.1f}" if value >= 10 else f"{value:.3g}"


def cost_ratio(
    mixed: str,
    merge: str | None,
    hours_label: str,
    seeds: Sequence[SeedCost],
    samples: int,
    seed: int,
) -> CostRatio:
    """The ratio of mean costs over seeds, with a percentile interval from resampling seeds."""
    mixed_hours = np.array([s.mixed_hours for s in seeds])
    merge_side = np.array([s.merge_side_hours for s in seeds])
    value = float(mixed_hours.sum() / merge_side.sum()) if merge_side.sum() > 0 else math.nan
    interval = None
    if len(seeds) > 1 and not math.isnan(value):
        rng = np.random.default_rng([seed, len(seeds)])
        draws = rng.integers(0, len(seeds), size=(samples, len(seeds)))
        ratios = mixed_hours[draws].sum(axis=1) / merge_side[draws].sum(axis=1)
        tail = (1 - LEVEL) / 2 * 100
        low, high = np.percentile(ratios, [tail, 100 - tail])
        interval = (float(low), float(high))
    estimate = Estimate(value, interval, n_seeds=len(seeds), per_seed=tuple(s.ratio for s in seeds))
    return CostRatio(mixed, merge, hours_label, tuple(seeds), estimate)
