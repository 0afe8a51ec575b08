"""Skill consistency: how much of the experts' per-item gains a mixed or merged model keeps.

Per eval domain and test item i, a model's gain is g_m(i) = max(acc_m(i) - acc_SFT(i), 0) (acc: the
item's mean reward over its K samples), the union gain is the largest gain of any single-domain
expert, and consistency = cos(g_union, g_m). Over several seeds it is the mean of the seeds' values.

Its 95% interval resamples the test items and, with several seeds, the seeds as two crossed factors
(every seed is evaluated on the same items), as m2rl.compare.intervals does for scores; that module's
bootstrap handles means only, and a cosine is a ratio, so the few numpy lines are repeated here with
the cosine recomputed under every draw's item weights. Resamples where either gain vector is zero
leave the cosine undefined and are left out.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from m2rl.compare.records import DOMAIN_ORDER

LEVEL = 0.95
ALL_DOMAINS = "all"


@dataclass
class LineageItems:
    """One lineage's per-item accuracies: item key -> mean reward, for each role."""

    sft: dict[str, float]
    experts: list[dict[str, float]]
    models: dict[str, dict[str, float]]  # the mixed run and merges, by label
    domain_of: dict[str, str]  # item key -> eval domain


@dataclass
class Consistency:
    """cos(g_union, g_model) on one eval domain, with its interval and what it rests on."""

    model: str
    domain: str
    value: float  # nan where either gain vector is zero
    ci95: tuple[float, float] | None
    per_seed: list[float] = field(default_factory=list)
    n_items: int = 0
    items_gained: int = 0  # items where some expert gained (mean over seeds)

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "domain": self.domain,
            "value": None if math.isnan(self.value) else self.value,
            "ci95": list(self.ci95) if self.ci95 else None,
            "per_seed": [None if math.isnan(v) else v for v in self.per_seed],
            "n_items": self.n_items,
            "n_seeds": len(self.per_seed),
            "items_gained": self.items_gained,
        }


def gains(model: np.ndarray, sft: np.ndarray) -> np.ndarray:
    """g(i) = max(acc_model(i) - acc_SFT(i), 0)."""
    return np.maximum(np.asarray(model, dtype=float) - np.asarray(sft, dtype=float), 0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """cos(a, b); nan when either is the zero vector."""
    norms = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / norms if norms > 0 else math.nan


def _weights(rng: np.random.Generator, samples: int, n: int) -> np.ndarray:
    """How often each of n units is drawn in each resample with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(float)


def crossed_interval(
    unions: np.ndarray, models: np.ndarray, samples: int, seed: int
) -> tuple[float, tuple[float, float] | None, list[float]]:
    """(mean over seeds of cos(union_s, model_s), its 95% interval, per-seed values); arrays are seeds x items."""
    per_seed = [cosine(u, g) for u, g in zip(unions, models, strict=True)]
    defined = [v for v in per_seed if not math.isnan(v)]
    value = float(np.mean(defined)) if defined else math.nan
    rng = np.random.default_rng(seed)
    items = _weights(rng, samples, unions.shape[1])
    seeds = _weights(rng, samples, unions.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = np.stack(
            [
                (items @ (u * g)) / np.sqrt((items @ (u * u)) * (items @ (g * g)))
                for u, g in zip(unions, models, strict=True)
            ],
            axis=1,
        )  # resamples x seeds
        counted = seeds * ~np.isnan(draws)
        statistic = (seeds * np.nan_to_num(draws)).sum(axis=1) / counted.sum(axis=1)
    statistic = statistic[np.isfinite(statistic)]
    if len(statistic) < samples / 2:  # mostly undefined: no interval worth the name
        return value, None, per_seed
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(statistic, [tail, 100 - tail])
    return value, (float(low), float(high)), per_seed


def _domain_key(domain: str) -> tuple[int, str]:
    return (DOMAIN_ORDER.index(domain) if domain in DOMAIN_ORDER else len(DOMAIN_ORDER), domain)


def skill_consistency(lineages: list[LineageItems], samples: int, seed: int = 0) -> list[Consistency]:
    """Consistency of every mixed or merged model per eval domain and over all domains."""
    if not lineages or not any(lineage.experts for lineage in lineages):
        return []
    domains = sorted({d for lineage in lineages for d in lineage.domain_of.values()}, key=_domain_key)
    labels = list(dict.fromkeys(label for lineage in lineages for label in lineage.models))
    results = []
    for label in labels:
        having = [lineage for lineage in lineages if label in lineage.models and lineage.experts]
        for domain in [*domains, ALL_DOMAINS]:
            keys = set.intersection(
                *(
                    {k for k, d in lineage.domain_of.items() if domain in (d, ALL_DOMAINS)}
                    & set(lineage.sft)
                    & set(lineage.models[label]).intersection(*lineage.experts)
                    for lineage in having
                )
            )
            items = sorted(keys)
            if not items:
                continue
            unions, models = [], []
            for lineage in having:
                sft = np.array([lineage.sft[k] for k in items])
                expert_gains = [gains(np.array([e[k] for k in items]), sft) for e in lineage.experts]
                unions.append(np.max(expert_gains, axis=0))
                models.append(gains(np.array([lineage.models[label][k] for k in items]), sft))
            stream = zlib.crc32(f"{label}|{domain}".encode())
            value, ci95, per_seed = crossed_interval(
                np.array(unions), np.array(models), samples, seed + stream
            )
            gained = float(np.mean([(u > 0).sum() for u in unions]))
            results.append(Consistency(label, domain, value, ci95, per_seed, len(items), round(gained)))
    return results
