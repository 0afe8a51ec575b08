"""The paper benchmarks' loaders on real rows (tests/fixtures/real: sources, commits and licences in its READMEs).

IFBench and IFEval are whole test files; AIME 2024/2025 are their first rows. LiveCodeBench,
HLE, GPQA-Diamond and MMLU-Redux have no real rows here (docs/benchmarks.md says why) and are
tested on schema fixtures in test_data_benchmarks.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from m2rl.data.benchmarks import load_benchmark, read_benchmark
from m2rl.verifiers import score
from m2rl.verifiers.config import VerifierConfig
from m2rl.verifiers.instruction_following import SUPPORTED_IDS, tagger

REAL = Path(__file__).parent / "fixtures" / "real"
CONFIG = VerifierConfig(require_think=False)


def spec(name: str, path: str, **extra) -> dict:
    return {"name": name, "source": str(REAL / path), "split": None, **extra}


def test_every_row_of_ifbenchs_test_file_loads_and_start_verb_items_score_or_say_why(capsys) -> None:
    read = read_benchmark(spec("ifbench", "ifbench/IFBench_test.jsonl"))
    assert read.rows == len(read.samples) == 300 and read.left_out == []
    items = load_benchmark(spec("ifbench", "ifbench/IFBench_test.jsonl"))
    assert Counter(len(s["metadata"]["instruction_id_list"]) for s in items) == {1: 256, 2: 44}
    ids = {i for s in items for i in s["metadata"]["instruction_id_list"]}
    assert len(ids) == 58 and ids <= set(SUPPORTED_IDS)
    assert {s["rm_type"] for s in items} == {"ifbench"}
    start_verb = [s for s in items if "words:start_verb" in s["metadata"]["instruction_id_list"]]
    assert [s["id"] for s in start_verb] == [f"ifbench-{key}" for key in range(257, 263)]
    # the hub's every-key kwargs with float integers come back as each instruction's own kwargs
    assert start_verb[-1]["metadata"]["kwargs"] == [{}, {"N": 39}]
    err = capsys.readouterr().err
    verdict = score(start_verb[0], "Write a poem about an empire.", CONFIG)
    if tagger.available():
        assert err == "" and verdict.reward == 1.0
        # NLTK's model tags this imperative "Imagine" NNP, so IFBench (and this reward) say no
        assert score(start_verb[0], "Imagine an empire of endless suffering.", CONFIG).reward == 0.0
    else:
        assert err.splitlines() == [
            f"benchmark ifbench: 6 item(s) score 0 here: {tagger.TaggerUnavailable()}: "
            + ", ".join(s["id"] for s in start_verb)
        ]
        assert verdict.reward == 0.0 and tagger.DOWNLOAD in verdict.reason


def test_ifbench_items_score_through_the_reward_registry() -> None:
    items = {s["id"]: s for s in load_benchmark(spec("ifbench", "ifbench/IFBench_test.jsonl"))}
    first = items["ifbench-0"]
    assert first["metadata"]["prompt_text"] == first["prompt"][0]["content"]
    for item in items.values():  # every real row's kwargs are complete: no instruction lacks a value
        verdict = score(item, "A short answer.", CONFIG)
        assert verdict.reward in (0.0, 1.0) and "bad kwargs" not in verdict.reason, (item["id"], verdict)


def test_every_row_of_ifeval_loads_and_gpt4s_responses_score_as_the_official_checkers_do() -> None:
    read = read_benchmark(spec("ifeval", "ifeval/input_data.jsonl"))
    assert read.rows == len(read.samples) == 541 and read.left_out == []
    items = read.samples
    assert {s["rm_type"] for s in items} == {"ifevalg"} and items[0]["id"] == "ifeval-1000"
    assert sum(len(s["metadata"]["instruction_id_list"]) for s in items) == 834
    responses = [
        json.loads(line)["response"]
        for line in (REAL / "ifeval" / "input_response_data_gpt4_20231107_145030.jsonl")
        .read_text()
        .splitlines()
    ]
    # prompt-level accuracy of GPT-4's published responses; Google's checkers give the same
    # (test_if_agreement_ifeval.py compares every instruction)
    for strict, followed in ((True, 417), (False, 431)):
        config = VerifierConfig(require_think=False, if_strict=strict)
        rewards = [
            score(item, response, config).reward for item, response in zip(items, responses, strict=True)
        ]
        assert sum(rewards) == followed


def test_aime_rows_load_with_their_gold_answers() -> None:
    aime24 = load_benchmark(spec("aime24", "aime24/test.jsonl"))
    assert [(s["id"], s["label"]) for s in aime24] == [
        ("aime24-60", "204"),
        ("aime24-61", "113"),
        ("aime24-62", "371"),
    ]
    aime25 = load_benchmark(spec("aime25", "aime25/test.jsonl"))
    assert [(s["id"], s["label"]) for s in aime25] == [
        ("aime25-0", "70"),
        ("aime25-1", "588"),
        ("aime25-2", "16"),
    ]
    for item in aime24 + aime25:
        prompt = item["prompt"][0]["content"]
        assert (
            prompt.startswith("Solve the following math problem step by step.")
            and item["rm_type"] == "deepscaler"
        )
    assert aime24[0]["prompt"][0]["content"].endswith("including the $t$ minutes spent in the coffee shop.")
    assert "$s+\\frac{1}{2}$" in aime24[0]["prompt"][0]["content"]  # LaTeX braces survive templating
    assert score(aime25[1], "So the area is \\boxed{588}.", CONFIG).reward == 1.0
    assert score(aime25[1], "So the area is \\boxed{587}.", CONFIG).reward == 0.0
