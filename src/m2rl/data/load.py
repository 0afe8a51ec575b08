"""What the engine asks of the data layer, dispatched on `data.name` (builtin or a real adapter)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from m2rl.data.builtin import generate
from m2rl.data.schema import validate_samples
from m2rl.errors import UserError


def _builtin_size(data_cfg: DictConfig, split: str, domain: str) -> int:
    """How many built-in samples of `domain` the split holds: `data.sizes.<split>` is one int or one per domain."""
    size = data_cfg.sizes[split]
    return int(size[domain] if isinstance(size, DictConfig) else size)


def builtin_difficulty(data_cfg: DictConfig, domain: str) -> int:
    """The built-in generator difficulty of a domain: `data.difficulty` is one int or one per domain."""
    difficulty = data_cfg.difficulty
    return int(difficulty[domain] if isinstance(difficulty, DictConfig) else difficulty)


def check_domains(domains: list[str], data_cfg: DictConfig) -> list[str]:
    """The requested domains, each known to the data config; an unknown one is a UserError."""
    known = list(data_cfg.domains)
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise UserError(
            f"unknown domain(s) {', '.join(unknown)}; data={data_cfg.name} has {', '.join(known)}"
        )
    if not domains:
        raise UserError("no domains given (e.g. --domains math or --domains math,code,science,if)")
    return domains


def sft_conversations(data_cfg: DictConfig):
    """A `datasets.Dataset` with a `messages` column (user prompt + assistant target) for SFT."""
    from datasets import Dataset

    if data_cfg.name == "builtin":
        rows = []
        for domain in data_cfg.domains:
            for sample in generate(
                domain,
                "sft",
                _builtin_size(data_cfg, "sft", domain),
                int(data_cfg.seed),
                builtin_difficulty(data_cfg, domain),
            ):
                rows.append(
                    {
                        "messages": sample["prompt"]
                        + [{"role": "assistant", "content": sample["metadata"]["solution"]}]
                    }
                )
        return Dataset.from_list(rows).shuffle(seed=int(data_cfg.seed))
    from m2rl.data.nemotron import load_sft_conversations

    return load_sft_conversations(data_cfg)


def rl_samples(data_cfg: DictConfig, domains: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Validated RL prompts per requested domain; a domain with no rows is a UserError."""
    check_domains(domains, data_cfg)
    if data_cfg.name == "builtin":
        per_domain = {
            d: validate_samples(
                generate(
                    d,
                    "rl",
                    _builtin_size(data_cfg, "rl", d),
                    int(data_cfg.seed),
                    builtin_difficulty(data_cfg, d),
                ),
                f"builtin {d}",
            )
            for d in domains
        }
    else:
        from m2rl.data.nemotron import load_rl_blend

        per_domain = load_rl_blend(data_cfg, domains)
    empty = [d for d in domains if not per_domain.get(d)]
    if empty:
        raise UserError(f"domain(s) {', '.join(empty)} have no rows in data={data_cfg.name}")
    return per_domain


def mixture_weights(data_cfg: DictConfig) -> dict[str, float] | None:
    """Optional per-domain weights for the mixed run (None = natural proportions)."""
    weights = data_cfg.get("weights")
    return None if weights is None else {str(k): float(v) for k, v in OmegaConf.to_container(weights).items()}
