"""Options and helpers shared by every command: overrides, runs root, name, dry run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from omegaconf import DictConfig
from rich.syntax import Syntax

from m2rl.config import compose_config, to_yaml
from m2rl.console import console

Overrides = Annotated[
    list[str] | None,
    typer.Argument(
        help="Hydra overrides, e.g. `preset=paper rl.steps=50 data.sizes.rl=200`.", show_default=False
    ),
]
RunsDir = Annotated[
    Path,
    typer.Option("--runs-dir", envvar="M2RL_RUNS_DIR", help="Root holding one directory per run."),
]
Name = Annotated[str | None, typer.Option("--name", help="Run name (default: derived from the command).")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print the resolved config and exit without running.")
]

DEFAULT_RUNS_DIR = Path("runs")


def load_config(overrides: list[str] | None) -> DictConfig:
    """Compose the config for a command from `conf/` plus the user's overrides."""
    return compose_config(list(overrides or []))


def print_config(cfg: DictConfig, title: str = "resolved config") -> None:
    """Print the resolved config as highlighted YAML."""
    console.rule(title)
    console.print(Syntax(to_yaml(cfg), "yaml", background_color="default"))
