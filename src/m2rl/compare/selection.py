"""Which runs `m2rl compare` compares, and where it writes.

No arguments: the latest study (the `study` of the newest evaluated run that records one); `--study
NAME`: that study; `--all`, or runs named on the command line. Every scope has a folder of its own,
so one comparison never replaces another's: a study's seeds `<runs>/<study>-s0-s1-compare/` (what
`m2rl pipeline` writes for its seeds too), every evaluated run `<runs>/all-compare/`, runs named
`<runs>/compare-<hash of their ids>/`. The latest of a study's folders is also reachable as
`<runs>/<study>-compare` (a link), and the latest of the others as `<runs>/compare`. A run name that
several runs share is an error listing them (ids, studies, seeds), never a silent pick.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from m2rl.compare.manifests import evaluated_runs
from m2rl.errors import UserError
from m2rl.ledger import Ledger, Run

EXPLICIT_FOLDER = "compare"  # the link to the latest comparison of named runs or of --all
ALL_FOLDER = "all-compare"


def study_folder(study: str) -> str:
    """The link to a study's latest comparison: `<study>-compare`."""
    return f"{study}-compare"


def scope_folder(study: str, runs: Sequence[Run]) -> str:
    """A study's comparison of these runs' seeds: `<study>-s0-s1-compare` (`<study>-all-seeds-compare`
    where some run records no seed)."""
    seeds = {r.manifest.get("seed") for r in runs}
    if None in seeds:
        return f"{study}-all-seeds-compare"
    return f"{study}-{'-'.join(f's{seed}' for seed in sorted(seeds))}-compare"


def named_folder(runs: Sequence[Run]) -> str:
    """The comparison of these runs (in any order): `compare-<8 hex digits of their ids>`."""
    digest = hashlib.sha256("\n".join(sorted(r.id for r in runs)).encode()).hexdigest()[:8]
    return f"{EXPLICIT_FOLDER}-{digest}"


@dataclass
class Selection:
    """The runs to compare, the folder for the outputs, the stable name linked to it, and what the
    choice left out."""

    runs: list[Run]
    out_dir: Path
    study: str | None = None
    notes: list[str] = field(default_factory=list)
    latest: Path | None = None  # a link that names the latest comparison of this kind


def _describe(run: Run) -> str:
    m = run.manifest
    seed = "-" if m.get("seed") is None else m["seed"]
    return f"{run.id} (study {m.get('study') or '-'}, seed {seed}, created {m.get('created', '?')})"


def resolve_run(ledger: Ledger, ref: str) -> Run:
    """A run by path, id, unique id prefix or name; a name that several runs share is an error."""
    same_name = [r for r in ledger.runs() if r.name == ref]
    if len(same_name) > 1:
        listed = "; ".join(_describe(r) for r in same_name)
        raise UserError(f"run name {ref!r} is ambiguous ({len(same_name)} runs): {listed}; pass an id")
    return same_name[0] if same_name else ledger.get(ref)


def _study(run: Run) -> str | None:
    return run.manifest.get("study") or None


def select_runs(
    ledger: Ledger, refs: Sequence[str] = (), study: str | None = None, all_runs: bool = False
) -> Selection:
    """The runs of one study (default: the latest), every evaluated run, or the named runs."""
    if sum((bool(refs), study is not None, all_runs)) > 1:
        raise UserError("name runs, or pass --study NAME, or --all: one of them")
    root = ledger.root
    if refs:
        named = [resolve_run(ledger, ref) for ref in refs]
        return Selection(named, root / named_folder(named), latest=root / EXPLICIT_FOLDER)
    evaluated = evaluated_runs(ledger)
    if not evaluated:
        raise UserError(f"no evaluated runs under {root}: run `m2rl eval RUN` first")
    if all_runs:
        return Selection(evaluated, root / ALL_FOLDER, latest=root / EXPLICIT_FOLDER)
    studies = [s for s in dict.fromkeys(_study(r) for r in reversed(evaluated)) if s is not None]
    if study is None:
        if not studies:
            return Selection(
                evaluated,
                root / ALL_FOLDER,
                notes=[
                    "no evaluated run here records a study (runs made outside `m2rl pipeline` or by an "
                    "older m2rl): comparing every evaluated run; name runs to choose"
                ],
                latest=root / EXPLICIT_FOLDER,
            )
        study = studies[0]
    chosen = [r for r in evaluated if _study(r) == study]
    if not chosen:
        known = ", ".join(studies) or "none"
        raise UserError(f"no evaluated runs of study {study!r} under {root} (studies: {known})")
    notes = []
    others = len(evaluated) - len(chosen)
    if others:
        notes.append(
            f"study {study}: {others} other evaluated run(s) under {root} left out (--all compares them)"
        )
    return Selection(chosen, root / scope_folder(study, chosen), study, notes, root / study_folder(study))
