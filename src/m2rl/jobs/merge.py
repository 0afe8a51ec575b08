"""The merge job: expert runs merged onto their shared SFT base (mergekit or the paper's engine).

`resolve` names every input run by id; `create` checks the experts (completed, one SFT parent, same
architecture and tensors) and the method before the run exists; `run` merges as one attempt. A tuned
merge (`spec.search`) first searches the method's parameters in that attempt (m2rl.merge.search), so
the run's cost holds the search; its validation items are checked against the test sets in `create`.
"""

from __future__ import annotations

import time
from typing import Any

from omegaconf import OmegaConf

from m2rl import jobs
from m2rl.config import compose_config
from m2rl.errors import UserError
from m2rl.jobs import save_spec
from m2rl.jobs.build import merge_job
from m2rl.ledger import Device, Ledger, Run, attempt
from m2rl.specs import MergeJob


def resolve(spec: MergeJob, ledger: Ledger) -> MergeJob:
    """The spec with experts and base named by run id (base: the experts' shared SFT parent)."""
    # lazy: the m2rl.merge package imports torch
    from m2rl.merge.lineage import shared_base

    experts = [ledger.get(ref) for ref in spec.experts]
    base = shared_base(ledger, experts, ledger.get(spec.base) if spec.base else None)
    update: dict[str, Any] = {"experts": [r.id for r in experts], "base": base.id}
    if spec.search is not None and not spec.search.domains:  # the objective: the experts' domains
        domains = list(dict.fromkeys(d for r in experts for d in (r.manifest.get("domains") or [])))
        update["search"] = spec.search.model_copy(update={"domains": domains})
    return spec.model_copy(update=update)


def create(spec: MergeJob, ledger: Ledger, config: dict[str, Any] | None = None, queued: bool = False) -> Run:
    """Check experts, base and method (spec resolved), then create the merge run."""
    # lazy: the m2rl.merge package imports torch
    from m2rl.merge.lineage import check_compatible
    from m2rl.merge.methods import resolve_method
    from m2rl.merge.run import check_mergekit_config

    experts = [ledger.get(ref) for ref in spec.experts]
    base = ledger.get(spec.base)
    check_compatible(base, experts)
    method = resolve_method(spec.merge)
    check_mergekit_config(method, base.model_dir, [r.model_dir for r in experts])
    device = Device(type="cpu", count=1)
    if spec.search is not None:
        # lazy: the m2rl.merge package imports torch
        from m2rl.merge.search import search_space, validation_items

        search_space(method, spec.search.params)
        if not spec.search.domains:
            raise UserError("merge search: the experts name no domains to validate on")
        validation_items(spec.search)  # drawn and checked against the test sets before the run exists
        device = Device.detect()  # the trials' evals sample where an eval would
    run = ledger.create(
        "merge",
        spec.name,
        config or spec.model_dump(mode="json"),
        parents=[*spec.experts, base.id],
        device=device,
        config_hash=spec.identity(),
        seed=spec.seed,
        study=spec.study,
        status="queued" if queued else "running",
    )
    save_spec(spec, run)
    domains = sorted({d for r in experts for d in (r.manifest.get("domains") or [])})
    record = {**method.as_record(), "experts": spec.experts, "base": base.id, "options": method.options}
    if spec.search is not None:
        # lazy: the m2rl.merge package imports torch
        from m2rl.merge.search import SEARCH_SUFFIX

        record["method"] = f"{method.name}{SEARCH_SUFFIX}"
    run.update(domains=domains, merge=record)
    return run


def run(spec: MergeJob, run: Run, resume: bool = False) -> Run:  # noqa: ARG001 (a merge restarts whole)
    """Merge as one attempt of `run` (spec resolved); the model goes to `<run>/model`."""
    # lazy: the m2rl.merge package imports torch
    from m2rl.merge.methods import resolve_method
    from m2rl.merge.run import merge_models

    ledger = Ledger(run.path.parent)
    experts = [ledger.get(ref) for ref in spec.experts]
    base = ledger.get(spec.base)
    method = resolve_method(spec.merge)
    with attempt(run):
        search: dict[str, Any] = {}
        if spec.search is not None:
            # lazy: the m2rl.merge package imports torch
            from m2rl.merge.search import run_search

            with run.stage("search"):
                method, search = run_search(spec, run, base.model_dir, [r.model_dir for r in experts])
        cpu_start = time.process_time()
        with run.stage("merge"):
            recorded = merge_models(
                method, base.model_dir, [r.model_dir for r in experts], run.path / "model"
            )
        cpu_seconds = time.process_time() - cpu_start
        artifacts = {**run.manifest.get("artifacts", {}), "model": "model"}
        if "mergekit" in recorded:
            artifacts["mergekit"] = recorded["mergekit"]
        merge = {**run.manifest.get("merge", {}), **{k: v for k, v in recorded.items() if k == "stats"}}
        if search:
            merge |= {"params": dict(method.params), "search": search}
        run.update(merge=merge, artifacts=artifacts)
        run.set_metrics(merge_cpu_seconds=round(cpu_seconds, 3), merge_cpu_hours=cpu_seconds / 3600)
    return run


def merge_experts(
    ledger: Ledger,
    experts: list[Run],
    method: str,
    params_overrides: dict | None = None,
    base: Run | None = None,
    name: str | None = None,
    config: Any = None,
) -> Run:
    """Merge expert runs with a conf/merge method (plus parameter overrides); a completed run of the same
    name and inputs is returned instead of merging again."""
    if not experts:
        raise UserError("merge needs at least one expert run")
    cfg = compose_config([]) if config is None else OmegaConf.create(config)
    spec = merge_job(
        cfg, method, [r.id for r in experts], base.id if base else None, name, params=params_overrides
    )
    return jobs.start(spec, ledger, reuse=True)


def start_tuned(spec: MergeJob, ledger: Ledger, config: dict[str, Any] | None = None) -> Run:
    """Start a tuned merge in this process: a completed run of the same name and identity is returned,
    an unfinished one (failed, killed) continues from its finished trials, else a new run is made."""
    spec = jobs.resolve(spec, ledger)
    if (done := jobs.find_reusable(spec, ledger)) is not None:
        return done
    for earlier in reversed(ledger.runs()):
        if (
            earlier.name == spec.name
            and earlier.kind == "merge"
            and earlier.status in ("failed", "queued", "running")
            and earlier.manifest.get("config_hash") == spec.identity()
        ):
            return jobs.execute(spec, earlier, resume=True)
    return jobs.execute(spec, create(spec, ledger, config=config))
