"""Folders m2rl writes under a runs root beside the run directories, named here so that the modules
that write them and the ones that link to them agree without importing each other (compare links
the analysis reports that `m2rl analyze` writes)."""

from __future__ import annotations

REPORT_NAME = "analysis.md"


def analysis_folder(study: str, seed: int | None = None) -> str:
    """The folder under the runs root that holds a study's latest analysis: `<study>-analysis`, or
    `<study>-s<seed>-analysis` for one seed of a study with several."""
    return f"{study}-analysis" if seed is None else f"{study}-s{seed}-analysis"
