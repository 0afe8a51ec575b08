"""The same study on two stacks, model by model: each model's mean score (Avg@K, the mean of its
domains) in study A and study B, and the 95% interval of B minus A, paired over the same seeds and test
items with compare's crossed bootstrap (m2rl.compare.intervals: seeds and each domain's items
resampled together). `m2rl compare` pairs models within one study; this pairs one model across two.

    .venv/bin/python scripts/compare_stacks.py RUNS [--a study] [--b eng] [--seeds 0 1 2] [--resamples 2000]

RUNS holds both studies' runs, named `<study>-s<seed>-<role>` as `m2rl pipeline --name <study>` names
them (one seed per study, `study.share_sft=false`); every model of study A's first seed is compared.
Used for the engines study in docs/engines.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from m2rl.compare.intervals import CrossedBootstrap, Part
from m2rl.evaluate.results import EVAL_DIR, read_results


def item_scores(run: Path) -> dict[tuple[str, str], float]:
    """(domain, item id) -> the item's mean reward over its samples, from the run's eval files."""
    return {
        (item.domain, item.id): item.mean_reward
        for path in sorted((run / EVAL_DIR).glob("*.jsonl"))
        for item in read_results(path)
    }


def find_run(runs: Path, study: str, seed: int, role: str) -> Path:
    found = [p for p in runs.glob(f"*-{study}-s{seed}-{role}-*") if (p / "eval").is_dir()]
    if len(found) != 1:
        sys.exit(f"{study}-s{seed}-{role}: {len(found)} evaluated runs under {runs}, need exactly one")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--a", default="study", help="the reference study (default: study)")
    parser.add_argument("--b", default="eng", help="the study compared with it (default: eng)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()

    pattern = re.compile(rf"^\d{{8}}-\d{{6}}-{re.escape(args.a)}-s{args.seeds[0]}-(.+)-[0-9a-f]{{6}}$")
    roles = sorted({m.group(1) for p in args.runs.iterdir() if (m := pattern.match(p.name))})
    bootstrap = CrossedBootstrap(args.resamples)
    print(f"{'model':18} {args.a:>8} {args.b:>8} {'B - A':>7}  95% interval (seeds x items)")
    for role in roles:
        a = [item_scores(find_run(args.runs, args.a, s, role)) for s in args.seeds]
        b = [item_scores(find_run(args.runs, args.b, s, role)) for s in args.seeds]
        domains = sorted({d for d, _ in a[0]})
        parts_a, parts_b, differences = [], [], []
        for domain in domains:
            keys = sorted(k for k in a[0] if k[0] == domain)
            scores_a = np.array([[run[k] for k in keys] for run in a])  # seeds x items
            scores_b = np.array([[run[k] for k in keys] for run in b])
            weight = 1 / len(domains)
            parts_a.append(Part(weight, domain, scores_a))
            parts_b.append(Part(weight, domain, scores_b))
            differences.append(Part(weight, domain, scores_b - scores_a))
        mean_a, mean_b = (sum(p.weight * p.scores.mean() for p in parts) for parts in (parts_a, parts_b))
        estimate = bootstrap.estimate(differences)
        low, high = estimate.ci95
        verdict = "spans 0" if low <= 0 <= high else "resolved"
        print(
            f"{role:18} {mean_a * 100:8.2f} {mean_b * 100:8.2f} {estimate.value * 100:+7.2f}"
            f"  [{low * 100:+.2f}, {high * 100:+.2f}] {verdict}"
        )


if __name__ == "__main__":
    main()
