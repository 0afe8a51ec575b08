"""The same study on two stacks, model by model: each model's mean score (Avg@K, the mean of its
domains) in study A and study B, and the 95% interval of B minus A, paired over the same seeds and test
items (a crossed bootstrap: seeds and each domain's items resampled together).

    .venv/bin/python scripts/compare_stacks.py RUNS [--a study] [--b eng] [--seeds 0 1 2] [--resamples 2000]

RUNS holds both studies' runs, named `<study>-s<seed>-<role>` as `m2rl pipeline --name <study>` names
them; every model of study A's first seed is compared. Used for the engines study in docs/engines.md.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np


def item_scores(run: Path) -> dict[tuple[str, str], float]:
    """(domain, item id) -> the item's mean reward over its samples, from the run's eval files."""
    scores = {}
    for path in sorted((run / "eval").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            scores[(row["domain"], row["id"])] = float(np.mean(row["rewards"]))
    return scores


def mean(scores: dict[str, np.ndarray], seeds: np.ndarray, items: dict[str, np.ndarray]) -> float:
    """The mean over domains of each domain's mean over the chosen seeds (rows) and items (columns)."""
    return float(np.mean([x[np.ix_(seeds, items[d])].mean() for d, x in scores.items()]))


def find_run(runs: Path, study: str, seed: int, role: str) -> Path:
    (run,) = [p for p in runs.glob(f"*-{study}-s{seed}-{role}-*") if (p / "eval").is_dir()]
    return run


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
    rng = np.random.default_rng(0)
    print(f"{'model':18} {args.a:>8} {args.b:>8} {'B - A':>7}  95% interval (seeds x items)")
    for role in roles:
        a = [item_scores(find_run(args.runs, args.a, s, role)) for s in args.seeds]
        b = [item_scores(find_run(args.runs, args.b, s, role)) for s in args.seeds]
        domains = sorted({d for d, _ in a[0]})
        keys = {d: sorted(k for k in a[0] if k[0] == d) for d in domains}
        # seeds x items per domain
        A = {d: np.array([[run[k] for k in keys[d]] for run in a]) for d in domains}
        B = {d: np.array([[run[k] for k in keys[d]] for run in b]) for d in domains}

        every_seed = np.arange(len(args.seeds))
        every_item = {d: np.arange(len(keys[d])) for d in domains}
        mean_a, mean_b = mean(A, every_seed, every_item), mean(B, every_seed, every_item)
        differences = []
        for _ in range(args.resamples):
            seeds = rng.integers(0, len(args.seeds), len(args.seeds))
            items = {d: rng.integers(0, len(keys[d]), len(keys[d])) for d in domains}
            differences.append(mean(B, seeds, items) - mean(A, seeds, items))
        low, high = np.percentile(differences, [2.5, 97.5]) * 100
        verdict = "spans 0" if low <= 0 <= high else "resolved"
        print(
            f"{role:18} {mean_a * 100:8.2f} {mean_b * 100:8.2f} {(mean_b - mean_a) * 100:+7.2f}"
            f"  [{low:+.2f}, {high:+.2f}] {verdict}"
        )


if __name__ == "__main__":
    main()
