"""Where a run's numbers came from: m2rl's git commit, the command line, package versions, host, threads.

`provenance()` is what every manifest records under `provenance`. It is computed once per process
(one `git status` and, on a machine with NVIDIA GPUs, one `nvidia-smi`, each with a short deadline)
and copied out, so callers may change their copy; torch's thread count is read at each call, since a
command may set it after start-up.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import platform
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import m2rl

PACKAGES = ("m2rl", "torch", "transformers", "trl", "mergekit", "vllm")
SUBPROCESS_TIMEOUT_S = 5.0


def cpu_model() -> str:
    """The host's CPU model name (from /proc/cpuinfo on Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _output(command: list[str]) -> str | None:
    """A command's stdout, or None when it is missing, fails or runs past the deadline."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(source: Path) -> dict[str, Any]:
    """{commit, dirty} of the git checkout holding `source`; both None outside a checkout."""
    root = next((p for p in [source, *source.parents] if (p / ".git").exists()), None)
    status = root and _output(["git", "-C", str(root), "status", "--porcelain=v2", "--branch", "-uno"])
    if status is None:
        return {"commit": None, "dirty": None}
    lines = status.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    # changed tracked files (staged or not) make a checkout dirty; untracked ones do not, as in `git describe`
    changed = any(not line.startswith("#") for line in lines)
    return {"commit": None if commit == "(initial)" else commit, "dirty": changed}


def command_line(argv: list[str]) -> str:
    """The command as a user would type it again (`m2rl ...` for the console script or `python -m m2rl.cli`)."""
    program = Path(argv[0]).name if argv else ""
    if program == "m2rl" or argv[0].endswith(os.path.join("m2rl", "cli.py")):
        return shlex.join(["m2rl", *argv[1:]])
    return shlex.join(argv)


def versions() -> dict[str, str | None]:
    """Installed versions of m2rl, its ML stack and Python; None for a package that is not installed."""
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    found["python"] = platform.python_version()
    return found


def gpu_models() -> list[str]:
    """Names of the host's NVIDIA GPUs (nvidia-smi, without initialising CUDA here); [] when none."""
    if shutil.which("nvidia-smi") is None:
        return []
    names = _output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) or ""
    return [name.strip() for name in names.splitlines() if name.strip()]


def torch_threads() -> int | None:
    """torch's intra-op thread count in this process (None without torch)."""
    try:
        # lazy: torch (optional), only where its thread count is recorded; the CLI imports this module
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


@functools.cache
def _collect() -> dict[str, Any]:
    return {
        "git": git_state(Path(m2rl.__file__).resolve().parent),
        "command": command_line(sys.argv),
        "cwd": os.getcwd(),
        "versions": versions(),
        "host": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "gpus": gpu_models(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "os": platform.platform(),
        },
    }


def provenance() -> dict[str, Any]:
    """This process's provenance record: the fixed facts from the cache, torch's thread count as of now."""
    return {**copy.deepcopy(_collect()), "torch_threads": torch_threads()}
