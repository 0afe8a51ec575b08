"""The paper's analyses of why mixing matches merging, computed from a study's runs (`m2rl analyze`).

One module per analysis: `geometry` (task-vector masks, overlaps, cosines, sign conflicts, streamed
tensor by tensor, with `projection` for the 256-d random projection), `consistency` (skill
consistency from per-item eval results), `neighbourhoods` (KL between an expert's and the mixed
run's policies, with `scoring` for batched log-probs), `self_verification` (models as generative
judges); `lineage` groups the runs per seed, `runner` runs the analyses, `report` and `figures`
write analysis.md, analysis.json and the PNG figures.
"""

from __future__ import annotations

REPORT_NAME = "analysis.md"


def analysis_folder(study: str, seed: int | None = None) -> str:
    """The folder under the runs root that holds a study's latest analysis: `<study>-analysis`, or
    `<study>-s<seed>-analysis` for one seed of a study with several."""
    return f"{study}-analysis" if seed is None else f"{study}-s{seed}-analysis"
