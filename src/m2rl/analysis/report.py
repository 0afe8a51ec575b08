"""The analysis as analysis.json, analysis.md and rich tables; the last two are rendered from the first,
so a reused run prints what it wrote."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from m2rl.analysis.consistency import ALL_DOMAINS
from m2rl.analysis.figures import write_figures
from m2rl.analysis.runner import Analysis
from m2rl.compare.records import DOMAIN_LABELS
from m2rl.folders import REPORT_NAME

SMALL_MODEL = 100_000_000  # below this many weights the report says what a small model cannot show
PAIR_HEADERS = ["pair", "Jaccard", "random", "cosine", "projected", "sign conflict"]
JUDGE_HEADERS = ["model", "domain", "mode", "accuracy", "balanced", "parsed", "trajectories"]

METHOD = """\
- **Weight-update geometry** (per lineage, streamed tensor by tensor in float64): the task vector
  t = theta_RL - theta_SFT of each RL run; a weight changed if |w_RL - w_SFT| > eta * max(|w_RL|,
  |w_SFT|) (strictly). Jaccard = |A and B| / |A or B| of two changed masks; beside it the overlap two
  independent masks of the same rates would have, pq / (p + q - pq). Cosines exact (streamed dot
  products) and after a seeded {dim}-d projection with orthonormal rows (blocks of {block} weights
  through random signs and a Walsh-Hadamard transform, a fixed choice of {dim} of its rows; see
  m2rl.analysis.projection): for independent vectors the projected cosine spreads by about
  1/sqrt({dim}) = {spread:.3f} around the exact one. Sign conflict: of the weights both changed, the
  share moved in opposite directions (what TIES resolves).
- **Skill consistency**: per test item, g_m = max(acc_m - acc_SFT, 0), union gain = max over the
  single-domain experts, consistency = cos(g_union, g_m); mean over seeds; 95% interval from
  resampling items (and seeds, crossed) with the cosine recomputed per draw; `-` where no item gained.
- **Policy neighbourhoods**: KL(pi_B || pi_multi) on domain A's eval prompts ({prompts} per domain,
  {samples} samples each, up to {tokens} tokens) sampled from expert B at temperature 1 with no top-p
  (unbiased); per sequence = mean of the summed log-ratio, per token = its sum over all tokens /
  number of tokens; ± one standard error over prompts. Δ: the mixed run's score minus B's on A.
- **Self-verification**: each model judges its own eval responses of its own domains ({judged} per
  domain, half verified correct where there are enough) from a fixed prompt, `outcome` (problem and
  final answer) or `process` (the whole response); the last `Verdict: correct|incorrect` line is the
  verdict, none counts as wrong; accuracy against the verifier with a Wilson 95% interval."""


# -- the JSON ----------------------------------------------------------------------------------------
def to_json(analysis: Analysis, study: str | None) -> dict[str, Any]:
    """Every number of the analysis (NaN where undefined: `_finite` makes it null)."""
    return {
        "study": study,
        "settings": analysis.settings,
        "lineages": [
            {
                "seed": lin.seed,
                "models": lin.models,
                "geometry": None if lin.geometry is None else lin.geometry.to_json(),
                "neighbourhoods": None if lin.neighbourhoods is None else lin.neighbourhoods.to_json(),
                "self_verification": [
                    {"model": r.model, "domain": r.domain, "mode": r.mode, **r.score.to_json()}
                    for r in lin.judges
                ],
            }
            for lin in analysis.lineages
        ],
        "skill_consistency": [r.to_json() for r in analysis.consistency],
        "seconds": analysis.seconds,
        "notes": analysis.notes,
    }


def _finite(value: Any) -> Any:
    """`value` with every NaN float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# -- cells and rows, shared by the Markdown and the terminal ------------------------------------------
