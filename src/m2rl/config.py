"""Compose a command's configuration from `conf/` with Hydra's compose API."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
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
    overrides = [open_key(item) for item in overrides]
    directory = conf_dir()
    if not (directory / "config.yaml").is_file():
        raise UserError(f"config directory {directory} has no config.yaml; set M2RL_CONF_DIR")
    try:
        cfg = _compose(directory, overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"bad config override: {first_line}{_did_you_mean(str(exc), directory, overrides)}"
        ) from exc
    study = cfg.get("study")
    if study is not None and isinstance(study.get("domains"), DictConfig):
        # `study.domains: ${data.domains}` under data=files, whose domains are a mapping: its names
        study.domains = [str(name) for name in study.domains]
    verifiers = cfg.get("verifiers")
    if verifiers is not None and verifiers.get("custom"):
        # lazy: the verifier suite (sandbox, worker pool) is loaded only where a config names plugins
        from m2rl.verifiers.config import VerifierConfig, verifier_settings

        VerifierConfig.of(verifier_settings(cfg))  # a bad reward plugin stops here: exit 2
    return cfg


# Mappings whose keys the user names (reward plugins, file-backed domains): `verifiers.custom.sql=...`,
# `data.domains.sql.train=...` and `data.files.sql.train=...` add a key there without Hydra's `+`.
OPEN_MAPPINGS = ("verifiers.custom.", "data.domains.", "data.files.")


def open_key(item: str) -> str:
    """`++key=value` for a plain `key=value` inside one of OPEN_MAPPINGS, else the override unchanged."""
    if item.startswith(("+", "~")) or "=" not in item:
        return item
    key = item.split("=", 1)[0]
    if any(key.startswith(prefix) and len(key) > len(prefix) for prefix in OPEN_MAPPINGS):
        return "++" + item
    return item


def _compose(directory: Path, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def _did_you_mean(message: str, directory: Path, overrides: list[str]) -> str:
    """` (did you mean rl.steps?)` when Hydra refused an override of a key that does not exist."""
    match = re.search(r"Could not override '([^']+)'", message)
    if not match:
        return ""
    key = match.group(1)
    parent_key, _, leaf = key.rpartition(".")
    others = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != key]
    try:
        cfg = _compose(directory, others)
    except (HydraException, OmegaConfBaseException):
        return ""
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig):
        return ""
    close = difflib.get_close_matches(leaf, [str(k) for k in parent.keys()], n=1)
    return f" (did you mean {parent_key + '.' if parent_key else ''}{close[0]}?)" if close else ""


def to_yaml(cfg: DictConfig) -> str:
    """The config as YAML text, for --dry-run and the run directory."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_container(cfg: DictConfig) -> dict:
    """The config as plain Python containers."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def config_hash(*parts: object) -> str:
    """A stable short hash of configs and inputs, used to recognise an identical finished run."""
    payload = json.dumps(
        [to_container(p) if isinstance(p, DictConfig) else p for p in parts], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
