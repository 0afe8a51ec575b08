"""List runs under the runs root: kind, name, status, lineage and device-hours."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from m2rl.commands.common import DEFAULT_RUNS_DIR, RunsDir
from m2rl.console import console


def command(
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifests as a JSON list.")] = False,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only runs of this kind (sft, rl, merge, ...).")
    ] = None,
) -> None:
    """List runs: id, kind, name, status, parents and device-hours (`--json` for manifests)."""
    from m2rl.ledger import Ledger

    runs = [r for r in Ledger(runs_dir).runs() if kind is None or r.kind == kind]
    if as_json:
        print(json.dumps([r.manifest for r in runs], indent=2, default=str))
        return
    if not runs:
        console.print(f"no runs under {runs_dir}")
        return
    names = {r.id: r.name for r in runs}
    table = Table(title=f"runs in {runs_dir}")
    for column in ("id", "kind", "name", "status", "parents", "device-hours", "wall s"):
        table.add_column(column, justify="right" if column in ("device-hours", "wall s") else "left")
    styles = {"completed": "green", "failed": "red", "running": "yellow"}
    for run in runs:
        m = run.manifest
        parents = ", ".join(names.get(p, p[:12]) for p in m.get("parents", []))
        hours = f"{m.get('device_hours', 0.0):.4f} {m.get('device_hours_label', '')}"
        table.add_row(
            run.id,
            run.kind,
            run.name,
            f"[{styles.get(run.status, '')}]{run.status}[/]",
            parents,
            hours,
            f"{m.get('wall_seconds', 0.0):.1f}",
        )
    console.print(table)