def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _small(value: float | None) -> str:
    """A KL value: fixed point, or three significant digits when it is tiny."""
    if value is None:
        return "-"
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3g}"


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _interval(ci: list[float] | None, digits: int = 2) -> str:
    return "" if ci is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _domain(domain: str) -> str:
    return "all domains" if domain == ALL_DOMAINS else DOMAIN_LABELS.get(domain, domain)


def _model_rows(g: dict) -> list[list[str]]:
    return [[m, _pct(g["fraction_changed"][i], 2), f"{g['norm'][i]:.4g}"] for i, m in enumerate(g["models"])]


def _pair_rows(g: dict) -> list[list[str]]:
    labels = g["models"]
    return [
        [
            f"{labels[i]} / {labels[j]}",
            _number(g["jaccard"][i][j]),
            _number(g["jaccard_random"][i][j]),
            _number(g["cosine"][i][j]),
            _number(g["projected_cosine"][i][j]),
            _pct(g["sign_conflict"][i][j]),
        ]
        for i in range(len(labels))
        for j in range(i + 1, len(labels))
    ]


def _kl_rows(kl: dict, per_sequence: bool = False, compact: bool = False) -> list[list[str]]:
    rows = []
    for domain, cells, changes in zip(kl["domains"], kl["kl"], kl["score_change_points"], strict=True):
        shown = []
        for cell, change in zip(cells, changes, strict=True):
            if cell is None:
                shown.append("-")
            elif per_sequence:
                shown.append(
                    f"{_small(cell['per_sequence'])} ± {_small(cell['per_sequence_se'])} "
                    f"({cell['mean_tokens']:.0f} tok)"
                )
            elif compact:
                delta = "" if change is None else f" Δ{change:+.1f}"
                shown.append(f"{_small(cell['per_token'])}±{_small(cell['per_token_se'])}{delta}")
            else:
                delta = "" if change is None else f" (Δ {change:+.1f})"
                shown.append(f"{_small(cell['per_token'])} ± {_small(cell['per_token_se'])}{delta}")
        rows.append([_domain(domain) if compact else f"{_domain(domain)} prompts", *shown])
    return rows


def _judge_rows(judges: list[dict]) -> list[list[str]]:
    return [
        [
            r["model"],
            _domain(r["domain"]),
            r["mode"],
            _pct(r["accuracy"])
            + ("" if r["ci95"] is None else f" [{100 * r['ci95'][0]:.0f}, {100 * r['ci95'][1]:.0f}]"),
            _pct(r["balanced_accuracy"]),
            _pct(r["parse_rate"], 0),
            f"{r['n']} ({r['verified_correct']} correct)",
        ]
        for r in judges
    ]


def _consistency_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    by_key = {(r["model"], r["domain"]): r for r in rows}
    cells = [
        [
            model,
            *[
                _number(by_key[model, d]["value"]) + _interval(by_key[model, d]["ci95"])
                if (model, d) in by_key
                else "-"
                for d in domains
            ],
        ]
        for model in dict.fromkeys(r["model"] for r in rows)
    ]
    return ["model", *[_domain(d) for d in domains]], cells


def scale_note(payload: dict[str, Any]) -> str:
    """What the analysed models' size lets the numbers say."""
    sizes = [lin["geometry"]["numel"] for lin in payload["lineages"] if lin["geometry"] is not None]
    if not sizes or max(sizes) >= SMALL_MODEL:
        return (
            "Self-verification is the paper's Figure 7 setting here; read each judge's accuracy beside its "
            "parse rate."
        )
    return (
        f"These are {max(sizes) / 1e6:.1f}M-parameter models trained for minutes on procedural data. The "
        "geometry, consistency and KL numbers are exact computations on them, but what they say about why "
        "mixing matches merging at 4B parameters is limited: a few dozen GRPO steps on a 1M-parameter "
        "float32 model, per-item gains resting on K samples, and KL values of a 1M-parameter policy. "
        "Self-verification measures mechanics, not insight: the tiny model was never trained to follow a "
        "judging prompt, so its replies rarely carry a verdict (see the parse rate) and its accuracy says "
        "nothing about judging skill; on the paper preset this table is the paper's Figure 7."
    )


