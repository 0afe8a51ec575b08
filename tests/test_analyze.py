"""m2rl analyze, piece by piece, against known answers: geometry of hand-set task vectors (float64
reference), the orthogonal projection, skill consistency, the KL estimator on models with a known logit
shift, judge prompts and verdict parsing, the job spec and the study's analyze stage."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from m2rl.analysis.consistency import ALL_DOMAINS, LineageItems, crossed_interval, skill_consistency
from m2rl.analysis.geometry import layer_of, relative_step, task_vector_geometry
from m2rl.analysis.neighbourhoods import kl_estimate
from m2rl.analysis.projection import BlockProjection, fwht
from m2rl.analysis.scoring import completion_logprobs
from m2rl.analysis.self_verification import (
    Trajectory,
    final_answer,
    judge_prompt,
    judge_score,
    parse_verdict,
    pick_trajectories,
)
from m2rl.config import compose_config
from m2rl.errors import UserError
from m2rl.jobs.build import analyze_job
from m2rl.specs import load_spec
from m2rl.study.plan import plan

from cli_helpers import ONE_SEED

# ----------------------------------------------------------------------------------- geometry
ETA = 0.25
ABOVE = 4.0 + 2.0**-20  # just above the threshold from base 3: |1 + 2^-20| > 0.25 * (4 + 2^-20)
BASE = [2, 2, 2, 2, 2, 2, 2, 3, 4, 3, 2, 2, 2, 2, 2]
# Element 7 (A), 8 (A) and 9 (B) move by exactly eta * max(|w_RL|, |w_SFT|): unchanged.
EXPERT_A = [3, 1, 3, 3, 2.01, 2, 2, 4, 3, ABOVE, 2, 2, 1, 2, 2]
EXPERT_B = [2, 2, 1, 3, 3, 3, 1, ABOVE, 4, 4, 2, 2, 1, 2, 2]
SHAPES = {"model.layers.0.mlp.up_proj.weight": (2, 5), "model.layers.1.self_attn.q_proj.weight": (1, 5)}


def _save(directory: Path, flat: list[float], dtype: torch.dtype = torch.float32) -> Path:
    directory.mkdir(parents=True)
    values = torch.tensor(flat, dtype=torch.float64)
    tensors, start = {}, 0
    for name, shape in SHAPES.items():
        size = math.prod(shape)
        tensors[name] = values[start : start + size].reshape(shape).to(dtype).contiguous()
        start += size
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def _reference(base: list[float], models: list[list[float]]) -> dict[str, np.ndarray]:
    """Dense float64 reference of every geometry number."""
    b = np.array(base, dtype=np.float32).astype(np.float64)
    ws = [np.array(m, dtype=np.float32).astype(np.float64) for m in models]
    ts = [w - b for w in ws]
    masks = [np.abs(t) > ETA * np.maximum(np.abs(w), np.abs(b)) for t, w in zip(ts, ws, strict=True)]
    k = len(models)
    jaccard, cosine, conflict = np.eye(k), np.eye(k), np.full((k, k), np.nan)
    for i in range(k):
        for j in range(k):
            both = masks[i] & masks[j]
            jaccard[i, j] = both.sum() / (masks[i] | masks[j]).sum()
            cosine[i, j] = ts[i] @ ts[j] / np.sqrt((ts[i] @ ts[i]) * (ts[j] @ ts[j]))
            conflict[i, j] = (both & (np.sign(ts[i]) != np.sign(ts[j]))).sum() / both.sum()
    return {
        "fraction": np.array([m.mean() for m in masks]),
        "jaccard": jaccard,
        "cosine": cosine,
        "conflict": conflict,
    }


@pytest.fixture(scope="module")
def hand_set(tmp_path_factory) -> tuple[Path, list[tuple[str, Path]]]:
    root = tmp_path_factory.mktemp("geometry")
    mixed = [a + b - s for a, b, s in zip(EXPERT_A, EXPERT_B, BASE, strict=True)]
    models = [
        ("A", _save(root / "a", EXPERT_A)),
        ("B", _save(root / "b", EXPERT_B)),
        ("M", _save(root / "m", mixed)),
    ]
    return _save(root / "sft", BASE), models


def _geometry(base: Path, models: list[tuple[str, Path]], chunk: int = 1 << 20, threshold: float = ETA):
    return task_vector_geometry(base, models, threshold, 4, 8, 0, chunk)


def test_hand_set_task_vectors_give_the_exact_overlap_cosine_and_sign_conflicts(hand_set):
    base, models = hand_set
    g = _geometry(base, models[:2])
    # A changed {0,1,2,3,9,12}, B {2,3,4,5,6,7,12}: both {2,3,12}, either 10 weights; 2 moved apart
    assert g.changed.tolist() == [6, 7] and g.numel == 15
    assert g.jaccard[0, 1] == pytest.approx(3 / 10, abs=0) and g.jaccard[0, 0] == 1
    assert g.sign_conflict[0, 1] == pytest.approx(1 / 3)
    p, q = 6 / 15, 7 / 15
    assert g.jaccard_random[0, 1] == pytest.approx(p * q / (p + q - p * q))
    reference = _reference(BASE, [EXPERT_A, EXPERT_B])
    np.testing.assert_allclose(g.fraction_changed, reference["fraction"], rtol=0, atol=0)
    np.testing.assert_allclose(g.jaccard, reference["jaccard"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(g.cosine, reference["cosine"], rtol=1e-12)
    assert g.sign_conflict[0, 1] == pytest.approx(reference["conflict"][0, 1], abs=1e-15)
    assert g.layers == ["layer 0", "layer 1"]
    assert g.layer_changed.tolist() == [[5, 1], [6, 1]]  # A: {0,1,2,3,9} and {12}; B: {2..7} and {12}


def test_a_change_equal_to_the_threshold_is_no_change(hand_set, tmp_path):
    base, _ = hand_set
    at = [2.0] * 7 + [4.0, 3.0, 4.0] + [2.0] * 5  # 3 -> 4, 4 -> 3, 3 -> 4: each exactly eta * max
    above = [2.0] * 7 + [ABOVE, 3.0, 4.0] + [2.0] * 5
    g = _geometry(base, [("at", _save(tmp_path / "at", at)), ("above", _save(tmp_path / "above", above))])
    assert g.changed.tolist() == [0, 1]
    assert _geometry(base, [("at", tmp_path / "at")], threshold=ETA * (1 - 1e-9)).changed.tolist() == [3]


def test_mixed_task_vector_is_the_sum_and_reading_in_chunks_changes_nothing(hand_set):
    base, models = hand_set
    whole, rows = _geometry(base, models), _geometry(base, models, chunk=3)  # one row of 5 per read
    reference = _reference(
        BASE, [EXPERT_A, EXPERT_B, [a + b - s for a, b, s in zip(EXPERT_A, EXPERT_B, BASE, strict=True)]]
    )
    np.testing.assert_allclose(whole.cosine, reference["cosine"], rtol=1e-12)
    for name in ("gram", "both_changed", "opposite", "layer_changed", "projected"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(rows, name))
    assert whole.jaccard.tolist() == reference["jaccard"].tolist()


def test_the_threshold_is_read_against_the_checkpoint_dtype(tmp_path):
    low, high = relative_step(torch.bfloat16)
    assert (low, high) == (2.0**-8, 2.0**-7)  # one bf16 step is 0.39-0.78% relative
    base = _save(tmp_path / "sft", BASE, torch.bfloat16)
    g = task_vector_geometry(
        base, [("A", _save(tmp_path / "a", EXPERT_A, torch.bfloat16))], 1e-3, 4, 8, 0, 64
    )
    assert g.dtype == "bfloat16" and g.threshold_reads_as.startswith("changed at all")
    assert "relative change above" in _geometry(base, [("A", tmp_path / "a")]).threshold_reads_as


def test_layer_names():
    assert layer_of("model.layers.12.mlp.down_proj.weight") == "layer 12"
    assert layer_of("model.embed_tokens.weight") == "embed_tokens" and layer_of("lm_head.weight") == "lm_head"


def test_models_with_other_tensors_are_refused(hand_set, tmp_path):
    base, _ = hand_set
    other = tmp_path / "other"
    other.mkdir()
    save_file({"model.layers.0.mlp.up_proj.weight": torch.zeros(2, 5)}, str(other / "model.safetensors"))
    with pytest.raises(UserError, match="missing"):
        _geometry(base, [("other", other)])


# --------------------------------------------------------------------------------- projection
def test_walsh_hadamard_transform_is_orthonormal():
    eye = torch.eye(16, dtype=torch.float64)
    h = fwht(eye)
    torch.testing.assert_close(h @ h.T, eye)
    assert torch.allclose(h.abs(), torch.full_like(h, 0.25))


def test_projection_has_orthonormal_rows_across_tensors_and_chunks():
    size = 24  # three blocks of 8, fed as pieces of 5, 11 and 8 that straddle them
    projection = BlockProjection(dim=4, block=8, seed=3, count=size)
    eye = torch.eye(size, dtype=torch.float64)
    for first, last in ((0, 5), (5, 16), (16, 24)):
        projection.add(eye[:, first:last])
    rows = projection.vectors().T  # P: 4 x 24
    torch.testing.assert_close(rows @ rows.T, torch.eye(4, dtype=torch.float64))


def test_projected_cosine_is_one_for_identical_vectors_and_spreads_as_1_over_sqrt_m_for_independent_ones():
    dim, size, pairs = 256, 65536, 12
    rng = torch.Generator().manual_seed(0)
    vectors = torch.randn(2 * pairs, size, generator=rng, dtype=torch.float64)
    projection = BlockProjection(dim, 4096, seed=0, count=2 * pairs + 1)
    for start in range(0, size, 10_000):  # fed in chunks that do not align with the blocks
        chunk = vectors[:, start : start + 10_000]
        projection.add(torch.cat([chunk, chunk[:1]]))
    z = projection.vectors()
    z = z / z.norm(dim=1, keepdim=True)
    assert float(z[0] @ z[-1]) == pytest.approx(1.0, abs=1e-12)
    projected = np.array([float(z[2 * i] @ z[2 * i + 1]) for i in range(pairs)])
    exact = np.array(
        [
            float(torch.nn.functional.cosine_similarity(vectors[2 * i], vectors[2 * i + 1], dim=0))
            for i in range(pairs)
        ]
    )
    errors = projected - exact
    assert np.abs(exact).max() < 0.02  # independent in 65k dimensions
    assert np.abs(errors).max() < 4 / math.sqrt(dim)
    assert 0.4 / math.sqrt(dim) < np.sqrt(np.mean(errors**2)) < 1.8 / math.sqrt(dim)


# -------------------------------------------------------------------------------- consistency
def test_consistency_on_constructed_per_item_results():
    sft = {"m/1": 0.5, "m/2": 0.5, "m/3": 0.5, "c/1": 0.5}
    experts = [
        {"m/1": 1.0, "m/2": 0.5, "m/3": 0.5, "c/1": 0.5},
        {"m/1": 0.5, "m/2": 0.75, "m/3": 0.25, "c/1": 0.75},
    ]
    models = {
        "copy": {"m/1": 1.0, "m/2": 0.75, "m/3": 0.0, "c/1": 0.75},  # the union's gains exactly, one loss
        "other": {"m/1": 1.0, "m/2": 0.5, "m/3": 1.0, "c/1": 0.5},  # gains on m/1 and on m/3 (no expert did)
        "none": {"m/1": 0.5, "m/2": 0.25, "m/3": 0.5, "c/1": 0.5},
    }
    domains = {"m/1": "math", "m/2": "math", "m/3": "math", "c/1": "code"}
    rows = {
        (r.model, r.domain): r for r in skill_consistency([LineageItems(sft, experts, models, domains)], 500)
    }
    assert rows["copy", ALL_DOMAINS].value == pytest.approx(1.0)
    # math: union gains (0.5, 0.25, 0), other (0.5, 0, 0.5): 0.25 / (sqrt(0.3125) * sqrt(0.5))
    assert rows["other", "math"].value == pytest.approx(0.25 / math.sqrt(0.3125 * 0.5))
    assert rows["other", "code"].value != rows["other", "code"].value  # no gains: undefined, not 0
    assert rows["none", "math"].ci95 is None and rows["other", "math"].items_gained == 2
    low, high = rows["other", "math"].ci95
    assert low <= rows["other", "math"].value <= high


def test_consistency_interval_crosses_seeds_and_items():
    rng = np.random.default_rng(1)
    union = rng.random((3, 200)) * (rng.random((3, 200)) < 0.4)
    model = np.clip(union + rng.normal(0, 0.1, union.shape), 0, None)
    value, ci, per_seed = crossed_interval(union, model, 1000, seed=0)
    assert value == pytest.approx(np.mean(per_seed)) and len(per_seed) == 3
    assert ci[0] < value < ci[1] and ci[1] - ci[0] < 0.2
    _, single, _ = crossed_interval(union[:1], model[:1], 1000, seed=0)
    assert single is not None


# ------------------------------------------------------------------------ KL on known logits
VOCAB, STOP, PAD, MAX_TOKENS = 16, 0, 15, 30


def _constant_logit_model(logits: torch.Tensor, seed: int = 0):
    """A Qwen3 whose next-token logits are `logits` whatever the context: every token embeds to one
    vector, attention and MLP outputs are zero, and the head maps the normed vector to `logits`."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=4, tie_word_embeddings=False)  # fmt: skip
    model = Qwen3ForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.randn(8).expand(VOCAB, 8))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        hidden = model.model(input_ids=torch.tensor([[1]])).last_hidden_state[0, 0]
        model.lm_head.weight.copy_(torch.outer(logits, hidden) / (hidden @ hidden))
    return model


