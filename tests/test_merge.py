"""Merge backend: paper semantics against dense float64 references, mergekit methods, lineage, CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from m2rl.errors import UserError
from m2rl.jobs.merge import merge_experts
from m2rl.ledger import Ledger, Run, attempt
from m2rl.merge import available_methods
from m2rl.merge import paper as paper_engine
from m2rl.merge.paper import dare_keep_mask
from m2rl.merge.tensors import INDEX_NAME, weight_files

os.environ.setdefault("HF_HUB_OFFLINE", "1")
STEP = 2.0**-12  # grid of the "quantized" models: exact sums, ties in |t| and exact cancellations
MERGEKIT_METHODS = [
    "linear",
    "task_arithmetic",
    "ties",
    "dare_ties",
    "dare_linear",
    "breadcrumbs",
    "della",
    "sce",
    "model_stock",
    "ram",
    "ramplus_tl",
]


# --------------------------------------------------------------------------------------- fixtures
def _tokenizer(directory: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(
        [f"what is {a} plus {b}? answer {a + b}" for a in range(30) for b in range(10)], trainer
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.save_pretrained(directory)
    return fast


def _save_model(directory: Path, seed: int, intermediate: int = 128) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():  # put every weight on the STEP grid so float arithmetic below is exact
        for param in model.parameters():
            param.copy_(torch.round(param / STEP) * STEP)
    model.save_pretrained(directory)


def _write_expert(base_dir: Path, out_dir: Path, seed: int, quantized: bool, bias: int = 0) -> None:
    shutil.copytree(base_dir, out_dir)
    tensors = load_file(str(out_dir / "model.safetensors"))
    generator = torch.Generator().manual_seed(seed)
    for position, (name, value) in enumerate(sorted(tensors.items())):
        if quantized:
            delta = (
                torch.randint(-6 + bias, 7 + bias, value.shape, generator=generator).to(value.dtype) * STEP
            )
        else:
            scale = 1e-3 * (1 + position % 4)  # tensors move by different amounts, as under RL
            delta = (
                torch.randn(value.shape, generator=generator)
                * scale
                * (1 + torch.rand(value.shape, generator=generator))
            )
        tensors[name] = (value + delta).contiguous()
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})


def _finished(ledger: Ledger, kind: str, name: str, model: Path | None, parents=(), **fields) -> Run:
    run = ledger.create(kind=kind, name=name, config={"name": name}, parents=list(parents))
    with attempt(run):
        if model is not None:
            shutil.copytree(model, run.path / "model")
        run.update(**fields)
    return run


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A ledger with one SFT run and experts: 3 quantized (negative-biased), 2 continuous."""
    root = tmp_path_factory.mktemp("merge")
    models = root / "models"
    base_dir = models / "sft"
    _save_model(base_dir, seed=0)
    _tokenizer(base_dir)
    ledger = Ledger(root / "runs")
    sft = _finished(ledger, "sft", "sft", base_dir)
    experts = {}
    for index, domain in enumerate(["math", "code", "science"]):
        _write_expert(base_dir, models / domain, seed=10 + index, quantized=True, bias=-1)
        experts[domain] = _finished(ledger, "rl", f"rl-{domain}", models / domain, [sft.id], domains=[domain])
    for index, domain in enumerate(["if", "agent"]):
        _write_expert(base_dir, models / domain, seed=20 + index, quantized=False)
        experts[domain] = _finished(ledger, "rl", f"rl-{domain}", models / domain, [sft.id], domains=[domain])
    return {"ledger": ledger, "sft": sft, "experts": experts, "models": models, "root": root}


# ------------------------------------------------------------------------------- dense references
def _state(model_dir: Path) -> dict[str, torch.Tensor]:
    state = {}
    for file in weight_files(model_dir):
        state.update(load_file(str(file)))
    return state


