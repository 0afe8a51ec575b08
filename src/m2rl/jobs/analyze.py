"""The analyze job: the paper's analyses of a study's models, written as an `analyze` run with its report.

`resolve` names every analysed run by id and adds their SFT bases (what the task vectors are measured
against); `create` checks every run is completed, holds a model and has eval results for every
benchmark, then creates the run; `run` computes the analyses (m2rl.analysis.runner) and writes
analysis.md, analysis.json and figures/ into the run, and into `publish` under the runs root when set.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from typing import Any

import numpy as np

from m2rl.analysis.consistency import ALL_DOMAINS
from m2rl.analysis.lineage import group, sft_of
from m2rl.errors import UserError
from m2rl.evaluate.runner import check_evaluable, eval_plan
from m2rl.evaluate.settings import EvalSettings
from m2rl.jobs import save_spec
from m2rl.ledger import Device, Ledger, Run, attempt, replace_dir, temp_sibling
from m2rl.specs import AnalyzeJob


def eval_settings(spec: AnalyzeJob) -> EvalSettings:
    """The settings of the evals whose results the analyses read (benchmarks, backend, verifiers, seed)."""
    return EvalSettings.of(spec.eval, spec.verifiers, spec.seed)


def resolve(spec: AnalyzeJob, ledger: Ledger) -> AnalyzeJob:
    """The spec with runs named by id, their SFT bases included, in a stable order."""
    runs = [ledger.get(ref) for ref in spec.runs]
    ids = {r.id for r in runs} | {sft_of(ledger, r).id for r in runs}
    return spec.model_copy(update={"runs": sorted(ids)})


def check_analysable(run: Run, settings: EvalSettings) -> None:
    """Raise UserError unless the run is completed with a model and has saved eval results of these eval
    settings (benchmarks, sampling, verifiers; any number of samples per item) for every benchmark,
    sampled with their seed or the run's own training seed (a study evaluates each seed's models with
    that seed)."""
    check_evaluable(run)
    own_seed = run.manifest.get("seed")
    candidates = [settings] + (
        [dataclasses.replace(settings, seed=own_seed)] if own_seed not in (None, settings.seed) else []
    )
    missing: list[str] = []
    for candidate in candidates:
        missing = [
            bench.name for bench, _digest, saved in eval_plan(run, candidate, any_k=True) if saved is None
        ]
        if not missing:
            return
    seeds = " or ".join(f"seed={c.seed}" for c in candidates)
    raise UserError(
        f"run {run.name} ({run.id}) has no eval results of these eval settings ({seeds}) for "
        f"{', '.join(missing)}: run `m2rl eval {run.id} seed={candidates[-1].seed}` with the same eval overrides first"
    )


def create(
    spec: AnalyzeJob, ledger: Ledger, config: dict[str, Any] | None = None, queued: bool = False
) -> Run:
    """Check the analysed runs (spec resolved), then create the analyze run."""
    runs = [ledger.get(ref) for ref in spec.runs]
    settings = eval_settings(spec)
    for run in runs:
        check_analysable(run, settings)
    lineages = group(ledger, runs)
    seeds = {lineage.seed for lineage in lineages}
    run = ledger.create(
        "analyze",
        spec.name,
        config or spec.model_dump(mode="json"),
        parents=list(spec.runs),
        device=Device.detect(),
        config_hash=spec.identity(),
        seed=seeds.pop() if len(seeds) == 1 else None,  # the analysed lineage's training seed
        study=spec.study,
        status="queued" if queued else "running",
    )
    save_spec(spec, run)
    run.update(
        domains=sorted({d for lineage in lineages for d in lineage.experts}),
        artifacts={
            "config": "config.yaml",
            "report": "analysis.md",
            "json": "analysis.json",
            "figures": "figures",
        },
    )
    return run


def publish(run: Run, folder: str) -> None:
    """Copy the report into `<runs>/<folder>/`, replacing what was there at once."""
    target = run.path.parent / folder
    tmp = temp_sibling(target)
    try:
        tmp.mkdir()
        for name in ("analysis.md", "analysis.json", "figures"):
            source = run.path / name
            if source.is_dir():
                shutil.copytree(source, tmp / name)
            elif source.is_file():
                shutil.copy2(source, tmp / name)
        (tmp / "RUN").write_text(f"{run.id}\n")
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(spec: AnalyzeJob, run: Run, resume: bool = False) -> Run:  # noqa: ARG001 (an analysis restarts whole)
    """Analyse as one attempt of `run`: report in the run (and in `publish`), headline numbers in metrics."""
    # torch: the analyses load models; only the analyze job's own process needs them
    from m2rl.analysis.report import write_report
    from m2rl.analysis.runner import analyze

    ledger = Ledger(run.path.parent)
    settings = eval_settings(spec)
    with attempt(run):
        cpu_start = time.process_time()
        lineages = group(ledger, [ledger.get(ref) for ref in spec.runs])
        written = 0.0

        def progress(done: int, total: int, note: str) -> None:
            nonlocal written
            if time.monotonic() - written > 0.5 or done == total:  # the live view polls; no write per tensor
                written = time.monotonic()
                run.write_progress("analyze", done, total, note)

        analysis = analyze(lineages, spec.analyze, settings, spec.seed, progress)
        run.add_stage_seconds(analysis.seconds)
        with run.stage("report"):
            write_report(analysis, run.path, spec.study)
            if spec.publish:
                publish(run, spec.publish)
        run.set_metrics(**headline(analysis), analyze_cpu_seconds=round(time.process_time() - cpu_start, 3))
    return run


def headline(analysis) -> dict[str, Any]:
    """A few numbers for the manifest: Jaccard and cosine averaged over pairs of task vectors, and each
    model's consistency over all domains."""
    metrics: dict[str, Any] = {}
    for lineage in analysis.lineages:
        g = lineage.geometry
        suffix = "" if len(analysis.lineages) == 1 else f"_s{lineage.seed}"
        if g is not None and len(g.labels) > 1:
            pairs = [(i, j) for i in range(len(g.labels)) for j in range(i + 1, len(g.labels))]
            metrics[f"jaccard_mean{suffix}"] = float(np.mean([g.jaccard[p] for p in pairs]))
            metrics[f"cosine_mean{suffix}"] = float(np.nanmean([g.cosine[p] for p in pairs]))
    for row in analysis.consistency:
        if row.domain == ALL_DOMAINS and not np.isnan(row.value):
            metrics[f"consistency/{row.model}"] = row.value
    return metrics
