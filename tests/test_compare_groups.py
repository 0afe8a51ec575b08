"""Runs of one study and role over seeds are one row; colliding labels are told apart."""

from __future__ import annotations

from m2rl.compare.groups import group_replicates, unique_labels
from m2rl.compare.records import RunRecord


def expert(run_id: str, seed: int | None, study: str | None = "s", name: str = "") -> RunRecord:
    return RunRecord(run_id, "rl", name=name or run_id, domains=("math",), seed=seed, study=study)


def test_seeds_of_one_role_are_replicates_and_a_repeated_seed_is_its_own_row():
    runs = [
        expert("a0", 0),
        expert("a1", 1),
        expert("again0", 0),
        expert("nameless", None),
        expert("b0", 0, "t"),
    ]
    groups = group_replicates(runs)
    assert [[r.id for r in g] for g in groups] == [["a0", "a1"], ["again0"], ["nameless"], ["b0"]]
    mixed = RunRecord("m0", "rl", domains=("math", "code"), seed=0, study="s")
    assert len(group_replicates([*runs[:2], mixed])) == 2


def test_colliding_labels_are_told_apart_by_study_then_backend_then_name():
    by_study = group_replicates([expert("a", 0, "old"), expert("b", 0, "new")])
    assert unique_labels(by_study) == ["RL-Math [old]", "RL-Math [new]"]
    merges = [
        RunRecord(i, "merge", name=i, merge_method=m, merge_backend=b, seed=0, study="s")
        for i, m, b in (("p", "paper_ties", "paper"), ("k", "ties", "mergekit"))
    ]
    assert unique_labels(group_replicates(merges)) == ["Merge (TIES) [paper]", "Merge (TIES) [mergekit]"]
    by_name = group_replicates([expert("x", 0, name="first"), expert("y", 0, name="second")])
    assert unique_labels(by_name) == ["RL-Math [first]", "RL-Math [second]"]


def test_a_studys_mixed_run_on_its_own_domains_is_rl_multi():
    """A user's domains: the study's mixed run is still RL-Multi; a hand-made partial mix is RL-Mix(...)."""
    study_mixed = RunRecord("a", "rl", name="five-s0-rl-mixed", domains=("math", "sort"), study="five")
    by_hand = RunRecord("b", "rl", name="rl-math-sort", domains=("math", "sort"))
    paper_four = RunRecord("c", "rl", name="mine", domains=("math", "code", "science", "if"))
    assert [r.label for r in (study_mixed, by_hand, paper_four)] == [
        "RL-Multi",
        "RL-Mix(Math+sort)",
        "RL-Multi",
    ]
