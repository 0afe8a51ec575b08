"""Which runs a merge combines: the experts, their shared SFT base, and whether they fit together."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from m2rl.errors import UserError
from m2rl.ledger import Ledger, Run
from m2rl.merge.tensors import ModelTensors

GLOB_CHARS = "*?["
# config.json keys that must agree for tensors of the same name to mean the same thing.
ARCH_KEYS = (
    "architectures",
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "tie_word_embeddings",
)


def resolve_experts(ledger: Ledger, refs: list[str]) -> list[Run]:
    """Runs named by ids, names, paths, globs of run names, or a study name (its single-domain RL runs)."""
    experts: list[Run] = []
    for ref in (r.strip() for r in refs):
        if not ref:
            continue
        if any(c in ref for c in GLOB_CHARS):  # a glob matches experts only (not the mixed run, SFT...)
            named = [r for r in ledger.runs() if r.status == "completed" and fnmatch.fnmatch(r.name, ref)]
            matched = [r for r in named if r.is_expert]
            if not matched:
                others = f" (only {', '.join(sorted({r.name for r in named}))}, not experts)" if named else ""
                raise UserError(
                    f"--experts: no completed expert's name matches {ref!r} under {ledger.root}{others}"
                )
            experts.extend(_newest_per_name(matched))
            continue
        study = [
            r
            for r in ledger.runs()
            if r.manifest.get("study") == ref and r.status == "completed" and r.is_expert
        ]
        experts.extend(_newest_per_name(study) if study else [ledger.get(ref)])
    unique = list({r.id: r for r in experts}.values())
    if not unique:
        raise UserError("--experts: no runs given")
    return unique


def _newest_per_name(runs: list[Run]) -> list[Run]:
    newest: dict[str, Run] = {}
    for run in runs:  # ledger.runs() is oldest first
        newest[run.name] = run
    return list(newest.values())


def _sft_parent(ledger: Ledger, run: Run) -> str | None:
    """The id of a run's SFT parent (its first recorded parent), if it has one."""
    parents = run.manifest.get("parents") or []
    return parents[0] if parents else None


def shared_base(ledger: Ledger, experts: list[Run], base: Run | None) -> Run:
    """The base to merge onto: `base` if given, else the SFT parent all experts share."""
    for run in experts:
        if run.status != "completed":
            raise UserError(f"expert run {run.id} is {run.status}, not completed; merge completed runs only")
    parents = {run.id: _sft_parent(ledger, run) for run in experts}
    known = {p for p in parents.values() if p}
    if len(known) > 1:
        listing = ", ".join(f"{rid} <- {p}" for rid, p in parents.items())
        raise UserError(f"experts come from different SFT runs ({listing}); merge experts of one SFT parent")
    if base is None:
        if not known or None in parents.values():
            orphans = ", ".join(rid for rid, p in parents.items() if not p)
            raise UserError(f"expert run(s) {orphans} record no SFT parent; pass --base RUN")
        base = ledger.get(known.pop())
    if base.status != "completed":
        raise UserError(f"base run {base.id} is {base.status}, not completed")
    if base.id in parents:
        raise UserError(f"run {base.id} is both the base and an expert")
    return base


def _arch(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{model_dir}: no config.json (not a Hugging Face model directory)")
    config = json.loads(path.read_text())
    text = config.get("text_config") or {}
    return {k: config.get(k, text.get(k)) for k in ARCH_KEYS}


def check_compatible(base: Run, experts: list[Run]) -> None:
    """Experts and base must share architecture and every tensor's name, shape and dtype kind."""
    if not base.model_dir.is_dir():
        raise UserError(f"base run {base.id} has no model directory {base.model_dir}")
    base_arch = _arch(base.model_dir)
    with ModelTensors(base.model_dir) as base_tensors:
        base_entries = base_tensors.entries
    for run in experts:
        if not run.model_dir.is_dir():
            raise UserError(f"expert run {run.id} has no model directory {run.model_dir}")
        arch = _arch(run.model_dir)
        for key in ARCH_KEYS:
            if arch[key] != base_arch[key]:
                raise UserError(
                    f"expert run {run.id}: {key}={arch[key]} but base run {base.id} has {base_arch[key]}"
                )
        with ModelTensors(run.model_dir) as tensors:
            entries = tensors.entries
        missing = sorted(set(base_entries) - set(entries))
        extra = sorted(set(entries) - set(base_entries))
        if missing or extra:
            what = f"lacks {missing[0]}" if missing else f"has extra tensor {extra[0]}"
            raise UserError(f"expert run {run.id} {what} (base run {base.id}); tensor sets must match")
        for name, info in entries.items():
            want = base_entries[name]
            if info.shape != want.shape:
                raise UserError(
                    f"expert run {run.id}: tensor {name} has shape {list(info.shape)} but base run {base.id} has {list(want.shape)}"
                )
            if info.dtype.is_floating_point != want.dtype.is_floating_point:
                raise UserError(
                    f"expert run {run.id}: tensor {name} is {info.dtype}, base run {base.id} has {want.dtype}"
                )
