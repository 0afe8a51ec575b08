"""The paper's analyses of why mixing matches merging, computed from a study's runs (`m2rl analyze`).

One module per analysis: `geometry` (task-vector masks, overlaps, cosines, sign conflicts, streamed
tensor by tensor, with `projection` for the 256-d random projection), `consistency` (skill
consistency from per-item eval results), `neighbourhoods` (KL between an expert's and the mixed
run's policies, with `scoring` for batched log-probs), `self_verification` (models as generative
judges); `lineage` groups the runs per seed, `runner` runs the analyses, `report` and `figures`
write analysis.md, analysis.json and the PNG figures.
"""

from __future__ import annotations

from m2rl.folders import REPORT_NAME, analysis_folder

__all__ = ["REPORT_NAME", "analysis_folder"]
