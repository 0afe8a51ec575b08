"""The items of one benchmark: the built-in held-out test sets, or the real benchmarks' loaders."""

from __future__ import annotations

from typing import Any

from m2rl.data.benchmarks import load_benchmark
from m2rl.data.builtin import generate
from m2rl.data.files import read_domain
from m2rl.errors import UserError
from m2rl.evaluate.settings import BenchmarkSpec


def load_items(bench: BenchmarkSpec) -> list[dict[str, Any]]:
    """The canonical samples of `bench`, with unique ids."""
    if bench.source == "builtin":
        spec = bench.spec
        try:
            items = generate(
                str(spec.get("generator", bench.domain)),
                str(spec.get("split", "test")),
                int(spec.get("count", 64)),
                seed=int(spec.get("seed", 0)),
                difficulty=int(spec.get("difficulty", 2)),
            )
        except (KeyError, ValueError) as exc:
            raise UserError(f"eval.benchmarks.{bench.name}: built-in test set failed: {exc}") from exc
    elif bench.source == "files":  # a file-backed domain's test file (m2rl.data.files)
        if not bench.spec.get("path"):
            raise UserError(f"eval.benchmarks.{bench.name}: a `files` benchmark needs a `path`")
        items = read_domain(
            str(bench.spec["path"]), bench.domain, "test", where=f"eval.benchmarks.{bench.name}"
        )
        if bench.spec.get("limit") is not None:
            items = items[: int(bench.spec["limit"])]
    else:
        items = load_benchmark(dict(bench.spec))
    if not items:
        raise UserError(f"eval.benchmarks.{bench.name}: the benchmark has no items")
    seen: set[str] = set()
    for item in items:
        if item["id"] in seen:
            raise UserError(f"eval.benchmarks.{bench.name}: duplicate item id {item['id']!r}")
        seen.add(item["id"])
    return items
