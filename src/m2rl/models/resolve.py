"""Turn the `model` spec into a model directory or hub id that transformers can load."""

from __future__ import annotations

import os
from pathlib import Path

from m2rl.errors import UserError
from m2rl.models.tiny import ensure_tiny_model
from m2rl.specs import ModelSpec


def cache_root(runs_dir: Path) -> Path:
    """Where built-in artefacts (the tiny model) are cached: `<runs-dir>/.cache`."""
    return Path(runs_dir) / ".cache"


def resolve_base_model(model: ModelSpec, runs_dir: Path) -> str:
    """The base model to start from: the built-in tiny model, a local directory, or a hub id."""
    if not model.path:
        if not model.builtin:
            raise UserError("model.path is empty and the model config has no `builtin` section")
        return str(ensure_tiny_model(dict(model.builtin), cache_root(runs_dir)))
    path = str(model.path)
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise UserError(f"model.path {path}: directory has no config.json (not a Hugging Face model)")
        return str(local.resolve())
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise UserError(f"model.path {path}: no such local directory, and not a hub id of the form org/name")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        # lazy: huggingface_hub, only to look a model id up in the hub cache
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(path, "config.json"), str):
            raise UserError(f"model {path} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1")
    return path
