"""Job specs from the Hydra config: the one place where config keys become typed job fields."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from m2rl.errors import UserError
from m2rl.evaluate.settings import EvalSettings, eval_section
from m2rl.specs import (
    AnalyzeJob,
    DistillJob,
    DistillRecipe,
    EvalJob,
    LauncherSpec,
    MergeJob,
    ModelSpec,
    RLJob,
    RLRecipe,
    SFTJob,
    SFTRecipe,
    validated,
)
from m2rl.verifiers.config import verifier_settings


def section(cfg: DictConfig, key: str) -> Any:
    """One config section as plain Python values (resolved)."""
    node = cfg.get(key)
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _common(cfg: DictConfig, name: str, study: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "study": study,
        "seed": cfg.get("seed", 0),
        "torch_threads": cfg.get("torch_threads"),
    }


def _training(cfg: DictConfig, recipe: str) -> dict[str, Any]:
    return {key: section(cfg, key) for key in ("model", "data", recipe, "launcher")}


def check_config(cfg: DictConfig) -> None:
    """Validate every typed section of the config (model, sft, rl, launcher) before any run exists."""
    for key, model in (
        ("model", ModelSpec),
        ("sft", SFTRecipe),
        ("rl", RLRecipe),
        ("distill", DistillRecipe),
        ("launcher", LauncherSpec),
    ):
        if cfg.get(key) is not None:
            validated(model, section(cfg, key), prefix=f"{key}.")
    data = cfg.get("data")
    if data is None or not data.get("domains"):
        raise UserError("config has no data.domains (pick a data group, e.g. data=builtin)")
    if cfg.get("torch_threads") is not None:
        try:
            if int(cfg.torch_threads) < 1:
                raise ValueError
        except ValueError:
            raise UserError(f"torch_threads={cfg.torch_threads}: expected null or an integer >= 1") from None


def sft_job(cfg: DictConfig, name: str, study: str | None = None) -> SFTJob:
    """The SFT job of this config."""
    values = _common(cfg, name, study) | _training(cfg, "sft")
    return validated(SFTJob, values)


def rl_job(
    cfg: DictConfig,
    name: str,
    domains: list[str],
    start_from: str | None,
    study: str | None = None,
    cascade_stage: int | None = None,
) -> RLJob:
    """The GRPO job of this config on `domains` (an expert or the mixed run), starting from an SFT run,
    or (`cascade_stage` k > 1 of a study's cascade) from the RL run of the stage before."""
    check_domains(cfg, domains)
    rl = cfg.rl
    steps = rl.get("steps") if len(domains) == 1 else rl.get("mixed_steps")
    values = _common(cfg, name, study) | _training(cfg, "rl")
    values |= {
        "domains": list(domains),
        "start_from": start_from,
        "steps": steps,
        "verifiers": verifier_settings(cfg),
        "cascade_stage": cascade_stage,
    }
    return validated(RLJob, values)


def merge_job(
    cfg: DictConfig,
    method: str,
    experts: list[str],
    base: str | None = None,
    name: str | None = None,
    study: str | None = None,
    params: dict[str, Any] | None = None,
    search: dict[str, Any] | None = None,
) -> MergeJob:
    """A merge job: the config's own `merge` section when it is this method, else conf/merge/<method>,
    with `params` overriding its parameters. `search` (trials, items_per_domain, params, domains) makes
    it a tuned merge, its validation items drawn from this config's data and sampled with its eval
    settings (m2rl.merge.search)."""

    # lazy: the m2rl.merge package imports torch (its merge code), which only merge jobs need
    from m2rl.merge.methods import method_section, resolve_method

    merge = section(cfg, "merge") or {}
    if merge.get("method") != method:
        merge = method_section(method)
    merge = {**merge, **(params or {})}
    resolve_method(merge)  # validate before any work
    values = _common(cfg, name or f"merge-{method}{'-tuned' if search else ''}", study)
    values |= {"method": method, "merge": merge, "experts": list(experts), "base": base}
    if search:
        EvalSettings.from_cfg(cfg)  # validate before any work
        values["search"] = search | {
            "data": section(cfg, "data"),
            "eval": eval_section(cfg),
            "verifiers": verifier_settings(cfg),
        }
    job = validated(MergeJob, values)
    if job.search is not None:
        # lazy: the m2rl.merge package imports torch, only where a tuned merge's search is checked
        from m2rl.merge.search import search_space

        search_space(resolve_method(merge), job.search.params)  # searchable parameters, before any work
    return job


def eval_job(
    cfg: DictConfig, run: str, study: str | None = None, name: str | None = None, replace: bool = False
) -> EvalJob:
    """Evaluating one run with this config's eval settings and verifiers (a study's eval stage, which
    owns its results, replaces saved ones of other settings; elsewhere only `replace` does)."""
    ev, verifiers = eval_section(cfg), verifier_settings(cfg)
    EvalSettings.of(ev, verifiers, cfg.get("seed", 0))  # validate before any work
    values = _common(cfg, name or "eval", study)
    values |= {"run": run, "eval": ev, "verifiers": verifiers}
    values["replace"] = replace or study is not None
    return validated(EvalJob, values)


def check_domains(cfg: DictConfig, domains: list[str]) -> None:
    """Every requested domain is one of data.domains."""
    if not domains:
        raise UserError("no domains given (e.g. --domains math or --domains math,code,science,if)")
    known = list(cfg.data.domains)
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise UserError(
            f"unknown domain(s) {', '.join(unknown)}; data={cfg.data.name} has {', '.join(known)}"
        )


def analyze_job(
    cfg: DictConfig,
    runs: list[str],
    name: str = "analyze",
    study: str | None = None,
    publish: str | None = None,
) -> AnalyzeJob:
    """The analyses of `runs` (their SFT bases are added) with this config's analyze and eval settings."""
    ev, verifiers = eval_section(cfg), verifier_settings(cfg)
    EvalSettings.of(ev, verifiers, cfg.get("seed", 0))  # validate before any work
    if cfg.get("analyze") is None:
        raise UserError("config has no `analyze` group (expected conf/analyze/*.yaml, e.g. analyze=tiny)")
    values = _common(cfg, name, study)
    values |= {
        "runs": list(runs),
        "analyze": section(cfg, "analyze"),
        "eval": ev,
        "verifiers": verifiers,
        "publish": publish,
    }
    return validated(AnalyzeJob, values)


def distill_job(
    cfg: DictConfig,
    name: str,
    teachers: list[str],
    start_from: str,
    domains: list[str] | None = None,
    study: str | None = None,
) -> DistillJob:
    """The MT-OPD job of this config: the student from `start_from`, teachers routed per sample's domain;
    `domains` (default: the study's domains, the mixed run's prompts) each need a teacher."""
    domains = list(domains or cfg.study.domains)
    check_domains(cfg, domains)
    if cfg.get("distill") is None:
        raise UserError("config has no `distill` group (expected conf/distill/*.yaml, e.g. distill=tiny)")
    values = _common(cfg, name, study) | _training(cfg, "distill")
    values |= {
        "domains": domains,
        "teachers": list(teachers),
        "start_from": start_from,
        "steps": cfg.distill.get("steps"),
        "verifiers": verifier_settings(cfg),
    }
    return validated(DistillJob, values)