def _sample(model, prompts: list[list[int]], samples: int) -> list[list[int]]:
    from m2rl.sampling import SamplingSettings, sample

    generator = torch.Generator().manual_seed(0)
    settings = SamplingSettings(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=MAX_TOKENS)
    return sample(model, [p for p in prompts for _ in range(samples)], settings, [STOP], PAD, generator)


def test_kl_of_a_model_against_itself_is_zero():
    model = _constant_logit_model(torch.randn(VOCAB, generator=torch.Generator().manual_seed(1)))
    prompts = [[1 + i % 5, 2 + i % 7] for i in range(4)]
    completions = _sample(model, prompts, 3)
    flat = [p for p in prompts for _ in range(3)]
    own = completion_logprobs(model, flat, completions, max_tokens=64)
    estimate = kl_estimate(
        own, completion_logprobs(model, flat, completions, 64), [i // 3 for i in range(12)]
    )
    assert (estimate.per_sequence, estimate.per_token, estimate.per_sequence_se) == (0.0, 0.0, 0.0)


def test_kl_against_a_known_logit_shift_matches_the_analytic_kl_within_its_standard_error():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(VOCAB, generator=generator)
    logits[STOP] = 0.5  # a stop probability near 0.1: responses of ~9 tokens
    shift = 0.6 * torch.randn(VOCAB, generator=generator)
    expert, multi = _constant_logit_model(logits), _constant_logit_model(logits + shift)
    prompts, samples = [[1 + i % 13, 1 + (7 * i) % 13] for i in range(128)], 8
    completions = _sample(expert, prompts, samples)
    flat = [p for p in prompts for _ in range(samples)]
    own = completion_logprobs(expert, flat, completions, max_tokens=1024)
    other = completion_logprobs(multi, flat, completions, max_tokens=1024)
    p = torch.softmax(logits.double(), -1)
    log_p, log_q = torch.log_softmax(logits.double(), -1), torch.log_softmax((logits + shift).double(), -1)
    for sequence, scores in zip(completions, own, strict=True):  # teacher forcing gives log p exactly
        np.testing.assert_allclose(scores, log_p[sequence].numpy(), atol=1e-5)
    per_token = float((p * (log_p - log_q)).sum())
    stop = float(p[STOP])
    expected_length = (1 - (1 - stop) ** MAX_TOKENS) / stop  # T: a stopping time, so E[S] = KL * E[T]
    estimate = kl_estimate(own, other, [i // samples for i in range(len(flat))])
    assert estimate.n_prompts == 128 and estimate.n_samples == 1024
    assert abs(estimate.per_token - per_token) < 3 * estimate.per_token_se < 0.3 * per_token
    assert abs(estimate.per_sequence - per_token * expected_length) < 3 * estimate.per_sequence_se


def test_scoring_batches_give_the_same_log_probs_as_one_sequence_at_a_time():
    model = _constant_logit_model(torch.randn(VOCAB, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():  # context matters again: attention back on
        model.model.layers[0].self_attn.o_proj.weight.normal_()
        model.model.embed_tokens.weight.normal_()
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [2, 2]]
    completions = [[3, 4], [5, 6, 7, 0], [1], [8, 8, 8]]
    batched = completion_logprobs(model, prompts, completions, max_tokens=64)
    alone = [
        completion_logprobs(model, [p], [c], max_tokens=8)[0]
        for p, c in zip(prompts, completions, strict=True)
    ]
    for a, b in zip(batched, alone, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


# ---------------------------------------------------------------------------- self-verification
@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("Verdict: correct", True),
        ("The steps check out.\nVerdict: incorrect", False),
        ("verdict: **Correct**", True),
        ("VERDICT - incorrect.", False),
        ("Verdict: `correct`", True),
        ("Verdict: correct\nOn reflection... Verdict: incorrect", False),  # the last one counts
        ("<think>Verdict: incorrect, maybe</think>\n\nVerdict: correct<|im_end|>", True),
        ("", None),
        ("I think the answer is correct.", None),
        ("Verdict: maybe", None),
        ("Verdict: correctness is unclear", None),
        ("<think>Verdict: correct</think> no verdict after thinking", None),
        ("Verdict:", None),
    ],
)
def test_judge_verdicts_parse_or_are_none(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_judge_prompts_show_the_final_answer_or_the_whole_process():
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is 2+3?"}]
    response = "<think>2 plus 3 is 5</think>\n\nAnswer: \\boxed{5}<|im_end|>"
    assert final_answer(response) == "Answer: \\boxed{5}"
    outcome = judge_prompt(prompt, response, "outcome")[0]["content"]
    process = judge_prompt(prompt, response, "process")[0]["content"]
    assert "What is 2+3?" in outcome and "be brief" not in outcome
    assert "\\boxed{5}" in outcome and "2 plus 3" not in outcome and "2 plus 3" in process
    assert outcome.rstrip().endswith("`Verdict: incorrect`.")
    with pytest.raises(ValueError):
        judge_prompt(prompt, response, "vibes")


def test_judge_scores_count_unparsed_verdicts_as_wrong():
    score = judge_score([True, True, False, False], [True, None, False, True])
    assert (score.accuracy, score.parsed, score.positives) == (0.5, 3, 2)
    assert score.balanced_accuracy == pytest.approx(0.5)
    low, high = score.ci95
    assert low < 0.5 < high


def test_trajectories_are_picked_half_correct_where_there_are_enough():
    pool = [Trajectory(f"i{n}", [], "r", n < 3) for n in range(20)]  # 3 correct, 17 wrong
    picked = pick_trajectories(pool, 8, seed=0)
    assert len(picked) == 8 and sum(t.correct for t in picked) == 3
    assert sum(t.correct for t in pick_trajectories(pool, 4, seed=0)) == 2
    assert pick_trajectories(pool, 8, seed=0) == picked


# --------------------------------------------------------------------------- spec and plan
def test_analyze_spec_validates_round_trips_and_pins_its_inputs():
    cfg = compose_config([])
    spec = analyze_job(cfg, ["a", "b"], "x", "study", "study-analysis")
    assert load_spec(spec.to_json()) == spec
    assert spec.identity() == analyze_job(cfg, ["a", "b"], "x", "study", None).identity()
    assert spec.identity() != analyze_job(compose_config(["analyze.threshold=1e-4"]), ["a", "b"]).identity()
    assert spec.identity() != analyze_job(compose_config(["eval.k=8"]), ["a", "b"]).identity()
    for override, message in (
        ("analyze.projection_block=300", "analyze.projection_block=300: Value error, must be a power of two"),
        ("analyze.threshold=0", "analyze.threshold=0"),
        ("analyze.neighbourhoods.prompts=1", "analyze.neighbourhoods.prompts=1"),
        ("analyze.self_verification.modes=[vibes]", "analyze.self_verification.modes"),
    ):
        with pytest.raises(UserError, match=message.replace("[", r"\[")):
            analyze_job(compose_config([override]), ["a"])


def test_each_seed_gets_an_analyze_stage_after_its_evals():
    stages = {
        s.name: s for s in plan(compose_config([*ONE_SEED, "study.seeds=2", "study.analyze=true"]), "s")
    }
    for seed in (0, 1):
        analyze = stages[f"s-s{seed}-analyze"]
        evals = {n for n, s in stages.items() if s.kind == "eval" and n.startswith(f"s-s{seed}-")}
        assert analyze.kind == "analyze" and set(analyze.deps) == evals  # every model of the seed
    assert not any(s.kind == "analyze" for s in plan(compose_config([]), "s"))  # off on tiny by default
    runs = {name: SimpleNamespace(id=f"id-{name}") for name in stages}
    spec = stages["s-s1-analyze"].build(runs)
    assert spec.publish == "s-s1-analysis" and "id-s-s1-rl-mixed" in spec.runs
    single = {s.name: s for s in plan(compose_config([*ONE_SEED, "study.analyze=true"]), "one")}[
        "one-s0-analyze"
    ]
    models = {d.removesuffix("-eval"): SimpleNamespace(id=d) for d in single.deps}
    assert single.build(models).publish == "one-analysis"  # one seed: the study's own folder


# --------------------------------------------------------------------------- compare's link
def test_compare_md_links_the_study_analysis_per_seed(tmp_path):
    """compare.md links each analysis report that exists beside it (per seed, pooled) and, where none
    was made, names the command that makes them instead of a dead link."""
    from m2rl.analysis import REPORT_NAME
    from m2rl.compare import compare_runs, select_runs
    from m2rl.compare.markdown import to_markdown
    from m2rl.ledger import Ledger
    from study_builder import build_study

    build_study(tmp_path, name="st", seeds=(0, 1), n_items=12)
    selection = select_runs(Ledger(tmp_path), study="st")
    markdown = compare_runs(
        selection.runs, selection.out_dir, bootstrap_samples=200
    ).markdown_path.read_text()
    assert "## Analysis: why mixing works" in markdown
    assert "not made yet: `m2rl analyze st` writes them" in markdown and "(../st-" not in markdown
    for folder in ("st-s0-analysis", "st-s1-analysis", "st-analysis"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / REPORT_NAME).write_text("# analysis\n")
    markdown = compare_runs(
        selection.runs, selection.out_dir, bootstrap_samples=200
    ).markdown_path.read_text()
    assert "(../st-s0-analysis/analysis.md)" in markdown and "(../st-s1-analysis/analysis.md)" in markdown
    assert "(../st-analysis/analysis.md)" in markdown
    one = compare_runs([r for r in selection.runs if r.manifest["seed"] == 0], tmp_path / "one", 200)
    assert "(../st-analysis/analysis.md)" in one.markdown_path.read_text()
    one.comparison.studies = []  # runs outside a study: no analysis to link
    assert "Analysis: why mixing works" not in to_markdown(one.comparison)
