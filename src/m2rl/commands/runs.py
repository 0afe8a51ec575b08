"""List runs under the runs root: kind, name, status, lineage, device-hours and CPU-hours."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from m2rl.commands.common import DEFAULT_RUNS_DIR, RunsDir, first_fitting
from m2rl.console import console

ALWAYS_SHOWN = ("id", "kind", "status", "device-h", "CPU-h")
STATUS_STYLES = {"completed": "green", "failed": "red", "running": "yellow", "queued": "cyan"}
COSTS_NOTE = (
    "device-h: wall time x devices (GPUs; processes on a CPU), labelled GPU or CPU; "
    "CPU-h: CPU time of the run's processes; eval time is in neither"
)


def command(
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the manifests as a JSON list.", metavar="")
    ] = False,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only runs of this kind (sft, rl, merge, ...).")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Report every problem under the runs root and what to do (exit 1).", metavar=""
        ),
    ] = False,
) -> None:
    """List runs: id, kind, status, study, parents, device-hours and CPU-hours (`--json` for manifests)."""
    # lazy: pydantic (the run specs); the CLI imports every command at start
    from m2rl.ledger import Ledger

    if check:
        raise typer.Exit(report_problems(runs_dir))
    runs = [r for r in Ledger(runs_dir).runs() if kind is None or r.kind == kind]
    if as_json:
        print(json.dumps([r.manifest for r in runs], indent=2, default=str))
        return
    if not runs:
        console.print(f"no runs under {runs_dir}")
        return
    manifests = [r.manifest for r in runs]
    console.print(runs_listing(manifests, Path(runs_dir), console.width))


def runs_listing(manifests: list[dict[str, Any]], root: Path, width: int | None) -> RenderableType:
    """The widest layout of the runs that fits `width` without cutting an id: a table, or one block per run."""
    shared = Counter(m["name"] for m in manifests)
    # parents are named where the name is unambiguous, else shown by id
    names = {m["id"]: m["name"] for m in manifests if shared[m["name"]] == 1}
    title = f"runs in {root} ({len(manifests)})"
    return first_fitting(
        [
            lambda: _table(manifests, names, title, ("name", "study", "seed", "parents", "wall s")),
            lambda: _table(manifests, names, title, ("parents",)),
            lambda: _table(manifests, names, title, ()),
            lambda: _blocks(manifests, names, title),
        ],
        width,
    )


def _parents(manifest: dict[str, Any], names: dict[str, str]) -> str:
    return ", ".join(names.get(p, p) for p in manifest.get("parents", [])) or "-"


def _device_hours(manifest: dict[str, Any]) -> str:
    unit = "GPU" if manifest.get("device_hours_label") == "GPU-hours" else "CPU"
    return f"{manifest.get('device_hours', 0.0):.4f} {unit}"


def _cpu_hours(manifest: dict[str, Any]) -> str:
    return f"{manifest.get('cpu_seconds', 0.0) / 3600:.4f}"


def _status(manifest: dict[str, Any]) -> Text:
    return Text(manifest["status"], style=STATUS_STYLES.get(manifest["status"], ""))


def _table(
    manifests: list[dict[str, Any]], names: dict[str, str], title: str, extra: tuple[str, ...]
) -> Table:
    """One row per run: id, kind, status and costs, plus the `extra` columns (name, study, seed, parents, wall s)."""
    caption = COSTS_NOTE if "parents" in extra else f"{COSTS_NOTE}; parents: m2rl runs --json"
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )
    columns = {
        "id": lambda m: m["id"],
        "kind": lambda m: m["kind"],
        "name": lambda m: m["name"],
        "status": _status,
        "study": lambda m: m.get("study") or "-",
        "seed": lambda m: "-" if m.get("seed") is None else str(m["seed"]),
        "parents": lambda m: _parents(m, names),
        "device-h": _device_hours,
        "CPU-h": _cpu_hours,
        "wall s": lambda m: f"{m.get('wall_seconds', 0.0):.1f}",
    }
    shown = [c for c in columns if c in ALWAYS_SHOWN or c in extra]
    for column in shown:
        numeric = column in ("seed", "device-h", "CPU-h", "wall s")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=column != "parents")
    for m in manifests:
        table.add_row(*(columns[c](m) for c in shown))
    return table


def _blocks(manifests: list[dict[str, Any]], names: dict[str, str], title: str) -> Group:
    """One block per run, its id alone on an unindented line: fits any usual width, ids never cut."""
    parts: list[RenderableType] = [Text(title, style="bold")]
    for m in manifests:
        facts = [] if m["name"] in m["id"] else [f"name {m['name']}"]
        facts += [f"study {m['study']}"] if m.get("study") else []
        facts += [] if m.get("seed") is None else [f"seed {m['seed']}"]
        costs = f"device-h {_device_hours(m)}, CPU-h {_cpu_hours(m)}, wall {m.get('wall_seconds', 0.0):.1f} s"
        details = Text.assemble(
            f"{m['kind']}, ", _status(m), "".join(f", {fact}" for fact in facts),
            f"\nparents {_parents(m, names)}\n{costs}",
        )  # fmt: skip
        parts += [Text(m["id"]), Padding(details, (0, 0, 0, 2))]
    parts.append(Text(COSTS_NOTE, style="dim"))
    return Group(*parts)


def report_problems(runs_dir: Path) -> int:
    """Print each problem under the runs root on one line (path, what, what to do); 1 if any, else 0."""
    # lazy: pydantic (the run specs); the CLI imports every command at start
    from m2rl.ledger import Ledger

    ledger = Ledger(runs_dir, report=None)
    problems = ledger.check()
    for problem in problems:
        print(problem)
    runs = len(ledger.runs())
    if problems:
        print(f"{len(problems)} problem(s) under {ledger.root} ({runs} readable run(s))")
        return 1
    print(f"no problems under {ledger.root} ({runs} run(s))")
    return 0
