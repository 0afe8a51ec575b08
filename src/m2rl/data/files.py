"""Domains whose data are files in the canonical schema (m2rl.data.schema): JSONL, JSON, parquet or
CSV, local or a hub dataset id, one entry per domain with up to three splits:

    data.domains.<domain>.train=FILE   # RL prompts (required)
    data.domains.<domain>.test=FILE    # held-out eval items (optional: no eval of that domain)
    data.domains.<domain>.sft=FILE     # SFT targets: canonical rows with metadata.solution (optional)

under `data=files` (only these domains), or as `data.files.<domain>.*` beside any other source,
whose own domains stay as they are (e.g. the four built-in domains plus a fifth from files; the
domain must then also be listed in `data.domains`). Every row is validated as it is read -- its
shape, its reward type (a registered plugin's check included) -- and an error names the file and
line (or parquet row). A row without a `domain` gets the entry's; one naming another domain is an
error. What `m2rl data prepare` writes (metadata as a JSON string) reads back unchanged.

A hub id (`owner/name`) is loaded with `datasets.load_dataset(id, split=<split>)`, the split being
`train`, `test` or `train` for sft.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from m2rl.data.schema import sft_conversation, validate_sample
from m2rl.data.sources import RecordCursor, is_local, iter_records
from m2rl.errors import UserError

SPLITS = ("train", "test", "sft")
HUB_SPLIT = {"train": "train", "test": "test", "sft": "train"}


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else node


def domain_names(data_cfg: Any) -> list[str]:
    """The data config's domains: `data.domains` as a list, or the keys of its mapping (data=files)."""
    domains = _plain(data_cfg.get("domains"))
    if isinstance(domains, Mapping):
        return [str(d) for d in domains]
    return [str(d) for d in domains or []]


def file_domains(data_cfg: Any) -> dict[str, dict[str, str | None]]:
    """domain -> {train, test, sft} for every file-backed domain of the data config."""
    entries: dict[str, Any] = {}
    domains = _plain(data_cfg.get("domains"))
    if isinstance(domains, Mapping):
        entries |= {f"data.domains.{name}": (name, entry) for name, entry in domains.items()}
    extra = _plain(data_cfg.get("files")) or {}
    if not isinstance(extra, Mapping):
        raise UserError(f"data.files: expected a mapping domain -> {{train, test, sft}}, got {extra!r}")
    entries |= {f"data.files.{name}": (name, entry) for name, entry in extra.items()}
    out: dict[str, dict[str, str | None]] = {}
    for where, (name, entry) in entries.items():
        if not isinstance(entry, Mapping):
            raise UserError(f"{where}: expected {{train: FILE, test: FILE, sft: FILE}}, got {entry!r}")
        unknown = sorted(set(entry) - set(SPLITS))
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(SPLITS)}")
        if not entry.get("train"):
            raise UserError(f"{where}.train: no file given (the domain's RL prompts)")
        out[str(name)] = {split: None if entry.get(split) is None else str(entry[split]) for split in SPLITS}
    return out


def decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A row as written by `write_samples` (metadata as JSON text) back in canonical form."""
    metadata = row.get("metadata")
    if isinstance(metadata, str):
        row = dict(row)
        try:
            row["metadata"] = json.loads(metadata) if metadata.strip() else {}
        except json.JSONDecodeError:
            pass  # left as text: validation names the field
    return row


def read_domain(
    source: str, domain: str, split: str = "train", reward: bool = True, where: str | None = None
) -> list[dict[str, Any]]:
    """Every row of `source` as a validated canonical sample of `domain`; UserError naming file and line."""
    samples = []
    cursor = RecordCursor(iter_records(source, HUB_SPLIT[split]))
    for record in cursor:
        row = decoded(record.row)
        row.setdefault("domain", domain)
        if row["domain"] != domain:
            raise UserError(
                f"{record.location}: row of domain {row['domain']!r} in the {domain} domain's {split} file"
            )
        sample = validate_sample(row, record.location, reward=reward)
        if split == "sft" and not isinstance(sample["metadata"].get("solution"), str):
            raise UserError(
                f"{record.location} (id {sample['id']!r}): an SFT row needs metadata.solution (the target response)"
            )
        samples.append(sample)
    if not samples:
        raise UserError(f"{where or source}: no rows in {source}")
    return samples


def check_local_files(data_cfg: Any) -> None:
    """Read and validate every local file of the file-backed domains (UserError naming file and line),
    so that a bad row stops a study before its first stage, not when the stage that reads it starts,
    minutes or hours in. Hub datasets are checked when a stage loads them (that needs the network)."""
    for domain, splits in file_domains(data_cfg).items():
        for split, source in splits.items():
            if source is not None and is_local(source):
                read_domain(source, domain, split, reward=split != "sft", where=f"{domain} {split}")


def rl_samples(data_cfg: Any, domains: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The RL prompts of the file-backed `domains` (for data=files, the source's `rl`)."""
    files = file_domains(data_cfg)
    return {d: read_domain(files[d]["train"], d, "train", where=f"{d} train") for d in domains}


def sft_messages(data_cfg: Any, domains: list[str]) -> list[dict[str, Any]]:
    """`messages` rows (prompt + the solution as the assistant's turn) of the domains that have an sft file."""
    files = file_domains(data_cfg)
    return [
        sft_conversation(sample)
        for domain in domains
        if files[domain]["sft"] is not None
        for sample in read_domain(files[domain]["sft"], domain, "sft", reward=False, where=f"{domain} sft")
    ]


def source_sft(data_cfg: Any):
    """data=files: one shuffled `messages` dataset from every domain's sft file."""
    # lazy: datasets (heavy), only where a dataset file is read or written
    from datasets import Dataset

    rows = sft_messages(data_cfg, domain_names(data_cfg))
    if not rows:
        raise UserError("data=files: no domain has an sft file (data.domains.<domain>.sft=FILE)")
    return Dataset.from_list(rows).shuffle(seed=int(data_cfg.get("seed", 0)))