# -- Markdown ---------------------------------------------------------------------------------------
def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows])


def to_markdown(payload: dict[str, Any], figures: list[str]) -> str:
    """The whole analysis as a Markdown document; `figures`: the file names in figures/."""
    lineages = payload["lineages"]
    several = len(lineages) > 1
    study = payload["study"]
    models = sum(len(lin["models"]) for lin in lineages)
    seeds = ", ".join(str(lin["seed"]) for lin in lineages)
    out = [
        "# m2rl analyze: why mixing works, measured",
        "",
        f"{models} models in {len(lineages)} lineage(s) (seed {seeds})"
        + (f" of study {study}. " if study else ". ")
        + scale_note(payload),
    ]

    def figure(stem: str, lineage: dict | None = None) -> list[str]:
        suffix = f"_s{lineage['seed']}" if several and lineage and lineage["seed"] is not None else ""
        name = f"{stem}{suffix}.png"
        return ["", f"![{stem}](figures/{name})"] if name in figures else []

    def title(lineage: dict) -> str:
        return f" (seed {lineage['seed']})" if several else ""

    for lineage in lineages:
        g = lineage["geometry"]
        if g is None:
            continue
        out += ["", f"## Weight-update geometry{title(lineage)}", ""]
        out += [
            f"{g['numel']:,} weights, checkpoints in {g['dtype']}; the threshold reads as {g['threshold_reads_as']}."
        ]
        out += ["", _md_table(["model", "weights changed", "task-vector norm"], _model_rows(g))]
        if len(g["models"]) > 1:
            out += ["", _md_table(PAIR_HEADERS, _pair_rows(g))]
        layers = [
            [
                layer,
                *[
                    f"{_pct(g['layer_fraction_changed'][i][j], 2)} / {g['layer_norm'][i][j]:.3g}"
                    for i in range(len(g["models"]))
                ],
            ]
            for j, layer in enumerate(g["layers"])
        ]
        out += ["", "Per layer: share of weights changed / task-vector norm.", ""]
        out += [_md_table(["layer", *g["models"]], layers)]
        out += figure("jaccard", lineage) + figure("cosine", lineage)
    rows = payload["skill_consistency"]
    if rows:
        headers, cells = _consistency_table(rows)
        gained = {r["domain"]: f"{_domain(r['domain'])} {r['items_gained']}/{r['n_items']}" for r in rows}
        out += [
            "",
            "## Skill consistency: cos(g_union, g_model) [95% interval]",
            "",
            _md_table(headers, cells),
        ]
        out += ["", f"Test items where some expert gained over SFT: {', '.join(gained.values())}."]
        out += figure("consistency")
    for lineage in lineages:
        kl = lineage["neighbourhoods"]
        if kl is None:
            continue
        out += ["", f"## Policy neighbourhoods: KL(expert ‖ {kl['reference']}){title(lineage)}", ""]
        out += [
            "Per token, nats ± one standard error over prompts (Δ: the mixed run minus the expert, points):"
        ]
        out += ["", _md_table(["", *kl["experts"]], _kl_rows(kl))]
        out += ["", "Per sequence (summed over the response), nats:", ""]
        out += [_md_table(["", *kl["experts"]], _kl_rows(kl, per_sequence=True))]
        out += figure("kl", lineage)
    for lineage in lineages:
        if lineage["self_verification"]:
            out += ["", f"## Self-verification: judge accuracy against the verifier{title(lineage)}", ""]
            out += [_md_table(JUDGE_HEADERS, _judge_rows(lineage["self_verification"]))]
            out += figure("judge", lineage)
    settings = payload["settings"]
    out += [
        "",
        "## Method",
        "",
        METHOD.format(
            dim=settings["projection_dim"],
            block=settings["projection_block"],
            spread=1 / math.sqrt(settings["projection_dim"]),
            prompts=settings["neighbourhoods"]["prompts"],
            samples=settings["neighbourhoods"]["samples"],
            tokens=settings["neighbourhoods"]["max_new_tokens"],
            judged=settings["self_verification"]["trajectories"],
        ),
        "",
        "Time: "
        + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in payload["seconds"].items())
        + ".",
    ]
    out += [f"\n> note: {note}" for note in payload["notes"]]
    return "\n".join(out) + "\n"


