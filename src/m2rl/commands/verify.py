"""Score (sample, response) records from a JSONL file with the verifier suite.

Each input line is `{"sample": {...canonical sample...}, "response": "..."}`; each output line is
the same record plus "reward" (0 or 1) and "reason". Streams in batches (constant memory), writes
the output atomically, and exits 2 naming the line of the first malformed record.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

from m2rl.commands.common import DryRun, Overrides, load_config, print_config
from m2rl.console import console, err_console
from m2rl.errors import UserError


def _records(path: Path, progress: Progress, task: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, validated record) for every non-blank line; UserError on a malformed one."""
    # lazy: the data modules, only when the command runs; the CLI imports every command at start
    from m2rl.data.schema import validate_sample

    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            progress.update(task, advance=len(raw))
            if not raw.strip():
                continue
            where = f"{path} line {number}"
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not valid JSON ({exc.msg} at character {exc.pos + 1})") from None
            except UnicodeDecodeError:
                raise UserError(f"{where}: not valid UTF-8") from None
            if not isinstance(record, dict) or not isinstance(record.get("sample"), dict):
                raise UserError(f'{where}: expected an object {{"sample": {{...}}, "response": "..."}}')
            if not isinstance(record.get("response"), str):
                raise UserError(f"{where}: 'response' must be a string")
            record["sample"] = validate_sample(record["sample"], where)
            yield number, record


def _batches(records: Iterator[tuple[int, dict[str, Any]]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for _, record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT.jsonl", help='Records {"sample": {...}, "response": "..."}, one per line.'
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", metavar="OUTPUT.jsonl", help="Where to write the scored records."),
    ],
    overrides: Overrides = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Records scored per batch.")] = 64,
    dry_run: DryRun = False,
) -> None:
    """Score JSONL records with the verifiers; print count, mean reward and items/s per rm_type."""
    # lazy: the verifier suite (~0.1 s), only when the command runs; the CLI imports every command at start
    from m2rl.verifiers import VerifierConfig, score_batch_timed
    from m2rl.verifiers.config import verifier_settings

    cfg = load_config(overrides)
    config = VerifierConfig.of(verifier_settings(cfg))
    if dry_run:
        print_config(cfg.verifiers, "verifiers config")
        return
    if not input_path.is_file():
        raise UserError(f"input file {input_path} does not exist")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    count: dict[str, int] = defaultdict(int)
    reward_sum: dict[str, float] = defaultdict(float)
    item_seconds: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    progress = Progress(
        TextColumn("scoring"), BarColumn(), TextColumn("{task.fields[items]} items"), TransferSpeedColumn(),
        TimeElapsedColumn(), console=err_console, transient=True,
    )  # fmt: skip
    try:
        with progress, partial.open("w", encoding="utf-8") as out:
            task = progress.add_task("score", total=input_path.stat().st_size, items=0)
            done = 0
            for batch in _batches(_records(input_path, progress, task), batch_size):
                samples = [r["sample"] for r in batch]
                verdicts, seconds = score_batch_timed(samples, [r["response"] for r in batch], config)
                for record, result, elapsed in zip(batch, verdicts, seconds, strict=True):
                    rm_type = record["sample"]["rm_type"]
                    count[rm_type] += 1
                    reward_sum[rm_type] += result.reward
                    item_seconds[rm_type] += elapsed
                    out.write(json.dumps({**record, "reward": result.reward, "reason": result.reason}) + "\n")
                done += len(batch)
                progress.update(task, items=done)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    wall = time.perf_counter() - start
    _print_summary(count, reward_sum, item_seconds, wall, max(1, config.worker_count), output)


def _print_summary(
    count: dict[str, int],
    reward_sum: dict[str, float],
    item_seconds: dict[str, float],
    wall: float,
    workers: int,
    output: Path,
) -> None:
    table = Table(
        title=f"verified -> {output}",
        caption=f"items/s per type: throughput of {workers} worker(s) on that type",
    )
    for column in ("rm_type", "count", "mean reward", "items/s"):
        table.add_column(column, justify="left" if column == "rm_type" else "right")
    for rm_type in sorted(count):
        rate = workers * count[rm_type] / item_seconds[rm_type] if item_seconds[rm_type] > 0 else float("inf")
        table.add_row(
            rm_type, str(count[rm_type]), f"{reward_sum[rm_type] / count[rm_type]:.3f}", f"{rate:,.1f}"
        )
    total = sum(count.values())
    mean = sum(reward_sum.values()) / total if total else 0.0
    table.add_row("[bold]all[/]", str(total), f"{mean:.3f}", f"{total / wall:,.1f}" if wall > 0 else "-")
    console.print(table)
