"""The mix-or-merge study: plan the graph of jobs, run it with the executor, compare what it made.

Resumable and idempotent: every stage whose completed run has the same name and identity is reused,
an interrupted training stage resumes from its last complete checkpoint, and a failed stage stops
only the stages that need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console

from m2rl.compare import compare_runs
from m2rl.compare.selection import scope_folder, study_folder
from m2rl.config import to_container
from m2rl.data.files import check_local_files
from m2rl.data.sources import FILE_SUFFIXES
from m2rl.errors import StudyFailed
from m2rl.jobs.build import check_config, eval_job, merge_job, section
from m2rl.ledger import Ledger
from m2rl.specs import DistillRecipe, LauncherSpec, RLRecipe, SFTRecipe, StudySettings, validated
from m2rl.study.executor import Executor, machine_share, make_backend
from m2rl.study.plan import Stage, merge_search, plan
from m2rl.study.view import LiveView


def study_settings(cfg: DictConfig) -> StudySettings:
    """The validated `study` section."""
    return validated(StudySettings, section(cfg, "study"), prefix="study.")


def check_study(cfg: DictConfig, stages: list[Stage]) -> None:
    """Everything that can be checked before the first stage: recipes, merge methods, eval settings,
    the rows of local data files."""
    # lazy: the m2rl.merge package imports torch, only once a study is checked before it runs
    from m2rl.merge.methods import load_method

    check_config(cfg)
    check_local_files(cfg.data)
    study_settings(cfg)
    for method in {s.method for s in stages if s.method}:
        load_method(method)
    eval_job(cfg, "unused")  # eval settings
    check_batches(cfg, {s.kind for s in stages})


def check_batches(cfg: DictConfig, kinds: set[str]) -> None:
    """The batches of the study's training stages split evenly over the launcher's processes (else a
    stage would fail when it starts, after the stages before it)."""
    # lazy: m2rl.engine imports transformers, only once a study is checked before it runs
    from m2rl.engine.sft import gradient_accumulation

    world = validated(LauncherSpec, section(cfg, "launcher"), prefix="launcher.").world_size
    if "sft" in kinds:
        sft = validated(SFTRecipe, section(cfg, "sft"), prefix="sft.")
        gradient_accumulation(sft.global_batch_size, sft.per_device_batch_size, world)
    for kind, recipe in (("rl", RLRecipe), ("distill", DistillRecipe)):
        if kind in kinds:
            validated(recipe, section(cfg, kind), prefix=f"{kind}.").rollout_batch(world)


# Config keys whose string values name an input: a hub id or a local path (data sections and benchmarks).
SOURCE_KEYS = ("source", "train", "test", "sft")


@dataclass(frozen=True)
class Input:
    """A model or data source of the study, and whether it can be read without a download."""

    keys: tuple[str, ...]  # the config keys that name it
    source: str
    found: str  # built in | local | cached | not cached | missing
    detail: str


def study_inputs(cfg: DictConfig) -> list[Input]:
    """The model and every data and benchmark source, each as found here: built in, a local path, in the
    Hugging Face cache (a hub download or a `datasets` cache), or not (downloaded at first use). Offline:
    the caches are read from disk, nothing is asked of the hub."""
    named: dict[tuple[str, str], list[str]] = {}
    model = cfg.model.get("path")
    named[("model", str(model) if model else "")] = ["model.path"]
    data = _sources(section(cfg, "data") or {}, "data")
    if not data:  # built-in data names no source
        named[("dataset", "")] = [f"data={cfg.data.get('name')}"]
    for key, value in data + _sources(section(cfg, "eval").get("benchmarks") or {}, "eval.benchmarks"):
        named.setdefault(("dataset", value), []).append(key)
    cached = _hub_cache()
    return [_find(kind, source, tuple(keys), cached) for (kind, source), keys in named.items()]


def _sources(node: Any, prefix: str) -> list[tuple[str, str]]:
    """(key, value) of every source-naming string under a config section (a subset with count 0 is left out)."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        if node.get("count") == 0:
            return found
        for key, value in node.items():
            where = f"{prefix}.{key}"
            if isinstance(value, str) and key in SOURCE_KEYS:
                found.append((where, value))
            elif isinstance(value, dict):
                found += _sources(value, where)
    return found