def write_report(analysis: Analysis, folder: Path, study: str | None) -> list[Path]:
    """analysis.json, analysis.md and figures/*.png into `folder`."""
    payload = _finite(to_json(analysis, study))
    figures = write_figures(analysis, folder / "figures")
    (folder / "analysis.json").write_text(json.dumps(payload, indent=2, allow_nan=False))
    (folder / REPORT_NAME).write_text(to_markdown(payload, [p.name for p in figures]))
    return [folder / REPORT_NAME, folder / "analysis.json", *figures]


# -- the terminal -----------------------------------------------------------------------------------
def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # labels such as `Merge (TIES) [ties]` are not markup
    return table


def _judge_summary(judges: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Per model: accuracy in each mode over its domains' trajectories, and the share of parsed verdicts."""
    modes = list(dict.fromkeys(r["mode"] for r in judges))
    rows = []
    for model in dict.fromkeys(r["model"] for r in judges):
        mine = [r for r in judges if r["model"] == model]
        cells = []
        for mode in modes:
            counted = [r for r in mine if r["mode"] == mode]
            n = sum(r["n"] for r in counted)
            right = sum(r["accuracy"] * r["n"] for r in counted if r["accuracy"] is not None)
            cells.append(_pct(right / n if n else None))
        parsed = sum((r["parse_rate"] or 0) * r["n"] for r in mine) / max(sum(r["n"] for r in mine), 1)
        domains = ", ".join(_domain(d) for d in dict.fromkeys(r["domain"] for r in mine))
        rows.append([model, domains, *cells, _pct(parsed, 0)])
    return ["model", "domains", *modes, "parsed"], rows


def rich_tables(payload: dict[str, Any]) -> RenderableType:
    """The headline tables for the terminal, from analysis.json (analysis.md has every number)."""
    lineages = payload["lineages"]
    parts: list[RenderableType] = []
    for lineage in lineages:
        seed = f" (seed {lineage['seed']})" if len(lineages) > 1 else ""
        g = lineage["geometry"]
        if g is not None:
            parts.append(
                Text(
                    f"task vectors{seed}: {g['numel']:,} weights in {g['dtype']}; changed = {g['threshold_reads_as']}"
                )
            )
            parts.append(_table("", ["model", "changed", "norm"], _model_rows(g)))
            if len(g["models"]) > 1:
                title = (
                    f"pairs of task vectors (projected: cosine after the {g['projection_dim']}-d projection)"
                )
                parts.append(_table(title, PAIR_HEADERS, _pair_rows(g)))
    if payload["skill_consistency"]:
        rows = [
            [
                r["model"],
                _domain(r["domain"]),
                _number(r["value"]) + _interval(r["ci95"]),
                f"{r['items_gained']}/{r['n_items']}",
            ]
            for r in payload["skill_consistency"]
        ]
        headers = ["model", "domain", "cos(g_union, g) [95%]", "items gained"]
        parts.append(_table("skill consistency", headers, rows))
    for lineage in lineages:
        seed = f" (seed {lineage['seed']})" if len(lineages) > 1 else ""
        kl = lineage["neighbourhoods"]
        if kl is not None:
            rows = _kl_rows(kl, compact=True)
            title = f"KL(expert || {kl['reference']}) per token on each domain's prompts, nats{seed}"
            parts.append(_table(title, ["prompts", *kl["experts"]], rows))
        if lineage["self_verification"]:
            headers, rows = _judge_summary(lineage["self_verification"])
            parts.append(_table(f"self-verification: judge accuracy vs the verifier{seed}", headers, rows))
    return Group(*parts)
