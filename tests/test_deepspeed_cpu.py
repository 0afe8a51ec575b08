"""DeepSpeed ZeRO-2 and ZeRO-3 on CPU: `m2rl sft`, `m2rl rl` and `m2rl distill` with 2 processes through
the real command line and `accelerate launch` (launcher=accelerate_zero2|accelerate_zero3), and the
refusal of those launchers where DeepSpeed is not installed.

The engines tests (marked `engines`, run in .venv-engines by `make test-engines`) train the built-in
model for a few steps with each stage from the same seed, and check that the two stages log the same
numbers, that DeepSpeed really ran (its checkpoint layout: one ZeRO shard per rank), that the ledger
counts both processes, that a ZeRO-3 run killed with SIGKILL resumes from its last complete checkpoint,
and that the saved models load in transformers (and the resumed ZeRO-3 model in vLLM).

DeepSpeed on CPU (DS_ACCELERATOR=cpu, set by the launcher where no GPU is visible) talks over gloo and
compiles a shared-memory op on its first use on a machine, about 80 s on 2 cores (g++ and ninja, cached
under ~/.cache/torch_extensions, or $TORCH_EXTENSIONS_DIR); later runs load it in a fraction of a second.
The first run of this file on a fresh machine is that much longer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from m2rl.ledger import Ledger, Run

from cli_helpers import coin_domain, m2rl

# 2 ranks of 1 torch thread each: the 2 cores, without threads of one rank spinning on the other's core
LAUNCH = ["launcher.num_processes=2", "torch_threads=1"]
ZERO = {2: "launcher=accelerate_zero2", 3: "launcher=accelerate_zero3"}

# SFT of 3 optimizer steps of 16 rows (8 per rank), a checkpoint after each (save_total_limit keeps one)
SFT = [
    "data.sizes.sft=48",
    "sft.max_steps=3",
    "sft.per_device_batch_size=8",
    "sft.global_batch_size=16",
    "sft.logging_steps=1",
    "sft.save_steps=1",
]
# GRPO of 2 steps: 4 prompts x 4 samples (8 rows per rank), 16 new tokens, a checkpoint at step 2
RL = [
    "rl.prompts_per_step=4",
    "rl.num_generations=4",
    "rl.per_device_batch_size=8",
    "rl.max_completion_length=16",
    "rl.steps=2",
    "rl.save_steps=2",
]
# MT-OPD of 3 steps from two teachers (math, code): 2 prompts x 4 samples, 4 rows per rank, so a rank's
# rows often hold one domain only while the other rank's hold both (the case ZeRO-3 must score alike)
DISTILL = [
    "distill.prompts_per_step=2",
    "distill.num_generations=4",
    "distill.per_device_batch_size=4",
    "distill.max_completion_length=16",
    "data.sizes.rl=16",
    "distill.steps=3",
    "distill.save_steps=3",
]

# The tolerance of "the same numbers". Both stages do the same float32 arithmetic on the same rows from
# the same seed; they differ in how gradients are reduced (ZeRO-2 reduce-scatters buckets, ZeRO-3 each
# parameter's partition) and in the precision DeepSpeed computes the gradient norm in, so sums can round
# differently in the last bits (float32's epsilon is 1.2e-7). Measured: SFT and distill losses equal to
# the last digit, gradient norms within 1e-9 relative. 1e-5 allows a hundred roundings and still fails
# on any real difference (a skipped step, another seed, an unreduced gradient moves them by 1e-2 or more).
REL = 1e-5

# transformers pauses a rank after it wrote its first checkpoint to the end (see tests/test_faults.py)
AFTER_FIRST_CHECKPOINT = "transformers.trainer:Trainer._save_checkpoint:after:1"

HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


def launch_log(root: Path) -> str:
    """The end of every launch log under `root` (the ranks' tracebacks), for a failed test's message."""
    return "".join(log.read_text()[-3000:] for log in root.glob("*/launch.log"))


def train(root: Path, command: str, name: str, *args: str) -> Run:
    """`m2rl COMMAND --name NAME ARGS --runs-dir ROOT`, which must succeed: the run it made."""
    result = m2rl(command, "--name", name, *args, runs_dir=root)
    assert result.returncode == 0, result.stderr + launch_log(root)
    return Ledger(root).get(name)


def logged(run: Run, *keys: str) -> list[tuple[float, ...]]:
    """The values of `keys` in each step's metrics record (records with the first key)."""
    return [tuple(r[k] for k in keys) for r in run.read_metrics() if keys[0] in r]


def checkpoint_shards(run: Run) -> dict[str, list[str]]:
    """global_stepN/ folder -> its files, of every checkpoint of the run (DeepSpeed's layout)."""
    return {
        f"{c.name}/{g.name}": sorted(p.name for p in g.iterdir())
        for c in run.complete_checkpoints()
        for g in c.glob("global_step*")
    }


def load(model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir)


def assert_same_model(model_dir: Path, reference_dir: Path) -> None:
    """The model of a ZeRO-3 run loads in transformers whole (a ZeRO-3 save that missed the gather writes
    empty tensors), in float32, with the ZeRO-2 run's weights."""
    import torch

    model, reference = load(model_dir), load(reference_dir)
    weights, expected = model.state_dict(), reference.state_dict()
    assert weights.keys() == expected.keys()
    for name, tensor in weights.items():
        assert tensor.dtype == torch.float32 and tensor.shape == expected[name].shape, name
        assert torch.allclose(tensor, expected[name], rtol=0, atol=1e-5), name


def assert_launched_with_deepspeed(run: Run, stage: int) -> None:
    """The run went through DeepSpeed with 2 ranks: its accelerate config, the ledger, and the checkpoint
    layout only a DeepSpeed engine writes, one ZeRO shard per rank."""
    import yaml

    config = yaml.safe_load((run.path / "accelerate.yaml").read_text())
    assert config["distributed_type"] == "DEEPSPEED" and config["deepspeed_config"]["zero_stage"] == stage
    assert config["mixed_precision"] == "no"  # float32 on CPU, whatever the launcher's GPU setting
    assert run.manifest["world_size"] == 2 and run.manifest["metrics"]["processes"] == 2
    assert run.manifest["device"] == {**run.manifest["device"], "type": "cpu", "count": 2}
    shards = checkpoint_shards(run)
    assert shards, f"no DeepSpeed checkpoint in {run.path / 'checkpoints'}"
    kind = "optim_states" if stage == 2 else "model_states"  # ZeRO-3 shards the parameters too
    for files in shards.values():
        assert [f for f in files if f.startswith("zero_pp_rank_") and f.endswith(kind + ".pt")] == [
            f"zero_pp_rank_0_mp_rank_00_{kind}.pt",
            f"zero_pp_rank_1_mp_rank_00_{kind}.pt",
        ]


def assert_costs_count_both_processes(run: Run) -> None:
    """Device-hours are the wall time of each attempt times the 2 processes (wall_seconds is rounded to
    ms); the CPU time of a completed attempt is that of the command and everything it started, ranks included.
    (An attempt killed by SIGKILL keeps the costs written when it started: nothing is left to write them.)"""
    attempts = run.manifest["attempts"]
    for each in attempts:
        assert each["device_hours"] == pytest.approx(each["wall_seconds"] * 2 / 3600, rel=1e-3, abs=3e-7)
    assert attempts[-1]["status"] == "completed" and attempts[-1]["cpu_seconds"] > 0
    assert run.device_hours == pytest.approx(sum(a["device_hours"] for a in attempts))


def wait_gone(pids: list[int], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.time() < deadline, f"ranks {pids} outlived the kill of their launch"
        time.sleep(0.2)


# -- the runs, each made once for the module ----------------------------------------------------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The runs root of the module. A rank that aborts (once here: SIGABRT, "terminate called without an
    active exception" after its last step) prints every thread's Python stack into launch.log, which a
    failing test shows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONFAULTHANDLER", "1")
        yield tmp_path_factory.mktemp("deepspeed") / "runs"


@pytest.fixture(scope="module")
def sft(root, tmp_path_factory) -> dict:
    """SFT with ZeRO-2 straight through, and with ZeRO-3 killed (SIGKILL of the command's process group)
    once both ranks saved checkpoint-1, then `m2rl sft --resume`: steps 2 and 3 in a second attempt."""
    from test_faults import Command

    zero2 = train(root, "sft", "sft-z2", ZERO[2], *LAUNCH, *SFT)
    tmp = tmp_path_factory.mktemp("kill")
    argv = [sys.executable, "-m", "m2rl.cli", "sft", "--name", "sft-z3", ZERO[3], *LAUNCH, *SFT]
    killed = Command(tmp, [*argv, "--runs-dir", str(root)], pause=AFTER_FIRST_CHECKPOINT, name="sft-z3")
    deadline = time.time() + 300
    while len(killed.mark.read_text().split() if killed.mark.exists() else []) < 2:  # both ranks saved
        assert killed.proc.poll() is None and time.time() < deadline, killed.stderr[-3000:] + launch_log(root)
        time.sleep(0.1)
    killed.kill_when_paused()
    wait_gone([int(pid) for pid in killed.mark.read_text().split()])  # the ranks held at the pause
    run = Ledger(root).get("sft-z3")
    before = {"status": run.status, "checkpoints": [c.name for c in run.complete_checkpoints()]}
    resumed = m2rl("sft", "--resume", run.id, runs_dir=root)
    assert resumed.returncode == 0, resumed.stderr + launch_log(root)
    return {"zero2": zero2, "zero3": Ledger(root).get(run.id), "before": before, "resume": resumed}


@pytest.fixture(scope="module")
def coin(tmp_path_factory) -> list[str]:
    """A `coin` domain of 16 prompts whose reward is a fixed coin flip of the completion's text (0 or 1):
    groups whose samples differ get advantages, so GRPO's gradient is not zero."""
    fair_coin = "import zlib\n\n\ndef score(sample, text):\n    return float(zlib.crc32(text.encode()) % 2)\n"
    return coin_domain(tmp_path_factory.mktemp("coin"), fair_coin)


@pytest.fixture(scope="module")
def rl(root, sft, coin) -> dict[int, Run]:
    """GRPO from the ZeRO-2 SFT model with each stage."""
    start = ["--domains", "coin", "--from", "sft-z2"]
    return {
        stage: train(root, "rl", f"rl-z{stage}", *start, ZERO[stage], *LAUNCH, *RL, *coin) for stage in (2, 3)
    }


@pytest.fixture(scope="module")
def distill(root, sft) -> dict[int, Run]:
    """MT-OPD into the ZeRO-2 SFT model from a math and a code teacher (the SFT model with its output
    layer shifted by seeded noise: teachers that disagree with the student), with each stage."""
    from test_distill import _expert

    ledger = Ledger(root)
    start = ledger.get("sft-z2")
    for domain, seed in (("math", 1), ("code", 2)):
        _expert(ledger, f"teacher-{domain}", domain, start, start.model_dir, seed=seed)
    teachers = ["--teachers", "teacher-math,teacher-code", "--from", "sft-z2", "--domains", "math,code"]
    return {
        stage: train(root, "distill", f"distill-z{stage}", *teachers, ZERO[stage], *LAUNCH, *DISTILL)
        for stage in (2, 3)
    }


# -- SFT --------------------------------------------------------------------------------------------------
@pytest.mark.engines
def test_sft_with_zero2_and_zero3_logs_the_same_losses(sft):
    zero2, zero3 = logged(sft["zero2"], "loss", "grad_norm"), logged(sft["zero3"], "loss", "grad_norm")
    assert [len(zero2), len(zero3)] == [3, 3]  # the resumed run logged each step once
    assert zero3 == [pytest.approx(step, rel=REL) for step in zero2]
    assert zero2[0] != pytest.approx(zero2[-1], rel=1e-3)  # it trained: the loss moved


@pytest.mark.engines
def test_sft_runs_went_through_deepspeed_on_two_ranks(sft):
    for stage in (2, 3):
        run = sft[f"zero{stage}"]
        assert run.status == "completed"
        assert_launched_with_deepspeed(run, stage)
        assert_costs_count_both_processes(run)


@pytest.mark.engines
def test_zero3_sft_killed_after_a_checkpoint_resumes_from_it_and_finishes(sft):
    assert sft["before"] == {"status": "failed", "checkpoints": ["checkpoint-1"]}
    run = sft["zero3"]
    assert "resuming sft run" in sft["resume"].stdout and "checkpoint-1" in sft["resume"].stdout
    assert run.status == "completed" and len(run.manifest["attempts"]) == 2
    assert Path(run.manifest["resumed_from"]).name == "checkpoint-1"
    assert [step for _, step in logged(run, "loss", "step")] == [1, 2, 3]  # each step once
    state = json.loads((run.path / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert (run.path / "checkpoints" / "checkpoint-3" / "latest").read_text().strip() == "global_step3"


@pytest.mark.engines
def test_zero3_sft_model_loads_in_transformers_and_vllm(sft):
    """The ZeRO-3 model (its 16-bit save: float32 here, gathered from both ranks) loads whole in
    transformers with the ZeRO-2 weights, and in vLLM's CPU build, whose greedy tokens match transformers'."""
    import torch

    model_dir = sft["zero3"].model_dir
    assert_same_model(model_dir, sft["zero2"].model_dir)
    from transformers import AutoTokenizer

    prompt = "Flip 3"
    ids = AutoTokenizer.from_pretrained(model_dir)(prompt, return_tensors="pt")
    with torch.no_grad():
        out = load(model_dir).generate(**ids, max_new_tokens=8, do_sample=False)
    expected = out[0, ids["input_ids"].shape[1] :].tolist()
    # enforce_eager: no torch.compile of the model, 16 s here instead of 48 s; VLLM_ENABLE_V1_MULTIPROCESSING=0
    # keeps vLLM's engine in this process (no spawned engine core)
    script = (
        "import json, sys\n"
        "from vllm import LLM, SamplingParams\n"
        "llm = LLM(model=sys.argv[1], dtype='float32', max_model_len=256, seed=0, enforce_eager=True)\n"
        "out = llm.generate([sys.argv[2]], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))\n"
        "print(json.dumps(list(out[0].outputs[0].token_ids)))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    result = subprocess.run(
        [sys.executable, "-c", script, str(model_dir), prompt],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


# -- GRPO -------------------------------------------------------------------------------------------------
@pytest.mark.engines
def test_rl_with_zero2_and_zero3_logs_the_same_rewards_and_gradients(rl):
    keys = ("coin/reward", "grad_norm", "loss")
    zero2, zero3 = logged(rl[2], *keys), logged(rl[3], *keys)
    assert len(zero2) == 2 and all(0 < reward < 1 for reward, *_ in zero2)  # informative groups
    assert all(grad_norm > 0 for _, grad_norm, _ in zero2)
    # step 2's samples come from the weights step 1 trained: equal rewards there mean equal updates
    assert zero3 == [pytest.approx(step, rel=REL, abs=1e-7) for step in zero2]
    for stage, run in rl.items():
        assert_launched_with_deepspeed(run, stage)
        assert_costs_count_both_processes(run)
    assert_same_model(rl[3].model_dir, rl[2].model_dir)


# -- MT-OPD -----------------------------------------------------------------------------------------------
@pytest.mark.engines
def test_distill_with_zero2_and_zero3_logs_the_same_reverse_kl(distill):
    keys = ("math/reverse_kl", "code/reverse_kl", "loss", "grad_norm")
    zero2, zero3 = logged(distill[2], *keys), logged(distill[3], *keys)
    assert len(zero2) == 3 and all(value > 0 for step in zero2 for value in step)
    assert zero3 == [pytest.approx(step, rel=REL) for step in zero2]
    for stage, run in distill.items():
        assert_launched_with_deepspeed(run, stage)
        assert_costs_count_both_processes(run)
    assert_same_model(distill[3].model_dir, distill[2].model_dir)


# -- bad input (the main lane, where DeepSpeed is not installed) ------------------------------------------
@pytest.mark.skipif(HAS_DEEPSPEED, reason="DeepSpeed is installed here (the engines lane)")
@pytest.mark.parametrize(
    "command",
    [
        ["sft", "launcher=accelerate_zero3", "sft.per_device_batch_size=16"],
        ["rl", "--domains", "math", "--from", "sft", "launcher=accelerate_zero2"],
    ],
    ids=["sft-zero3", "rl-zero2"],
)
def test_a_zero_launcher_without_deepspeed_is_refused_before_any_run(tmp_path, command):
    root = tmp_path / "runs"
    result = m2rl(*command, "launcher.num_processes=2", runs_dir=root)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "launcher.deepspeed" in lines[0] and "deepspeed" in lines[0].lower()
    assert "pip install" in lines[0]
    assert not root.exists() or not any(root.iterdir())


# -- what the launcher and the SFT recipe do for DeepSpeed on CPU (no DeepSpeed needed) -------------------
def test_the_launch_tells_deepspeed_to_use_the_cpu_where_no_gpu_is_visible(monkeypatch):
    import torch

    from m2rl.config import compose_config
    from m2rl.engine.launch import launch_env
    from m2rl.jobs.build import section
    from m2rl.specs import LauncherSpec, validated

    def launcher(name: str) -> LauncherSpec:
        return validated(LauncherSpec, section(compose_config([name]), "launcher"), prefix="launcher.")

    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert launch_env(launcher(ZERO[3]))["DS_ACCELERATOR"] == "cpu"
    assert launch_env(launcher(ZERO[3]))["PYTHONUNBUFFERED"] == "1"
    assert "DS_ACCELERATOR" not in launch_env(launcher("launcher=accelerate_ddp"))
    monkeypatch.setenv("DS_ACCELERATOR", "xpu")  # a user's own setting is kept
    assert launch_env(launcher(ZERO[2]))["DS_ACCELERATOR"] == "xpu"
    monkeypatch.delenv("DS_ACCELERATOR")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # on GPUs DeepSpeed detects CUDA itself
    assert "DS_ACCELERATOR" not in launch_env(launcher(ZERO[3]))


def test_the_sft_schedule_floor_is_a_ratio_and_still_ends_at_the_min_learning_rate(tmp_path):
    """transformers turns `min_lr` into a ratio by reading optimizer.defaults["lr"], which DeepSpeed's ZeRO
    optimizer lacks (AttributeError); the ratio is given instead, and the cosine still ends at the floor."""
    import torch
    from transformers import get_scheduler

    from m2rl.config import compose_config
    from m2rl.engine.sft import build_sft_config
    from m2rl.jobs.build import section
    from m2rl.specs import SFTRecipe

    recipe = SFTRecipe(**section(compose_config([]), "sft"))
    args = build_sft_config(recipe, tmp_path, world_size=1, use_cpu=True, seed=0)
    assert args.lr_scheduler_kwargs == {"min_lr_rate": pytest.approx(0.1)}  # 3e-4 of 3e-3 (sft/tiny.yaml)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.learning_rate)
    schedule = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=0,
        num_training_steps=10,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
    for _ in range(10):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(recipe.min_learning_rate)
