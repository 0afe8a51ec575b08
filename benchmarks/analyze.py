"""Wall time and peak RSS of the analyze geometry (streamed task vectors) over K synthetic experts.

The experts are the merge benchmark's synthetic Qwen3 models (benchmarks/merge.py builds them: a base
and K experts with RL-sized deltas, bf16 by default). Each measurement runs in its own subprocess and
reports its peak RSS as VmHWM from /proc/self/status, as the merge benchmark does. The target: peak RSS
under 3x one expert's size, whatever K. Usage:

    .venv/bin/python benchmarks/analyze.py                        # ~100M parameters, K = 2 and 4
    .venv/bin/python benchmarks/analyze.py --sizes 100m,400m --experts 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from merge import build_models, peak_rss_mb, run_child  # noqa: E402  (the merge benchmark's models, RSS probe, child runner)


def child(args: argparse.Namespace) -> None:
    """Compute the geometry of the given experts in this process; print wall seconds and peak RSS."""
    from m2rl.analysis.geometry import task_vector_geometry

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.expert_dirs:  # the baseline: the interpreter and the imports
        print(json.dumps({"wall": 0.0, "rss_mb": peak_rss_mb()}))
        return
    experts = [(f"expert{i}", Path(p)) for i, p in enumerate(args.expert_dirs.split(","))]
    start = time.perf_counter()
    geometry = task_vector_geometry(Path(args.base), experts, 1e-3, 256, 4096, 0, args.chunk_elements)
    wall = time.perf_counter() - start
    pairs = [geometry.jaccard[i, j] for i in range(len(experts)) for j in range(i + 1, len(experts))]
    print(
        json.dumps({"wall": wall, "rss_mb": peak_rss_mb(), "jaccard": float(sum(pairs) / max(len(pairs), 1))})
    )


def measure(base: Path, experts: list[Path], chunk: int, threads: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--base",
        str(base),
        "--expert-dirs",
        ",".join(str(p) for p in experts),
        "--chunk-elements",
        str(chunk),
        "--threads",
        str(threads),
    ]
    return run_child(command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100m")
    parser.add_argument("--experts", default="2,4", help="expert counts K")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument(
        "--chunk-elements", type=int, default=1 << 18, help="analyze.chunk_elements (the tiny preset's)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the measured process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--expert-dirs", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = [int(k) for k in args.experts.split(",")]
    table = Table(
        title=f"analyze geometry: wall time and peak RSS ({os.cpu_count()} CPU cores, {args.dtype} experts, "
        f"chunks of {args.chunk_elements:,} elements, {args.threads} thread(s))"
    )
    for column in ("size", "params", "expert MB", "K", "wall s", "peak RSS MB", "RSS / expert", "Jaccard"):
        table.add_column(column, justify="left" if column == "size" else "right")
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory(prefix="m2rl-bench-analyze-") as tmp:
            console.print(f"building {size} base + {max(counts)} experts ...")
            base, experts, numel = build_models(
                Path(tmp) / "models", size, max(counts), getattr(torch, args.dtype)
            )
            expert_mb = (base / "model.safetensors").stat().st_size / 2**20
            params = f"{numel / 1e6:.0f}M"
            baseline = measure(base, [], args.chunk_elements, args.threads)
            table.add_row(f"{size} (imports only)", params, f"{expert_mb:.0f}", "-", "-",
                          f"{baseline['rss_mb']:.0f}", f"{baseline['rss_mb'] / expert_mb:.2f}", "-")  # fmt: skip
            for k in counts:
                console.print(f"  {size} K={k} ...")
                result = measure(base, experts[:k], args.chunk_elements, args.threads)
                if "error" in result:
                    table.add_row(
                        size, params, f"{expert_mb:.0f}", str(k), "error", result["error"][:60], "", ""
                    )
                    continue
                table.add_row(size, params, f"{expert_mb:.0f}", str(k), f"{result['wall']:.1f}",
                              f"{result['rss_mb']:.0f}", f"{result['rss_mb'] / expert_mb:.2f}",
                              f"{result['jaccard']:.3f}")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
