"""Compose a command's configuration from `conf/` with Hydra's compose API."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from m2rl.errors import UserError


def conf_dir() -> Path:
    """The `conf/` directory: $M2RL_CONF_DIR, else the one shipped beside the package sources."""
    if env := os.environ.get("M2RL_CONF_DIR"):
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2] / "conf"


def is_override(argument: str) -> bool:
    """Whether a command-line argument is a Hydra override: `key=value`, `+key=value` or `~key` (delete)."""
    return "=" in argument or argument.startswith("~")


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The resolved config for these Hydra overrides; bad overrides raise UserError."""
    overrides = list(overrides or [])
    for item in overrides:
        if not is_override(item):
            raise UserError(
                f"override {item!r} is not of the form key=value, +key=value or ~key (e.g. rl.steps=50)"
            )
    directory = conf_dir()
    if not (directory / "config.yaml").is_file():
        raise UserError(f"config directory {directory} has no config.yaml; set M2RL_CONF_DIR")
    try:
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"bad config override: {first_line}") from exc
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The config as YAML text, for --dry-run and the run directory."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_container(cfg: DictConfig) -> dict:
    """The config as plain Python containers."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


# The config sections that decide what a training run produces. A stage's identity hashes only these,
# so changing the RL recipe does not retrain SFT, and changing eval or merges retrains nothing.
TRAINING_SECTIONS = {
    "sft": ("model", "data", "sft", "launcher", "seed"),
    "rl": ("model", "data", "rl", "verifiers", "launcher", "seed"),
}


def training_config_hash(cfg: DictConfig, kind: str, *inputs: object) -> str:
    """Identity of an SFT or RL run: its sections of the config plus its inputs (domains, parents)."""
    resolved = to_container(cfg)
    return config_hash({key: resolved.get(key) for key in TRAINING_SECTIONS[kind]}, kind, *inputs)


def config_hash(*parts: object) -> str:
    """A stable short hash of configs and inputs, used to recognise an identical finished run."""
    payload = json.dumps(
        [to_container(p) if isinstance(p, DictConfig) else p for p in parts], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
