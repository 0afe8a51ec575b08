"""Prepare the RL data: per-domain parquet files plus the mixed file, and a table of counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from m2rl.commands.common import DryRun, Overrides, load_config, print_config
from m2rl.console import console, quiet_libraries

app = typer.Typer(
    name="data",
    help="Inspect and prepare datasets (built-in, Nemotron or your files) in m2rl's canonical sample schema.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Domains = Annotated[
    str | None,
    typer.Option("--domains", help="Comma-separated domains (default: every domain of the data config)."),
]
Out = Annotated[Path | None, typer.Option("--out", help="Output directory (default: prepared/<data.name>).")]


def prepare_rl_data(data_cfg: Any, domains: list[str], out: Path) -> dict[str, Any]:
    """Write `<domain>.parquet` per domain and `mixed.parquet`; return the summary written to report.json."""
    # lazy: the data modules, only when the command runs; the CLI imports every command at start
    from m2rl.data.load import mixture_weights, rl_samples
    from m2rl.data.mixture import domain_counts, mix
    from m2rl.data.sources import write_samples

    per_domain, report = rl_samples(data_cfg, domains, prepare=True)
    mixed = mix(per_domain, mixture_weights(data_cfg), seed=int(data_cfg.get("seed", 0)))
    files = {d: str(write_samples(out / f"{d}.parquet", per_domain[d])) for d in domains}
    files["mixed"] = str(write_samples(out / "mixed.parquet", mixed))
    summary = {
        "data": data_cfg.name,
        "domains": domains,
        "counts": {d: len(per_domain[d]) for d in domains},
        "rm_types": {d: sorted({s["rm_type"] for s in per_domain[d]}) for d in domains},
        "mixed_counts": domain_counts(mixed),
        "files": files,
        "report": report.to_dict() if report is not None else None,
        "report_lines": report.lines() if report is not None else [],
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """The counts table (and anything dropped or unresolved) on the console."""
    total_mixed = sum(summary["mixed_counts"].values()) or 1
    table = Table(title=f"RL data: {summary['data']}")
    for column in ("domain", "reward type", "samples", "share of mix", "file"):
        table.add_column(column, justify="right" if column in ("samples", "share of mix") else "left")
    folder = Path(summary["files"]["mixed"]).parent
    for domain in summary["domains"]:
        share = summary["mixed_counts"].get(domain, 0) / total_mixed
        table.add_row(
            domain,
            ", ".join(summary["rm_types"][domain]),
            str(summary["counts"][domain]),
            f"{share:.1%}",
            Path(summary["files"][domain]).name,
        )
    table.add_row(
        "[bold]mixed[/]",
        "",
        f"[bold]{sum(summary['mixed_counts'].values())}[/]",
        "100.0%",
        Path(summary["files"]["mixed"]).name,
    )
    console.print(table)
    console.print(f"files in {folder}/", soft_wrap=True)  # whole: a path folded over lines cannot be copied
    for line in summary["report_lines"]:
        console.print(f"[yellow]note:[/] {line}")


@app.command("prepare")
def prepare(
    overrides: Overrides = None, domains: Domains = None, out: Out = None, dry_run: DryRun = False
) -> None:
    """Write per-domain parquet files plus the mixed file and print counts per domain."""
    cfg = load_config(overrides)
    if dry_run:
        print_config(cfg)
        return
    quiet_libraries()
    # lazy: the data modules, only when the command runs; the CLI imports every command at start
    from m2rl.data.files import domain_names

    chosen = [d.strip() for d in domains.split(",") if d.strip()] if domains else domain_names(cfg.data)
    summary = prepare_rl_data(cfg.data, chosen, out or Path("prepared") / str(cfg.data.name))
    print_summary(summary)
