"""mergekit methods through its Python API, with the `mergekit.yml` that reproduces each merge."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from m2rl.errors import UserError
from m2rl.merge.methods import MergeMethod

MERGEKIT_YAML = "mergekit.yml"


def mergekit_config(
    method: MergeMethod, base_dir: Path, expert_dirs: list[Path], out_dtype: str
) -> dict[str, Any]:
    """The mergekit configuration (a plain dict, as in a mergekit YAML file) for this merge."""
    # lazy: mergekit (heavy), only with the mergekit backend
    from mergekit.merge_methods import registry
    from mergekit.merge_methods.base import BasePolicy

    for directory in [base_dir, *expert_dirs]:
        if not json.loads((Path(directory) / "config.json").read_text()).get("architectures"):
            raise UserError(
                f"{directory}/config.json names no `architectures`; mergekit needs it to map tensors"
            )
    uses_base = registry.get(method.algorithm).spec.contract.base != BasePolicy.IGNORED
    config: dict[str, Any] = {
        "merge_method": method.algorithm,
        "models": [{"model": str(Path(d).resolve())} for d in expert_dirs],
        "dtype": method.options["dtype"],
        "out_dtype": out_dtype,
    }
    if uses_base:
        config["base_model"] = str(Path(base_dir).resolve())
    if method.params:
        config["parameters"] = dict(method.params)
    return config


def validate_config(config: dict[str, Any]):
    """Parse a mergekit config dict into its MergeConfiguration; errors become UserError."""
    # lazy: mergekit (heavy), only with the mergekit backend
    from mergekit.config import MergeConfiguration

    try:
        return MergeConfiguration.model_validate(config)
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise UserError(f"mergekit rejected the merge config: {' '.join(first[:3])}") from exc


def run_mergekit(config: dict[str, Any], out_dir: Path, options: dict[str, Any], quiet: bool = True) -> None:
    """Run one mergekit merge into `out_dir`."""
    # lazy: mergekit (heavy), only with the mergekit backend
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    merge_config = validate_config(config)
    merge_options = MergeOptions(
        copy_tokenizer=True,
        random_seed=options.get("seed"),
        out_shard_size=int(options.get("max_shard_bytes", 2_000_000_000)),
        write_model_card=False,
        quiet=quiet,
        lazy_unpickle=False,
    )
    logging.getLogger("mergekit").setLevel(logging.WARNING)
    sink = io.StringIO()
    with contextlib.redirect_stderr(sink) if quiet else contextlib.nullcontext():
        run_merge(merge_config, str(out_dir), options=merge_options)


def write_yaml(config: dict[str, Any], path: Path, options: dict[str, Any]) -> None:
    """Write a config `mergekit-yaml` accepts, headed by the command that reproduces the merge."""
    command = f"mergekit-yaml {path.name} OUT_DIR --random-seed {options.get('seed', 0)} --out-shard-size {reproduce_shard_size(options)}"
    path.write_text(f"# reproduce: {command}\n" + yaml.safe_dump(config, sort_keys=False))


def reproduce_shard_size(options: dict[str, Any]) -> str:
    """max_shard_bytes in mergekit's K/M/B notation."""
    size = int(options.get("max_shard_bytes", 2_000_000_000))
    for unit, factor in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
