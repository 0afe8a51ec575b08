"""Wall time and peak RSS of each merge method on synthetic Qwen3 experts (~100M, ~400M parameters).

Each merge runs in its own subprocess and reports its peak RSS as VmHWM from /proc/self/status
(the high-water mark of its own address space, mapped file pages included; ru_maxrss would carry
the parent's peak across fork+exec). Usage:

    .venv/bin/python benchmarks/merge.py                       # ~100M, K=2 and K=4 experts
    .venv/bin/python benchmarks/merge.py --sizes 100m,400m     # add the ~400M case (slow on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SIZES = {  # Qwen3 shapes giving ~100M and ~400M parameters (tied embeddings)
    "100m": dict(
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        head_dim=64,
        vocab_size=32000,
    ),
    "400m": dict(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=96000,
    ),
}
DEFAULT_METHODS = "paper_ties,ties,paper_dare_ties,paper_sce,paper_ta,linear"


def build_models(root: Path, size: str, experts: int, dtype: torch.dtype) -> tuple[Path, list[Path], int]:
    """Write a base and `experts` expert model directories (random weights, RL-sized deltas)."""
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**SIZES[size], tie_word_embeddings=True, max_position_embeddings=4096)
    config.dtype = dtype
    config.architectures = ["Qwen3ForCausalLM"]
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in Qwen3ForCausalLM(config).state_dict().items()}
    shapes.pop("lm_head.weight", None)
    numel = sum(torch.Size(s).numel() for s in shapes.values())
    generator = torch.Generator().manual_seed(0)
    base = {n: (torch.randn(s, generator=generator) * 0.02).to(dtype) for n, s in shapes.items()}
    dirs = []
    for index in range(experts + 1):
        directory = root / ("base" if index == 0 else f"expert{index}")
        directory.mkdir(parents=True)
        config.save_pretrained(directory)
        tensors = (
            base
            if index == 0
            else {
                n: (t.float() + torch.randn(t.shape, generator=generator) * 2e-3).to(dtype)
                for n, t in base.items()
            }
        )
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        dirs.append(directory)
        del tensors
    return dirs[0], dirs[1:], numel


def register_runs(runs_dir: Path, base_dir: Path, expert_dirs: list[Path]) -> list[str]:
    """Ledger runs pointing at the model directories (moved in place): SFT first, then experts."""
    from m2rl.ledger import Ledger, attempt

    ledger = Ledger(runs_dir)
    sft = ledger.create(kind="sft", name="sft", config={})
    with attempt(sft):
        base_dir.rename(sft.path / "model")
    ids = [sft.id]
    for index, directory in enumerate(expert_dirs):
        run = ledger.create(kind="rl", name=f"expert{index}", config={}, parents=[sft.id])
        with attempt(run):
            directory.rename(run.path / "model")
            run.update(domains=[f"d{index}"])
        ids.append(run.id)
    return ids


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """Run one merge in this process and print wall seconds, peak RSS and the engine's stats."""
    from m2rl.jobs.merge import merge_experts
    from m2rl.ledger import Ledger

    ledger = Ledger(args.runs_dir)
    experts = [ledger.get(i) for i in args.experts.split(",")]
    if args.method == "baseline":
        print(json.dumps({"wall": 0.0, "rss_mb": peak_rss_mb()}))
        return
    start = time.perf_counter()
    run = merge_experts(
        ledger, experts, args.method, name=f"bench-{args.method}-{len(experts)}-{time.time_ns()}"
    )
    wall = time.perf_counter() - start
    rss = peak_rss_mb()
    stats = run.manifest["merge"].get("stats", {})
    print(json.dumps({"wall": wall, "rss_mb": rss, "passes": stats.get("passes"), "run": run.id}))


def run_child(command: list[str]) -> dict:
    """Run one measurement in its own process; its last stdout line is a JSON dict (or the error)."""
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(runs_dir: Path, method: str, experts: list[str]) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--runs-dir",
        str(runs_dir),
        "--method",
        method,
        "--experts",
        ",".join(experts),
    ]
    return run_child(command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100m")
    parser.add_argument("--experts", default="2,4", help="expert counts K to merge")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runs-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    dtype = getattr(torch, args.dtype)
    counts = [int(k) for k in args.experts.split(",")]
    table = Table(
        title=f"merge: wall time and peak RSS per method ({os.cpu_count()} CPU cores, {args.dtype} experts)"
    )
    for column in (
        "size",
        "params",
        "expert MB",
        "K",
        "method",
        "wall s",
        "peak RSS MB",
        "RSS / expert",
        "passes",
    ):
        table.add_column(column, justify="left" if column in ("size", "method") else "right")
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory(prefix="m2rl-bench-merge-") as tmp:
            root = Path(tmp)
            console.print(f"building {size} base + {max(counts)} experts ...")
            base_dir, expert_dirs, numel = build_models(root / "models", size, max(counts), dtype)
            expert_mb = (base_dir / "model.safetensors").stat().st_size / 2**20
            ids = register_runs(root / "runs", base_dir, expert_dirs)
            baseline = measure(root / "runs", "baseline", ids[1:2])
            table.add_row(
                size,
                f"{numel / 1e6:.0f}M",
                f"{expert_mb:.0f}",
                "-",
                "(python + imports)",
                "-",
                f"{baseline.get('rss_mb', 0):.0f}",
                f"{baseline.get('rss_mb', 0) / expert_mb:.2f}",
                "-",
            )
            for k in counts:
                for method in args.methods.split(","):
                    console.print(f"  {size} K={k} {method} ...")
                    result = measure(root / "runs", method, ids[1 : 1 + k])
                    if "error" in result:
                        table.add_row(
                            size,
                            f"{numel / 1e6:.0f}M",
                            f"{expert_mb:.0f}",
                            str(k),
                            method,
                            "error",
                            result["error"][:60],
                            "",
                            "",
                        )
                        continue
                    table.add_row(
                        size,
                        f"{numel / 1e6:.0f}M",
                        f"{expert_mb:.0f}",
                        str(k),
                        method,
                        f"{result['wall']:.1f}",
                        f"{result['rss_mb']:.0f}",
                        f"{result['rss_mb'] / expert_mb:.2f}",
                        str(result.get("passes") or "-"),
                    )
    console.print(table)


if __name__ == "__main__":
    main()
