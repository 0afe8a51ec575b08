"""The optional engines a job's settings call for (vLLM, DeepSpeed), checked before any run directory
exists: a missing one is a one-line error naming the setting and the package, not a traceback minutes
into a run."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from m2rl.errors import UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

# package -> (its name, how to install it)
INSTALL = {
    "vllm": (
        "vLLM",
        "pip install 'm2rl[gpu]' on a GPU machine, or `make install-engines` for vLLM's CPU build",
    ),
    "deepspeed": ("DeepSpeed", "pip install 'm2rl[deepspeed]'"),
}


def require(package: str, setting: str) -> None:
    """UserError unless `package` is importable: `rl.rollout=vllm needs vLLM, which is not installed: ...`."""
    if importlib.util.find_spec(package) is None:
        name, how = INSTALL[package]
        raise UserError(f"{setting} needs {name}, which is not installed here: {how}")


def check_rollout(section: str, rollout: str, vllm_mode: str) -> None:
    """`rl.rollout` / `distill.rollout`: vLLM installed, and server mode only where TRL can sync to it."""
    if rollout != "vllm":
        return
    require("vllm", f"{section}.rollout=vllm")
    if vllm_mode == "server":
        # lazy: torch, only to check a server-mode vLLM rollout; the CLI imports this module
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                f"{section}.vllm.mode=server needs a CUDA device: TRL sends the trained weights to a vLLM "
                f"server over NCCL; on CPU use {section}.vllm.mode=colocate"
            )


def check_engines(zero_stage: int | None, rollouts: dict[str, tuple[str, str]], eval_backend: str) -> None:
    """The engines these settings call for are installed (and usable on this machine): a DeepSpeed ZeRO
    stage (None: no DeepSpeed), each section's (rollout, vllm.mode), the eval backend."""
    if zero_stage is not None:
        require("deepspeed", f"launcher.deepspeed (ZeRO-{zero_stage})")
    for section, (rollout, vllm_mode) in rollouts.items():
        check_rollout(section, rollout, vllm_mode)
    if eval_backend == "vllm":
        require("vllm", "eval.backend=vllm")


def check_job_engines(spec: Any) -> None:
    """`check_engines` for a training or eval job's spec."""
    launcher = getattr(spec, "launcher", None)
    deepspeed = getattr(launcher, "deepspeed", None)
    rollouts = {}
    for section in ("rl", "distill"):
        recipe = getattr(spec, section, None)
        if hasattr(recipe, "rollout"):
            rollouts[section] = (recipe.rollout, recipe.vllm.mode)
    evaluation = getattr(spec, "eval", None)
    backend = evaluation.get("backend", "hf") if isinstance(evaluation, dict) else "hf"
    check_engines(deepspeed.zero_stage if deepspeed is not None else None, rollouts, backend)


def check_config_engines(cfg: DictConfig, distill: bool) -> None:
    """`check_engines` for a whole study's config (`m2rl pipeline`), before its first stage."""
    rollouts = {
        section: (
            OmegaConf.select(cfg, f"{section}.rollout", default="hf"),
            OmegaConf.select(cfg, f"{section}.vllm.mode", default="colocate"),
        )
        for section in (("rl", "distill") if distill else ("rl",))
    }
    check_engines(
        OmegaConf.select(cfg, "launcher.deepspeed.zero_stage"),
        rollouts,
        OmegaConf.select(cfg, "eval.backend", default="hf"),
    )