def _flat(states: list[dict], names: list[str]) -> torch.Tensor:
    return torch.stack([torch.cat([s[n].double().reshape(-1) for n in names]) for s in states])


def _unflatten(vector: torch.Tensor, like: dict, names: list[str]) -> dict:
    out, at = {}, 0
    for name in names:
        size = like[name].numel()
        out[name] = vector[at : at + size].reshape(like[name].shape)
        at += size
    return out


def reference(method: str, base_dir: Path, expert_dirs: list[Path], **p) -> dict[str, torch.Tensor]:
    """The merge computed densely in float64 over the whole flattened models (MergeLM's formulas)."""
    base = _state(base_dir)
    names = sorted(base)
    experts = [_state(d) for d in expert_dirs]
    b = _flat([base], names)[0]
    tvs = _flat(experts, names) - b
    if "drop_rate" in p:
        rate = p["drop_rate"]
        for k in range(len(experts)):
            keep = torch.cat([dare_keep_mask(n, base[n].numel(), k, p.get("seed", 0), rate) for n in names])
            tvs[k] = tvs[k] * keep / (1 - rate)
    if method == "average":
        merged = _flat(experts, names).mean(0)
    elif method == "ta":
        merged = b + p.get("lam", 1.0) * tvs.sum(0)
    elif method == "ties":
        count = int(tvs.shape[1] * (1 - p.get("density", 0.2)))
        if count > 0:
            kth = tvs.abs().kthvalue(count, dim=1, keepdim=True).values
            tvs = tvs * (tvs.abs() >= kth)
        signs = torch.sign(tvs.sum(0))
        signs[signs == 0] = torch.sign(signs.sum())
        keep = ((signs > 0) & (tvs > 0)) | ((signs < 0) & (tvs < 0))
        kept = tvs * keep
        merged = b + p.get("lam", 1.0) * kept.sum(0) / (kept != 0).sum(0).clamp(min=1)
    elif method == "sce":
        out = {}
        for name in names:
            t = torch.stack([e[name].double() - base[name].double() for e in experts])
            w = torch.tensor([float((x**2).sum()) / x.numel() for x in t], dtype=torch.float64)
            w = w / w.sum() if w.sum() != 0 else torch.full_like(w, 1 / len(w))
            w = w.reshape(-1, *([1] * (t.dim() - 1)))
            majority = torch.where(t.sum(0) >= 0, 1.0, -1.0).double()
            erased = w * (torch.sign(t) == majority)
            divisor = erased.sum(0)
            divisor[divisor == 0] = 1
            out[name] = base[name].double() + (t * erased).sum(0) / divisor
        return out
    else:
        raise AssertionError(method)
    return _unflatten(merged, base, names)


def ram_reference(
    base_dir: Path, expert_dirs: list[Path], epsilon: float, r: float | None = None, alpha: float = 0.0
):
    """RAM (and RAM+ with `r`) per tensor in float64, as arXiv 2601.13572 states it: an element only
    one expert moved (by more than epsilon) keeps that expert's change; one several moved gets their
    mean change; with RAM+ each expert's unique changes in a tensor are scaled by 1 + r min(rho, alpha),
    rho = its shared / unique moved elements there."""
    base, experts = _state(base_dir), [_state(d) for d in expert_dirs]
    out = {}
    for name, b in base.items():
        tvs = torch.stack([e[name].double() - b.double() for e in experts]).reshape(len(experts), -1)
        moved = tvs.abs() > epsilon
        count = moved.sum(0)
        unique, shared = moved & (count == 1), moved & (count > 1)
        scale = torch.ones(len(experts), 1, dtype=torch.float64)
        if r is not None:
            rho = shared.sum(1).double() / unique.sum(1).double().clamp(min=epsilon)
            scale = (1 + r * rho.clamp(0, alpha)).unsqueeze(1)
        merged = (tvs * unique * scale).sum(0) + (tvs * shared).sum(0) / count.clamp(min=1)
        out[name] = b.double() + merged.reshape(b.shape)
    return out


