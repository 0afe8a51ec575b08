"""Build comparison records from run directories: manifests for costs and lineage, eval files for items."""

from __future__ import annotations

from collections.abc import Sequence

from m2rl.compare.costs import run_cost
from m2rl.compare.records import BenchmarkResult, RunRecord
from m2rl.errors import UserError
from m2rl.evaluate.results import read_results, results_path
from m2rl.ledger import Ledger, Run


def record_from_run(run: Run, with_items: bool = True) -> RunRecord:
    """A run's record: kind, lineage, seed, study, own cost, and its eval results (per-item means if kept)."""
    m = run.manifest
    merge = m.get("merge") or {}
    results = {}
    for bench, metrics in (m.get("metrics", {}).get("eval") or {}).items():
        items = None
        path = results_path(run.path, bench)
        if with_items and path.is_file():
            items = {item.id: item.mean_reward for item in read_results(path)}
        ci = metrics.get("ci95")
        results[bench] = BenchmarkResult(
            domain=str(metrics.get("domain", bench)),
            score=float(metrics["avg_at_k"]),
            ci95=(float(ci[0]), float(ci[1])) if ci else None,
            item_scores=items,
            k=metrics.get("k"),
            n_items=metrics.get("n_items"),
        )
    cost_hours, hours_label = run_cost(m)
    seed = m.get("seed")
    return RunRecord(
        id=run.id,
        kind=run.kind,
        name=run.name,
        parents=tuple(m.get("parents") or ()),
        domains=tuple(m.get("domains") or ()),
        merge_method=merge.get("method"),
        merge_backend=merge.get("backend"),
        merge_experts=tuple(merge.get("experts") or ()),
        cost_hours=cost_hours,
        hours_label=hours_label,
        seed=int(seed) if seed is not None else None,
        study=m.get("study") or None,
        results=results,
        cascade_stage=(m.get("cascade") or {}).get("stage"),
    )


def records_from_runs(runs: Sequence[Run]) -> tuple[list[RunRecord], list[RunRecord]]:
    """(records of the runs, records of their ancestors found in each run's ledger) for costs."""
    rows = [record_from_run(run) for run in runs]
    known = {r.id for r in rows}
    lineage: list[RunRecord] = []
    queue = [(run.path.parent, ref) for run, r in zip(runs, rows, strict=True) for ref in r.ancestors_direct]
    while queue:
        root, ref = queue.pop()
        if ref in known:
            continue
        known.add(ref)
        try:
            ancestor = Ledger(root).get(ref)
        except UserError:
            continue  # reported as missing by the comparison
        record = record_from_run(ancestor, with_items=False)
        lineage.append(record)
        queue.extend((ancestor.path.parent, a) for a in record.ancestors_direct)
    return rows, lineage


def evaluated_runs(ledger: Ledger) -> list[Run]:
    """Every completed run under the ledger with eval results, oldest first."""
    return [r for r in ledger.runs() if r.status == "completed" and r.manifest.get("metrics", {}).get("eval")]
