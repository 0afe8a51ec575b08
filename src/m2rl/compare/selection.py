"""Which runs `m2rl compare` compares, and where it writes.

No arguments: the latest study (the `study` of the newest evaluated run that records one), written to
`<runs>/<study>-compare/`, the folder `m2rl pipeline` writes too. `--study NAME`: that study, same
folder scheme. `--all`, or runs named on the command line: `<runs>/compare/`. A run name that several
runs share is an error listing them (ids, studies, seeds), never a silent pick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from m2rl.compare.manifests import evaluated_runs
from m2rl.errors import UserError
from m2rl.ledger import Ledger, Run

EXPLICIT_FOLDER = "compare"


def study_folder(study: str) -> str:
    """The compare folder of a study: `<study>-compare`."""
    return f"{study}-compare"


@dataclass
class Selection:
    """The runs to compare, the folder for the outputs, and what the choice left out."""

    runs: list[Run]
    out_dir: Path
    study: str | None = None
    notes: list[str] = field(default_factory=list)


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
        return Selection([resolve_run(ledger, ref) for ref in refs], root / EXPLICIT_FOLDER)
    evaluated = evaluated_runs(ledger)
    if not evaluated:
        raise UserError(f"no evaluated runs under {root}: run `m2rl eval RUN` first")
    if all_runs:
        return Selection(evaluated, root / EXPLICIT_FOLDER)
    studies = [s for s in dict.fromkeys(_study(r) for r in reversed(evaluated)) if s is not None]
    if study is None:
        if not studies:
            return Selection(
                evaluated,
                root / EXPLICIT_FOLDER,
                notes=[
                    "no evaluated run here records a study (runs made outside `m2rl pipeline` or by an "
                    "older m2rl): comparing every evaluated run; name runs to choose"
                ],
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
    return Selection(chosen, root / study_folder(study), study, notes)
