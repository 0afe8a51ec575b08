"""`m2rl compare` scoped to a study: the latest by default, --study, --all, named runs; one folder scheme."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from m2rl.cli import app
from m2rl.compare import select_runs
from m2rl.compare.core import build_comparison
from m2rl.compare.manifests import records_from_runs
from m2rl.errors import UserError
from m2rl.ledger import Ledger
from study_builder import build_study, write_eval

from cli_helpers import m2rl


def unrelated_run(root, name: str = "test-rl-science"):
    """A 3-step test run outside any study that scores highest on science."""
    run = Ledger(root).create("rl", name, {})
    run.update(status="completed", domains=["science"], device_hours=0.001)
    write_eval(
        run, {"math": 0.0, "code": 0.0, "science": 0.6, "if": 0.0}, seed=9, n_items=48, seed_effect=0.0
    )
    return run


def comparison_of(runs):
    return build_comparison(*records_from_runs(runs), bootstrap_samples=200)


def compare(root, *args: str):
    result = CliRunner().invoke(
        app, ["compare", "--runs-dir", str(root), "--bootstrap-samples", "200", *args]
    )
    return result


def test_compare_without_arguments_takes_the_latest_study_and_nothing_else(tmp_path):
    root = tmp_path / "runs"
    build_study(root, name="old", seeds=(0,))
    stray = unrelated_run(root)
    new = build_study(root, name="new", seeds=(0,))
    result = compare(root)
    assert result.exit_code == 0, result.output
    data = json.loads((root / "new-compare" / "compare.json").read_text())
    compared = {run["id"] for row in data["rows"] for run in row["runs"]}
    assert compared == {run.id for run in new.runs.values()}
    assert stray.id not in compared and data["studies"] == ["new"]
    synergy = {s["domain"]: s["best_expert"] for s in data["synergy"]}
    assert synergy["science"] != "RL-Science [test-rl-science]"
    said = " ".join(result.output.split())
    assert "study new: 9 other evaluated run(s)" in said and "(--all compares them)" in said
    assert not (root / "compare").exists() and not (root / "old-compare").exists()


def test_study_and_all_options_choose_their_runs_and_folders(tmp_path):
    root = tmp_path / "runs"
    old = build_study(root, name="old", seeds=(0,))
    build_study(root, name="new", seeds=(0,))
    unrelated_run(root)
    result = compare(root, "--study", "old")
    assert result.exit_code == 0, result.output
    data = json.loads((root / "old-compare" / "compare.json").read_text())
    assert {run["id"] for row in data["rows"] for run in row["runs"]} == {r.id for r in old.runs.values()}

    assert (root / "old-compare").resolve() == root / "old-s0-compare"  # the link to its latest
    everything = select_runs(Ledger(root), all_runs=True)
    assert everything.out_dir == Ledger(root).root / "all-compare"
    assert everything.latest == Ledger(root).root / "compare"
    labels = [row.label for row in comparison_of(everything.runs).rows]
    assert "RL-Math [old]" in labels and "RL-Math [new]" in labels
    assert len(labels) == len(set(labels)) == 2 * 8 + 1  # every label once: two studies and the stray run


def test_named_runs_are_compared_and_written_to_the_compare_folder(tmp_path):
    root = tmp_path / "runs"
    study = build_study(root, name="s", seeds=(0,))
    names = [study.runs[role, 0].name for role in ("sft", "rl-math", "rl-mixed")]
    selection = select_runs(Ledger(root), names)
    assert selection.out_dir.name.startswith("compare-") and selection.latest == Ledger(root).root / "compare"
    assert select_runs(Ledger(root), list(reversed(names))).out_dir == selection.out_dir  # any order
    assert select_runs(Ledger(root), names[:2]).out_dir != selection.out_dir
    assert [row.label for row in comparison_of(selection.runs).rows] == ["SFT", "RL-Math", "RL-Multi"]


def test_an_ambiguous_run_name_is_an_error_listing_every_candidate(tmp_path):
    root = tmp_path / "runs"
    first, second = unrelated_run(root, "probe"), unrelated_run(root, "probe")
    with pytest.raises(UserError, match="ambiguous") as error:
        select_runs(Ledger(root), ["probe"])
    assert first.id in str(error.value) and second.id in str(error.value)
    assert select_runs(Ledger(root), [first.id]).runs[0].id == first.id


def test_wrong_scopes_are_errors_that_say_what_exists(tmp_path):
    root = tmp_path / "runs"
    build_study(root, name="s1", seeds=(0,))
    with pytest.raises(UserError, match=r"no evaluated runs of study 'nope'.*studies: s1"):
        select_runs(Ledger(root), study="nope")
    with pytest.raises(UserError, match="one of them"):
        select_runs(Ledger(root), ["x"], all_runs=True)
    with pytest.raises(UserError, match="no evaluated runs"):
        select_runs(Ledger(tmp_path / "empty"))


def test_runs_without_a_study_are_compared_together_with_a_note(tmp_path):
    root = tmp_path / "runs"
    unrelated_run(root, "a")
    unrelated_run(root, "b")
    selection = select_runs(Ledger(root))
    assert len(selection.runs) == 2 and selection.out_dir == Ledger(root).root / "all-compare"
    assert "no evaluated run here records a study" in selection.notes[0]


def test_each_scope_keeps_its_own_folder_and_the_stable_name_links_the_latest(tmp_path):
    """Seed 0, then seed 1, then both, then seed 0 again (the demo re-run): no comparison replaces
    another's, `<study>-compare` names the latest, and the command says what it wrote where."""
    root = tmp_path / "runs"
    build_study(root, name="s", seeds=(0, 1))
    ledger = Ledger(root)
    seed0 = [r for r in ledger.runs() if r.manifest.get("seed") == 0]
    seed1 = [r for r in ledger.runs() if r.manifest.get("seed") == 1]
    from m2rl.compare import compare_runs
    from m2rl.compare.selection import scope_folder

    for runs in (seed0, seed1):
        compare_runs(runs, root / scope_folder("s", runs), bootstrap_samples=200, latest=root / "s-compare")
    result = m2rl("compare", "--bootstrap-samples", "200", runs_dir=root)  # the latest study, both seeds
    assert result.returncode == 0, result.stderr
    assert f"wrote {root / 's-s0-s1-compare'}/" in result.stdout and "s-compare links to it" in result.stdout
    compare_runs(seed0, root / scope_folder("s", seed0), bootstrap_samples=200, latest=root / "s-compare")
    folders = sorted(p.name for p in root.glob("s-*compare"))
    assert folders == ["s-compare", "s-s0-compare", "s-s0-s1-compare", "s-s1-compare"]
    assert (root / "s-compare").is_symlink() and (root / "s-compare").resolve() == root / "s-s0-compare"
    both = json.loads((root / "s-s0-s1-compare" / "compare.json").read_text())
    assert {run["seed"] for row in both["rows"] for run in row["runs"]} == {0, 1}
    markdown = (root / "s-s0-s1-compare" / "compare.md").read_text()  # no analysis made: no dead link
    assert "not made yet: `m2rl analyze s` writes them" in markdown and "](../s-analysis" not in markdown


def test_an_older_real_folder_under_the_stable_name_is_moved_aside_not_lost(tmp_path):
    root = tmp_path / "runs"
    build_study(root, name="s", seeds=(0,))
    (root / "s-compare").mkdir(parents=True)
    (root / "s-compare" / "compare.md").write_text("an older comparison")
    result = compare(root)
    assert result.exit_code == 0, result.output
    (aside,) = root.glob("s-compare-before-*")
    assert (aside / "compare.md").read_text() == "an older comparison"
    assert (root / "s-compare").resolve() == root / "s-s0-compare"