def _hub_cache() -> dict[tuple[str, str], Any]:
    """(repo type, repo id) -> the Hugging Face hub cache's entry (huggingface_hub's scan of the disk)."""
    # lazy: huggingface_hub, only where the study's inputs are listed
    from huggingface_hub import scan_cache_dir

    try:
        return {(repo.repo_type, repo.repo_id): repo for repo in scan_cache_dir().repos}
    except Exception:  # noqa: BLE001 (no cache directory yet, or one it cannot read: nothing cached)
        return {}


def _find(kind: str, source: str, keys: tuple[str, ...], cached: dict[tuple[str, str], Any]) -> Input:
    # lazy: huggingface_hub, only where the study's inputs are listed
    from huggingface_hub import constants

    if not source or source == "builtin":
        return Input(keys, "built in", "built in", "made here, nothing to fetch")
    path = Path(source).expanduser()
    if path.exists():
        return Input(keys, source, "local", "directory" if path.is_dir() else "file")
    if source.count("/") != 1 or source.startswith((".", "/", "~")) or source.endswith(FILE_SUFFIXES):
        return Input(keys, source, "missing", "no such file or directory (and not a hub id)")
    repo = cached.get((kind, source))
    if repo is not None:
        size = (
            f"{repo.size_on_disk / 1e9:.2f} GB"
            if repo.size_on_disk >= 1e8
            else f"{repo.size_on_disk / 1e6:.1f} MB"
        )
        return Input(keys, source, "cached", f"in the hub cache ({repo.nb_files} files, {size})")
    if kind == "dataset" and (where := _datasets_cache(source)) is not None:
        return Input(keys, source, "cached", f"prepared by `datasets` ({where})")
    offline = constants.HF_HUB_OFFLINE
    detail = (
        "not cached, and HF_HUB_OFFLINE is set: the stages that read it will fail"
        if offline
        else "not cached: downloaded from the hub at first use"
    )
    return Input(keys, source, "not cached", detail)


def _datasets_cache(source: str) -> Path | None:
    """Where `datasets` keeps a hub dataset it prepared (its own layout: owner___name/config/version/hash)."""
    # lazy: datasets (heavy), only where the study's inputs are listed
    from datasets import config
    from datasets.naming import camelcase_to_snakecase

    owner, name = source.split("/")
    root = Path(config.HF_DATASETS_CACHE) / f"{owner}___{camelcase_to_snakecase(name)}"
    return root if any(p.is_dir() for p in root.glob("*/*/*")) else None


def run_study(cfg: DictConfig, runs_dir: Path, name: str, console: Console) -> Any:
    """Run every stage of the study, then compare the evaluated models; return the compare result."""
    stages = plan(cfg, name)
    check_study(cfg, stages)
    settings = study_settings(cfg)
    if settings.merge_search.methods:  # the tuned merges' validation items, kept off the test sets
        # lazy: the m2rl.merge package imports torch, only where a study tunes a merge
        from m2rl.merge.search import validation_items

        tuned = merge_job(cfg, settings.merge_search.methods[0], ["unused"], search=merge_search(cfg))
        validation_items(tuned.search)
    ledger = Ledger(runs_dir)
    share = machine_share(settings)
    backend = make_backend(settings)
    console.print(
        f"study {name}: {len(stages)} stages, executor {backend.name}, up to {share.slots} at once"
        + (f", {share.threads} CPU threads" if settings.executor == "local" and not share.devices else "")
        + f"; runs in {ledger.root}"
    )
    executor = Executor(stages, ledger, backend, share, config=to_container(cfg))
    if settings.executor == "slurm":
        executor.poll_s = settings.slurm.poll_s
    view = LiveView(executor.states, console)
    executor.on_event, executor.on_tick = view.event, view.tick
    with view:
        states = executor.run()
    failed = [s for s in states.values() if s.status == "failed"]
    if failed:
        skipped = sum(1 for s in states.values() if s.status == "skipped")
        listing = "; ".join(f"{s.stage.name} ({s.error})" for s in failed)
        raise StudyFailed(
            f"study {name}: {len(failed)} stage(s) failed: {listing}; {skipped} skipped. "
            "Re-run the same command to continue: finished stages are reused."
        )
    evaluated = [s.evaluates for s in stages if s.kind == "eval"]
    runs = [ledger.get(states[model].run.id) for model in evaluated]
    out = ledger.root / scope_folder(name, runs)
    return compare_runs(runs, out, seed=int(cfg.seed), latest=ledger.root / study_folder(name))
