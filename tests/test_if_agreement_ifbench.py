"""IFBench's verifier against IFBench's own unit tests and evaluation results (tests/fixtures/real/ifbench).

`unit_test_cases.jsonl` holds every checker call of IFBench's `instructions_test.py` with the
verdicts of two IFBench versions: pull request #34's head (1d62c1d6), which the checkers follow,
and main (db69a6f), which differs on 6 of them. `words:start_verb` needs NLTK's POS model: its
cases run where the model is installed (`python -m nltk.downloader averaged_perceptron_tagger_eng`)
and are skipped elsewhere; the rest of its checker is tested with a small model trained here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.tag.perceptron import PerceptronTagger

from m2rl.verifiers.instruction_following import (
    CHECKERS,
    follow_list,
    ifbench,
    tagger,
    unavailable_ids,
    verify,
)
from m2rl.verifiers.instruction_following.kwargs import normalise

REAL = Path(__file__).parent / "fixtures" / "real" / "ifbench"
CASES = [json.loads(line) for line in (REAL / "unit_test_cases.jsonl").read_text().splitlines()]
NEEDS_MODEL = pytest.mark.skipif(
    not tagger.available(), reason=f"NLTK's POS model is not installed ({tagger.DOWNLOAD})"
)

# The unit-test calls where IFBench's main branch scores otherwise than #34, by the #34 test making them.
MAIN_DIFFERS = {
    "test_keywords_multiple__counts_whole_words": 1,
    "test_repeat_span__uses_word_indices": 2,
    "test_sentence_alphabet__ignores_leading_punctuation": 1,
    "test_sentence_words__requires_unique_words": 1,
    "test_words_position__ignores_punctuation_tokens": 1,
}


def _bare(case: dict) -> bool:
    return CHECKERS[case["instruction_id"]](case["response"], normalise(case["kwargs"] or None))


def test_cases_cover_ifbench_and_main_differs_where_documented() -> None:
    assert len(CASES) == 176
    assert {c["instruction_id"] for c in CASES} <= set(ifbench.IFBENCH_IDS)
    assert len({c["instruction_id"] for c in CASES}) == 54
    differs: dict[str, int] = {}
    for case in CASES:
        if case["pr34"] != case["main"]:
            (test,) = case["tests"]
            differs[test.removeprefix("pr34:")] = differs.get(test.removeprefix("pr34:"), 0) + 1
    assert differs == MAIN_DIFFERS


def test_every_checker_agrees_with_ifbench_pr34_on_its_unit_tests() -> None:
    cases = [c for c in CASES if c["instruction_id"] != "words:start_verb"]
    disagreements = [
        (c["tests"], c["instruction_id"], c["response"][:60]) for c in cases if _bare(c) != c["pr34"]
    ]
    assert disagreements == []
    assert sum(_bare(c) != c["main"] for c in cases) == sum(MAIN_DIFFERS.values())


def test_an_empty_response_scores_0_though_a_bare_checker_holds() -> None:
    (empty,) = [c for c in CASES if not c["response"].strip() and c["pr34"]]
    assert empty["instruction_id"] == "format:quote_unquote" and _bare(empty) is True
    # IFBench's evaluation code, like IFEval's, follows nothing on an empty response
    for strict in (True, False):
        assert follow_list(empty["response"], [empty["instruction_id"]], [empty["kwargs"]], strict)[0] == (
            False,
            None,
        )


@NEEDS_MODEL
def test_start_verb_agrees_with_ifbench_unit_tests_and_its_evaluation_results() -> None:
    cases = [c for c in CASES if c["instruction_id"] == "words:start_verb"]
    assert [(c["response"], c["pr34"]) for c in cases] == [
        ("Does this sentence start with a verb?", True),
        ("This sentence does not start with a verb.", False),
    ]
    assert all(_bare(c) is c["pr34"] is c["main"] for c in cases)
    rows = [
        json.loads(line) for line in (REAL / "eval_results_strict_start_verb.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 6 and sum(r["follow_all_instructions"] for r in rows) == 3
    test_set = [json.loads(line) for line in (REAL / "IFBench_test.jsonl").read_text().splitlines()]
    kwargs = {item["prompt"]: item["kwargs"] for item in test_set}
    for row in rows:
        ok, reason = verify(row["response"], row["instruction_id_list"], kwargs[row["prompt"]], row["prompt"])
        assert ok is row["follow_all_instructions"], (row["response"][:60], reason)
    assert unavailable_ids(["words:start_verb"]) == {}


@NEEDS_MODEL
def test_the_first_tag_is_nltks_pos_tag_of_the_whole_response() -> None:
    import nltk

    from m2rl.verifiers.instruction_following import text as T

    responses = [
        "Conceive an empire where consciousnesses are eternally tormented.",  # NNP: IFBench says no
        "Write a poem.",
        "Imagine a world.",
        "Running late, she left.",
        "1999 was a year.",
        "Hello",
    ]
    for response in responses:
        tokens = list(T.word_tokenize(response))
        assert tagger.first_tag(tokens) == nltk.pos_tag(tokens)[0][1]


# --- without the real model: the checker's logic, on a model trained here ------------------

_TRAINING = [
    [("Write", "VB"), ("a", "DT"), ("poem", "NN"), (".", ".")],
    [("Read", "VB"), ("the", "DT"), ("book", "NN"), (".", ".")],
    [("The", "DT"), ("dog", "NN"), ("runs", "VBZ"), (".", ".")],
    [("Does", "VBZ"), ("it", "PRP"), ("rain", "VB"), ("?", ".")],
    [("A", "DT"), ("cat", "NN"), ("sleeps", "VBZ"), (".", ".")],
    [("Going", "VBG"), ("home", "NN"), ("now", "RB"), (".", ".")],
]


@pytest.fixture(scope="module")
def small_model() -> PerceptronTagger:
    model = PerceptronTagger(load=False)
    model.train([list(sentence) for sentence in _TRAINING], nr_iter=5)
    return model


@pytest.fixture
def with_small_model(monkeypatch: pytest.MonkeyPatch, small_model: PerceptronTagger) -> PerceptronTagger:
    monkeypatch.setattr(tagger, "_tagger", lambda: small_model)
    return small_model


def test_start_verb_holds_when_the_first_tag_contains_vb(with_small_model: PerceptronTagger) -> None:
    for response, expected in [
        ("Write a poem.", True),
        ("Does it rain?", True),
        ("Going home now.", True),  # VBG contains VB, as IFBench's `'VB' in tag` test
        ("The dog runs.", False),
        ("A cat sleeps.", False),
    ]:
        assert follow_list(response, ["words:start_verb"], [None])[0] == (expected, None), response
    assert follow_list("   ", ["words:start_verb"], [None])[0] == (False, None)


_WORDS = ["Write", "The", "dog", "runs", "a", "1999", "12", "well-known", "Going", "?", ".", "poem", "-x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=8))
def test_tagging_three_tokens_gives_the_first_tag_of_the_whole(tokens: list[str]) -> None:
    model = PerceptronTagger(load=False)
    model.train([list(sentence) for sentence in _TRAINING], nr_iter=2)
    original = tagger._tagger
    tagger._tagger = lambda: model  # type: ignore[assignment]
    try:
        assert tagger.first_tag(tokens) == model.tag(tokens)[0][1]
    finally:
        tagger._tagger = original  # type: ignore[assignment]


def test_without_the_model_start_verb_is_not_followed_with_the_download_as_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tagger, "_tagger", lambda: None)
    ok, problem = follow_list("Write a poem.", ["words:start_verb", "count:numbers"], [None, {"N": 0}])[0]
    assert ok is False and problem is not None and tagger.DOWNLOAD in problem
    ok, reason = verify("Write a poem.", ["words:start_verb"], [None], "p")
    assert ok is False and reason.startswith(
        "failed: words:start_verb needs NLTK's averaged_perceptron_tagger_eng"
    )
    assert unavailable_ids(["count:numbers", "words:start_verb", "words:start_verb"]) == {
        "words:start_verb": str(tagger.TaggerUnavailable())
    }
    assert unavailable_ids(["count:numbers"]) == {}