@pytest.mark.parametrize("method", ["ram", "ramplus_tl"])
def test_ram_merges_equal_their_float64_reference(study, method):
    runs, dirs = _dirs(study, ["math", "code", "science"])
    run = merge_experts(study["ledger"], runs, method, name=f"ram-check-{method}")
    plus = {"r": 0.1, "alpha": 0.2} if method == "ramplus_tl" else {}
    expected = ram_reference(study["sft"].model_dir, dirs, 1e-5, **plus)
    assert_close(run, expected, atol=2e-6)
    summed = reference("ta", study["sft"].model_dir, dirs)  # RAM is neither the sum nor the mean
    mean = reference("average", study["sft"].model_dir, dirs)
    assert any(not torch.allclose(expected[n], summed[n]) for n in expected)
    assert any(not torch.allclose(expected[n], mean[n]) for n in expected)
    if method == "ramplus_tl":  # the unique updates were scaled: RAM+ differs from RAM somewhere
        plain = ram_reference(study["sft"].model_dir, dirs, 1e-5)
        assert any(not torch.allclose(expected[n], plain[n]) for n in expected)


def assert_close(run: Run, expected: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    got = _state(run.model_dir)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        diff = (got[name].double() - value).abs().max().item()
        assert diff <= atol, f"{name}: max |diff| {diff}"


def _dirs(study, domains):
    return [study["experts"][d] for d in domains], [study["experts"][d].model_dir for d in domains]


# ------------------------------------------------------------------------------------ paper tests
@pytest.mark.parametrize(
    "domains", [["math", "code", "science"], ["if", "agent"]], ids=["quantized", "continuous"]
)
def test_paper_ties_equals_dense_global_threshold_reference(study, domains, monkeypatch):
    monkeypatch.setattr(paper_engine, "CHUNK_BUDGET", 3000)  # many chunks per tensor
    runs, dirs = _dirs(study, domains)
    run = merge_experts(study["ledger"], runs, "paper_ties", name=f"ties-{domains[0]}")
    assert_close(run, reference("ties", study["sft"].model_dir, dirs, density=0.2))
    kept = run.manifest["merge"]["stats"]["kept_fraction"]
    # ties at the threshold are all kept (|t| >= v_k): the quantized grid keeps more than 20%
    assert all(f >= 0.2 for f in kept) and (domains[0] == "math" or all(f < 0.2001 for f in kept))


def test_paper_ties_global_threshold_differs_from_per_tensor_trim(study):
    runs, dirs = _dirs(study, ["if", "agent"])
    run = merge_experts(study["ledger"], runs, "paper_ties", name="ties-global-check")
    got = _state(run.model_dir)
    base = _state(study["sft"].model_dir)
    # a per-tensor trim changes ~the same fraction of every tensor; the global one favours big movers
    changed = {n: float((got[n] != base[n]).double().mean()) for n in base if base[n].numel() > 1000}
    assert max(changed.values()) > 0.5 and min(changed.values()) < 0.05


def test_paper_ties_majority_sign_decides_exact_cancellations(study):
    runs, dirs = _dirs(study, ["math", "code", "science"])
    run = merge_experts(study["ledger"], runs, "paper_ties", name="ties-majority")
    stats = run.manifest["merge"]["stats"]
    assert stats["zero_sum_conflicts"] > 0  # the grid makes kept values cancel exactly somewhere
    assert stats["majority_sign"] == -1  # negative-biased deltas: the +1 provisional entries were patched
    assert_close(run, reference("ties", study["sft"].model_dir, dirs, density=0.2))


@pytest.mark.parametrize(
    "method,ref,params",
    [
        ("paper_dare_ta", "ta", {"drop_rate": 0.2, "seed": 0}),
        ("paper_dare_ties", "ties", {"drop_rate": 0.2, "seed": 0, "density": 0.2}),
        ("paper_sce", "sce", {}),
        ("paper_average", "average", {}),
        ("paper_ta", "ta", {}),
    ],
)
def test_paper_semantics_equal_dense_reference(study, method, ref, params, monkeypatch):
    monkeypatch.setattr(paper_engine, "CHUNK_BUDGET", 5000)
    monkeypatch.setattr(paper_engine, "DARE_BLOCK", 700)  # DARE blocks straddle chunk boundaries
    runs, dirs = _dirs(study, ["math", "code", "if"])
    run = merge_experts(study["ledger"], runs, method, name=f"{method}-ref")
    assert_close(run, reference(ref, study["sft"].model_dir, dirs, **params))


def test_dare_drops_about_drop_rate_and_rescales(study):
    mask = dare_keep_mask("w", 200_000, expert_index=0, seed=0, drop_rate=0.2)
    assert abs(1 - float(mask.double().mean()) - 0.2) < 0.01
    assert torch.equal(mask[5000:9000], dare_keep_mask("w", 200_000, 0, 0, 0.2, 5000, 9000))
    assert not torch.equal(mask, dare_keep_mask("w", 200_000, 1, 0, 0.2))


def test_paper_overrides_and_sharded_output(study):
    runs, dirs = _dirs(study, ["if", "agent"])
    run = merge_experts(
        study["ledger"],
        runs,
        "paper_ties",
        params_overrides={"density": 0.5, "lambda": 0.7, "max_shard_bytes": 60_000},
        name="ties-sharded",
    )
    assert (run.model_dir / INDEX_NAME).is_file() and len(weight_files(run.model_dir)) > 1
    assert run.manifest["merge"]["params"] == {"density": 0.5, "lambda": 0.7}
    assert_close(run, reference("ties", study["sft"].model_dir, dirs, density=0.5, lam=0.7))


# --------------------------------------------------------------------------- runs and lineage
def test_merge_run_records_lineage_cost_and_loads_and_generates(study):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    runs, _ = _dirs(study, ["math", "code"])
    run = merge_experts(study["ledger"], runs, "paper_ties", name="ties-lineage")
    manifest = json.loads((run.path / "run.json").read_text())
    assert manifest["kind"] == "merge" and manifest["status"] == "completed"
    assert manifest["parents"] == [r.id for r in runs] + [study["sft"].id]
    assert manifest["merge"]["method"] == "paper_ties" and manifest["merge"]["base"] == study["sft"].id
    assert manifest["merge"]["params"] == {"density": 0.2, "lambda": 1.0}
    assert manifest["device"]["type"] == "cpu" and manifest["device_hours_label"] == "CPU-hours"
    assert manifest["stage_seconds"]["merge"] > 0 and manifest["metrics"]["merge_cpu_seconds"] > 0
    assert manifest["domains"] == ["code", "math"]
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    model = AutoModelForCausalLM.from_pretrained(run.model_dir)
    ids = tokenizer("what is 3 plus 4?", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 4
    again = merge_experts(study["ledger"], runs, "paper_ties", name="ties-lineage")
    assert again.id == run.id  # identical finished merge is reused


def test_experts_with_different_sft_parents_are_rejected(study):
    ledger = study["ledger"]
    other_sft = _finished(ledger, "sft", "sft-other", study["sft"].model_dir)
    stray = _finished(
        ledger, "rl", "rl-stray", study["experts"]["math"].model_dir, [other_sft.id], domains=["math"]
    )
    with pytest.raises(UserError, match="different SFT runs"):
        merge_experts(ledger, [study["experts"]["code"], stray], "paper_ties")


def test_shape_mismatch_is_rejected(study, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(study["experts"]["code"].model_dir, bad)
    tensors = load_file(str(bad / "model.safetensors"))
    name = "model.layers.0.mlp.up_proj.weight"
    tensors[name] = tensors[name][:-1].contiguous()
    save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
    stray = _finished(study["ledger"], "rl", "rl-bad", bad, [study["sft"].id], domains=["code"])
    with pytest.raises(UserError, match=f"tensor {name} has shape"):
        merge_experts(study["ledger"], [study["experts"]["math"], stray], "ties")


def test_architecture_mismatch_is_rejected(study, tmp_path):
    _save_model(tmp_path / "wide", seed=1, intermediate=96)
    stray = _finished(study["ledger"], "rl", "rl-wide", tmp_path / "wide", [study["sft"].id], domains=["if"])
    with pytest.raises(UserError, match="intermediate_size"):
        merge_experts(study["ledger"], [study["experts"]["math"], stray], "paper_ties")


@pytest.mark.parametrize(
    "method,overrides,message",
    [
        ("nope", None, "unknown merge method 'nope'"),
        ("paper_ties", {"density": 1.5}, r"density=1.5 must lie in \(0.0, 1.0\]"),
        ("paper_ties", {"gamma": 0.1}, "has no parameter 'gamma'"),
        ("paper_dare_ta", {"drop_rate": "lots"}, "is not a number"),
        ("ties", {"normalize": "perhaps"}, "is not a valid bool"),
        ("ties", {"weight": float("nan")}, "must be finite"),
        ("della", {"density": 0.1, "epsilon": 0.15}, "density \\+/- epsilon"),
        ("linear", {"seed": 1.5}, "seed must be an integer"),
        ("ram", {"epsilon": -1.0}, r"epsilon=-1.0 must lie in \[0.0, 1.0\)"),
        ("ramplus_tl", {"alpha": -0.5}, r"alpha=-0.5 must lie in \[0.0, inf\)"),
        ("ram", {"density": 0.5}, "has no parameter 'density'"),
    ],
)
def test_bad_method_or_parameters_fail_before_any_run(study, method, overrides, message):
    before = len(study["ledger"].runs())
    runs, _ = _dirs(study, ["math", "code"])
    with pytest.raises(UserError, match=message):
        merge_experts(study["ledger"], runs, method, params_overrides=overrides)
    assert len(study["ledger"].runs()) == before


def test_unfinished_expert_is_rejected(study):
    ledger = study["ledger"]
    running = ledger.create(kind="rl", name="rl-running", config={}, parents=[study["sft"].id])
    with pytest.raises(UserError, match="not completed"):
        merge_experts(ledger, [study["experts"]["math"], Run.load(running.path)], "paper_ties")


# ------------------------------------------------------------------------------------- mergekit
@pytest.mark.parametrize("method", MERGEKIT_METHODS)
def test_mergekit_method_loads_generates_and_yaml_reproduces_it(study, method, tmp_path):
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    from transformers import AutoModelForCausalLM

    runs, _ = _dirs(study, ["math", "code", "if"])
    run = merge_experts(study["ledger"], runs, method, name=f"kit-{method}")
    assert run.manifest["merge"]["backend"] == "mergekit"
    model = AutoModelForCausalLM.from_pretrained(run.model_dir)
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False).shape[1] == 6
    text = (run.path / "mergekit.yml").read_text()
    seed = run.manifest["merge"]["options"]["seed"]
    assert f"--random-seed {seed}" in text.splitlines()[0]
    out = tmp_path / "direct"
    run_merge(
        MergeConfiguration.model_validate(yaml.safe_load(text)),
        str(out),
        MergeOptions(random_seed=seed, quiet=True),
    )
    got, direct = _state(run.model_dir), _state(out)
    assert sorted(got) == sorted(direct)
    for name in got:
        assert torch.equal(got[name], direct[name]), name
    base = _state(study["sft"].model_dir)
    assert any(not torch.equal(got[n], base[n]) for n in base)


def test_available_methods_cover_paper_and_mergekit_methods():
    methods = set(available_methods())
    assert {
        "paper_average",
        "paper_ta",
        "paper_ties",
        "paper_dare_ta",
        "paper_dare_ties",
        "paper_sce",
    } <= methods
    assert set(MERGEKIT_METHODS) <= methods


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture()
def cli(study, monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    from m2rl.commands import merge as merge_command
    from m2rl.config import conf_dir

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("defaults:\n  - merge: paper_ties\n  - _self_\nseed: 0\n")
    (conf / "merge").symlink_to(conf_dir() / "merge")
    monkeypatch.setenv("M2RL_CONF_DIR", str(conf))
    app = typer.Typer()
    app.command()(merge_command.command)
    runner = CliRunner()
    root = str(study["ledger"].root)
    return lambda *args: runner.invoke(app, [*args, "--runs-dir", root])


def test_cli_merges_a_method_list_with_overrides(cli, study):
    result = cli(
        "--method",
        "paper_ties,paper_dare_ties",
        "--experts",
        "rl-math,rl-code",
        "--name",
        "cli",
        "merge.density=0.3",
    )
    assert result.exit_code == 0, result.output
    ledger = study["ledger"]
    ties, dare = ledger.get("cli-paper_ties"), ledger.get("cli-paper_dare_ties")
    assert ties.manifest["merge"]["params"]["density"] == dare.manifest["merge"]["params"]["density"] == 0.3


def test_cli_dry_run_prints_resolved_config_and_glob_selects_experts(cli, study):
    result = cli("--method", "paper", "--dry-run")
    assert result.exit_code == 0
    assert result.output.count("backend:") == 6 and "drop_rate: 0.2" in result.output
    result = cli("--experts", "rl-i*,rl-agent", "--name", "cli-glob")
    assert result.exit_code == 0, result.output
    run = study["ledger"].get("cli-glob")
    assert run.manifest["merge"]["experts"] == [study["experts"]["if"].id, study["experts"]["agent"].id]


def test_a_glob_of_experts_leaves_the_mixed_run_and_other_runs_out(cli, study, tmp_path):
    """`--experts 'rl-i*'` once merged the mixed run (`rl-imixed` here) as one more expert."""
    ledger = study["ledger"]
    mixed_model = study["experts"]["if"].model_dir
    _finished(ledger, "rl", "rl-imixed", mixed_model, [study["sft"].id], domains=["if", "math"])
    result = cli("--experts", "rl-i*", "--name", "cli-glob-experts", "--method", "paper_ta")
    assert result.exit_code == 0, result.output
    assert ledger.get("cli-glob-experts").manifest["merge"]["experts"] == [study["experts"]["if"].id]
    only_mixed = cli("--experts", "rl-imix*", "--name", "cli-glob-none")
    assert isinstance(only_mixed.exception, UserError)
    assert "only rl-imixed, not experts" in str(only_mixed.exception)


def test_cli_errors_are_user_errors(cli):
    assert isinstance(cli("--method", "bogus", "--experts", "rl-math").exception, UserError)
    assert isinstance(cli("--method", "ties", "merge.density=2", "--dry-run").exception, UserError)
    assert isinstance(cli("--method", "ties", "--experts", "no-such-run").exception, UserError)


@pytest.mark.slow
def test_mergekit_yaml_cli_reproduces_a_random_merge(study, tmp_path):
    import subprocess
    import sys

    runs, _ = _dirs(study, ["math", "code"])
    run = merge_experts(study["ledger"], runs, "dare_ties", name="kit-cli")
    command = (run.path / "mergekit.yml").read_text().splitlines()[0].removeprefix("# reproduce: ").split()
    command[0] = str(Path(sys.executable).parent / "mergekit-yaml")
    command[2] = str(tmp_path / "out")
    subprocess.run(
        command, cwd=run.path, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    got, direct = _state(run.model_dir), _state(tmp_path / "out")
    assert all(torch.equal(got[n], direct[n]) for n in got)
