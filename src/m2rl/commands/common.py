"""Options and helpers shared by every command: overrides, runs root, name, dry run, messages, costs."""

from __future__ import annotations

import io
import os
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from omegaconf import DictConfig
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.syntax import Syntax

from m2rl.config import compose_config, to_yaml
from m2rl.console import console
from m2rl.errors import Interrupted

Overrides = Annotated[
    list[str] | None,
    typer.Argument(
        help="Hydra overrides: `key=value`, `+key=value` to add, `~key` to delete (examples below).",
        show_default=False,
    ),
]
RunsDir = Annotated[
    Path,
    typer.Option("--runs-dir", envvar="M2RL_RUNS_DIR", help="Root holding one directory per run."),
]
Name = Annotated[str | None, typer.Option("--name", help="Run name (default: derived from the command).")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print the resolved config and plan; run nothing.", metavar="")
]

DEFAULT_RUNS_DIR = Path("runs")


def load_config(overrides: list[str] | None) -> DictConfig:
    """Compose the config for a command from `conf/` plus the user's overrides."""
    return compose_config(list(overrides or []))


def print_config(cfg: DictConfig, title: str = "resolved config") -> None:
    """Print the resolved config as highlighted YAML."""
    console.rule(title)
    console.print(Syntax(to_yaml(cfg), "yaml", background_color="default"))


def fits(renderable: RenderableType, width: int) -> bool:
    """Whether `renderable` prints within `width` columns with no cell cut short."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(renderable, crop=False)
    text = buffer.getvalue()
    return "…" not in text and all(cell_len(line) <= width for line in text.splitlines())


def first_fitting(layouts: Sequence[Callable[[], RenderableType]], width: int | None) -> RenderableType:
    """The first (widest) layout that fits `width`, else the last (narrowest); the first without a width."""
    for build in layouts:
        shown = build()
        if width is None or fits(shown, width):
            return shown
    return shown


def say(message: str) -> None:
    """A progress line on stdout, never wrapped (ids and paths stay whole for copying and grep)."""
    console.print(message, soft_wrap=True, highlight=False, markup=False)


def hours_rows(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, hours) for a run's two costs: wall x devices (GPU- or CPU-hours) and process CPU time."""
    device = manifest.get("device", {})
    count = int(device.get("count", 1))
    one, many = ("GPU", "GPUs") if device.get("type") == "cuda" else ("process", "processes")
    label = manifest.get("device_hours_label", "device-hours")
    return [
        (
            f"{label} (wall x {count} {one if count == 1 else many})",
            f"{manifest.get('device_hours', 0.0):.4f}",
        ),
        ("CPU-hours (process CPU time)", f"{manifest.get('cpu_seconds', 0.0) / 3600:.4f}"),
    ]


@contextmanager
def resume_hint(runs_dir: Path) -> Iterator[None]:
    """Add `--runs-dir` to an interrupt's resume command when the runs root is not the one it would find."""
    try:
        yield
    except Interrupted as exc:
        default = Path(os.environ.get("M2RL_RUNS_DIR") or DEFAULT_RUNS_DIR).resolve()
        if exc.resume.startswith("m2rl ") and Path(runs_dir).resolve() != default:
            exc.resume += f" --runs-dir {shlex.quote(str(Path(runs_dir).resolve()))}"
        raise
