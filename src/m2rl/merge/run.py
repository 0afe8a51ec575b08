"""Merging model directories with a resolved method: mergekit, or the paper's streamed engine."""

from __future__ import annotations

import shutil
from pathlib import Path

from m2rl.merge.mergekit_backend import (
    MERGEKIT_YAML,
    mergekit_config,
    run_mergekit,
    validate_config,
    write_yaml,
)
from m2rl.merge.methods import MergeMethod
from m2rl.merge.paper import merge_paper
from m2rl.merge.tensors import INDEX_NAME, WEIGHT_SUFFIXES, ModelTensors

DTYPE_NAMES = {
    "torch.float32": "float32",
    "torch.bfloat16": "bfloat16",
    "torch.float16": "float16",
    "torch.float64": "float64",
}


def copy_model_files(base_dir: Path, out_dir: Path) -> None:
    """Copy the base's non-weight files (config, generation config, tokenizer, chat template)."""
    for path in base_dir.iterdir():
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and path.name != INDEX_NAME:
            shutil.copy2(path, out_dir / path.name)


def _base_dtype(base_dir: Path) -> str:
    with ModelTensors(base_dir) as tensors:
        floats = [i.dtype for i in tensors.entries.values() if i.dtype.is_floating_point]
    return DTYPE_NAMES.get(str(floats[0]), "float32") if floats else "float32"


def merge_models(method: MergeMethod, base_dir: Path, expert_dirs: list[Path], out_dir: Path) -> dict:
    """Merge `expert_dirs` onto `base_dir` into `out_dir` with a validated method; return what to record.

    The record holds the mergekit config file written beside `out_dir` (mergekit backend) or the
    paper engine's statistics (paper backend).
    """
    record: dict = {}
    if method.backend == "mergekit":
        kit_config = mergekit_config(method, base_dir, expert_dirs, _base_dtype(base_dir))
        validate_config(kit_config)
        write_yaml(kit_config, out_dir.parent / MERGEKIT_YAML, method.options)
        run_mergekit(kit_config, out_dir, method.options)
        record["mergekit"] = MERGEKIT_YAML
    else:
        stats = merge_paper(
            base_dir, expert_dirs, out_dir, method.algorithm, method.params, method.options["max_shard_bytes"]
        )
        record["stats"] = stats.as_dict()
    copy_model_files(base_dir, out_dir)
    return record


def check_mergekit_config(method: MergeMethod, base_dir: Path, expert_dirs: list[Path]) -> None:
    """Build and validate the mergekit config before any work (mergekit backend only)."""
    if method.backend == "mergekit":
        validate_config(mergekit_config(method, base_dir, expert_dirs, _base_dtype(base_dir)))
