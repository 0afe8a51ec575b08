"""What the engine asks of the data layer, dispatched on `data.name` through a registry of sources.

A source (`DataSource`) says how to read a data config's RL prompts per domain, its SFT
conversations, and (optionally) how `m2rl data prepare` reads it with a report. Three are
registered: `builtin` (procedural, no network), `nemotron` (the paper's blend) and `files` (every
domain from canonical files, m2rl.data.files). Whatever the source, a domain listed under
`data.files.<domain>` (or, for `data=files`, under `data.domains.<domain>`) is read from its files,
and only the other domains reach the source: this is how a user's domains join the built-in four.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from m2rl.data import files
from m2rl.data.builtin import generate
from m2rl.data.nemotron import load_rl_blend, load_sft_conversations, read_rl_blend
from m2rl.data.schema import sft_conversation, validate_samples
from m2rl.errors import UserError


@dataclass(frozen=True)
class DataSource:
    """One kind of data config: its RL prompts per domain, SFT conversations, and prepare reader."""

    name: str
    rl: Callable[[DictConfig, list[str]], dict[str, list[dict[str, Any]]]]
    sft: Callable[[DictConfig], Any]  # a datasets.Dataset with a `messages` column
    # (samples per domain, report or None) for `m2rl data prepare`; None = `rl` without a report
    prepare: Callable[[DictConfig, list[str]], tuple[dict[str, list[dict[str, Any]]], Any]] | None = None


SOURCES: dict[str, DataSource] = {}


def register_source(source: DataSource) -> DataSource:
    """Make `data.name=<source.name>` mean this source."""
    SOURCES[source.name] = source
    return source


def data_source(data_cfg: DictConfig) -> DataSource:
    """The registered source of `data.name`; UserError naming the known ones."""
    name = str(data_cfg.get("name"))
    if name not in SOURCES:
        raise UserError(f"data.name={name!r}: unknown data source; choose from {', '.join(SOURCES)}")
    return SOURCES[name]


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
    known = files.domain_names(data_cfg)
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise UserError(
            f"unknown domain(s) {', '.join(unknown)}; data={data_cfg.name} has {', '.join(known)}"
        )
    if not domains:
        raise UserError("no domains given (e.g. --domains math or --domains math,code,science,if)")
    return domains


def _builtin_sft(data_cfg: DictConfig, extra: list[dict[str, Any]] | None = None):
    # lazy: datasets (heavy), only where a dataset file is read or written
    from datasets import Dataset

    rows = [
        sft_conversation(sample)
        for domain in _own_domains(data_cfg)
        for sample in generate(
            domain,
            "sft",
            _builtin_size(data_cfg, "sft", domain),
            int(data_cfg.seed),
            builtin_difficulty(data_cfg, domain),
        )
    ]
    return Dataset.from_list(rows + list(extra or [])).shuffle(seed=int(data_cfg.seed))


def _builtin_rl(data_cfg: DictConfig, domains: list[str]) -> dict[str, list[dict[str, Any]]]:
    return {
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


def _nemotron_rl(data_cfg: DictConfig, domains: list[str]) -> dict[str, list[dict[str, Any]]]:
    return load_rl_blend(data_cfg, domains)


def _nemotron_sft(data_cfg: DictConfig):
    return load_sft_conversations(data_cfg)


def _nemotron_prepare(data_cfg: DictConfig, domains: list[str]):
    result = read_rl_blend(data_cfg, domains)
    return result.samples, result.report


register_source(DataSource("builtin", _builtin_rl, _builtin_sft))
register_source(DataSource("nemotron", _nemotron_rl, _nemotron_sft, _nemotron_prepare))
register_source(DataSource("files", files.rl_samples, files.source_sft))


def _own_domains(data_cfg: DictConfig) -> list[str]:
    """The data config's domains that its source reads (not the file-backed ones)."""
    backed = files.file_domains(data_cfg)
    return [d for d in files.domain_names(data_cfg) if d not in backed]


def sft_conversations(data_cfg: DictConfig):
    """A `datasets.Dataset` with a `messages` column (user prompt + assistant target) for SFT."""
    source = data_source(data_cfg)
    backed = files.file_domains(data_cfg)
    if source.name == "files" or not backed:
        return source.sft(data_cfg)
    extra = files.sft_messages(data_cfg, [d for d in files.domain_names(data_cfg) if d in backed])
    if source.name == "builtin":
        return _builtin_sft(data_cfg, extra)  # one shuffle over all domains, as without files
    # lazy: datasets (heavy), only where a dataset file is read or written
    import datasets

    return (
        datasets.concatenate_datasets([source.sft(data_cfg), datasets.Dataset.from_list(extra)]).shuffle(
            seed=int(data_cfg.get("seed", 0))
        )
        if extra
        else source.sft(data_cfg)
    )


def rl_samples(data_cfg: DictConfig, domains: list[str], prepare: bool = False):
    """Validated RL prompts per requested domain; a domain with no rows is a UserError.

    With `prepare`, returns (samples per domain, the source's report or None).
    """
    check_domains(domains, data_cfg)
    source = data_source(data_cfg)
    backed = files.file_domains(data_cfg)
    own = [d for d in domains if d not in backed]
    report = None
    per_domain: dict[str, list[dict[str, Any]]] = {}
    if own and prepare and source.prepare is not None:
        per_domain, report = source.prepare(data_cfg, own)
    elif own:
        per_domain = source.rl(data_cfg, own)
    per_domain = dict(per_domain) | files.rl_samples(data_cfg, [d for d in domains if d in backed])
    per_domain = {d: per_domain.get(d, []) for d in domains}
    empty = [d for d in domains if not per_domain.get(d)]
    if empty:
        raise UserError(f"domain(s) {', '.join(empty)} have no rows in data={data_cfg.name}")
    return (per_domain, report) if prepare else per_domain


def mixture_weights(data_cfg: DictConfig) -> dict[str, float] | None:
    """Optional per-domain weights for the mixed run (None = natural proportions)."""
    weights = data_cfg.get("weights")
    return None if weights is None else {str(k): float(v) for k, v in OmegaConf.to_container(weights).items()}
