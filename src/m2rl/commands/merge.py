"""Merge RL experts onto their shared SFT base (mergekit methods and the paper's semantics).

`m2rl merge --method paper_ties --experts math,code` writes one merge run; `--method all` (every
method in conf/merge), `--method paper` (the paper's six) or a comma list writes one per method.
Method parameters are Hydra overrides (`merge.density=0.3`); --dry-run prints the resolved config.
`--search N` tunes each method's parameters in N trials on validation items drawn from the training
distribution, never the test items; the run (`merge-<method>-tuned`) counts the search in its cost and
continues from its finished trials when started again.
"""

from __future__ import annotations

from typing import Annotated

import typer

from m2rl.commands.common import DEFAULT_RUNS_DIR, DryRun, Name, Overrides, RunsDir, load_config, print_config
from m2rl.config import to_container
from m2rl.console import console, quiet_libraries
from m2rl.errors import UserError


def expand_methods(spec: str | None, default: str) -> list[str]:
    """Method names from --method: a name, a comma list, `all`, or `paper`."""
    # lazy: m2rl.merge imports torch; the CLI imports every command at start
    from m2rl.merge import PAPER_METHODS, available_methods

    if not spec:
        return [default]
    methods: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if item == "all":
            methods.extend(available_methods())
        elif item == "paper":
            methods.extend(PAPER_METHODS)
        elif item:
            methods.append(item)
    known = set(available_methods())
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise UserError(
            f"unknown merge method(s) {', '.join(unknown)}; available: {', '.join(sorted(known))}, all, paper"
        )
    return list(dict.fromkeys(methods))


def command(
    experts: Annotated[
        str | None,
        typer.Option(
            "--experts",
            help="Expert runs: ids, names, paths, globs of run names (`rl-*`), or a study name; comma-separated.",
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="Merge method from conf/merge (default: the config's merge.method), a comma list, `all` or `paper`.",
        ),
    ] = None,
    base: Annotated[
        str | None, typer.Option("--base", help="Base run (default: the experts' shared SFT parent).")
    ] = None,
    search: Annotated[
        int | None,
        typer.Option(
            "--search",
            help="Tune each method's parameters in this many trials (merge + validation eval each), the best "
            "trial's parameters making the run; its cost includes every trial.",
            show_default=False,
        ),
    ] = None,
    search_items: Annotated[
        int | None,
        typer.Option(
            "--search-items",
            help="Validation items per domain for --search (default: study.merge_search.items_per_domain).",
            show_default=False,
        ),
    ] = None,
    search_params: Annotated[
        str | None,
        typer.Option(
            "--search-params",
            help="Parameters --search tunes, comma-separated (default: every searchable one of the method).",
            show_default=False,
        ),
    ] = None,
    overrides: Overrides = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    name: Name = None,
    dry_run: DryRun = False,
) -> None:
    # lazy: m2rl.merge imports torch; the CLI imports every command at start
    from m2rl.jobs.build import merge_job
    from m2rl.merge.methods import resolve_method

    user_overrides = list(overrides or [])
    default_method = str(load_config(user_overrides).merge.method) if not method else ""
    if search is None and (search_items is not None or search_params):
        raise UserError("--search-items and --search-params tune a merge: give --search TRIALS too")
    configs = {}
    tuning = None
    for each in expand_methods(method, default_method):
        cfg = load_config([f"merge={each}", *user_overrides])
        resolve_method(to_container(cfg.merge))  # validate before any work
        configs[each] = cfg
        if search is not None:
            tuning = {
                "trials": search,
                "items_per_domain": cfg.study.merge_search.items_per_domain
                if search_items is None
                else search_items,
                "params": [p.strip() for p in (search_params or "").split(",") if p.strip()],
            }
            merge_job(cfg, each, ["unchecked"], search=tuning)  # the search's settings, before any work
    if dry_run:
        for each, cfg in configs.items():
            print_config(cfg, title=f"merge {each}")
            if tuning:
                console.print(f"search: {tuning} on validation items of the experts' domains")
        return
    if not experts:
        raise UserError(
            "--experts is required (comma-separated expert runs, a glob of run names, or a study)"
        )

    quiet_libraries()
    # lazy: m2rl.merge imports torch; the CLI imports every command at start
    from m2rl import jobs
    from m2rl.jobs.merge import start_tuned
    from m2rl.ledger import Ledger
    from m2rl.merge.lineage import resolve_experts

    ledger = Ledger(runs_dir)
    expert_ids = [r.id for r in resolve_experts(ledger, experts.split(","))]
    base_id = ledger.get(base).id if base else None
    for each, cfg in configs.items():
        run_name = f"{name}-{each}" if name and len(configs) > 1 else name
        spec = merge_job(cfg, each, expert_ids, base_id, run_name, search=tuning)
        if tuning:
            run = start_tuned(spec, ledger, config=to_container(cfg))
        else:
            run = jobs.start(spec, ledger, config=to_container(cfg), reuse=True)
        stages = run.manifest.get("stage_seconds", {})
        seconds = stages.get("merge", 0.0) + stages.get("search", 0.0)
        console.print(f"[green]merge {each}[/green]: {run.id} ({seconds:.1f} s) -> {run.model_dir}")
