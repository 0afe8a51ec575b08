"""Tuned merges: a merge method's parameters searched on validation items, the search counted in its cost.

A tuned merge (`m2rl merge --search N`, `study.merge_search`) runs N trials. Each merges the experts
with suggested parameters into a scratch folder and samples the merged model on the validation items of
every objective domain (the eval's sampling settings, K = `eval.k`), each response scored by its item's
verifier; the objective is the mean over domains of the mean reward. The best trial's parameters
(the first of equal ones) make the run's model, merged again into `<run>/model`.

Sampler: Optuna's TPE, seeded. mergekit-evolve tunes many per-layer weights with CMA-ES, which needs a
population of tens of trials per generation; a method here has one to three scalar parameters, which
differ by method (they are conditional on it), and every trial costs a merge and an eval, so a budget
is a handful of trials: TPE models the good and the bad region from few observations, whatever the
parameters. Trial 0 is the method's configured parameters, so on the validation items the tuned merge
scores at least what the default does. The first third of the trials (two at least) are TPE's random
start-up draws. Each trial's sampler is seeded by (seed, trial number), so a resumed search suggests
what an uninterrupted one would: with the eval's seeded sampling the search is deterministic for a seed.

Validation items (`validation_items`): for built-in data, the `rl` split's prompts that follow the RL
runs' own (`generate` draws a split's items in a fixed order, so `data.sizes.rl + n` items extend the
training prompts by n): the same generator and difficulty as training, prompts no expert trained on, and
never a test item, since a problem's key hash picks its one split. A selection of the training prompts
would reward a merge for what the experts memorised; another seed's draw of the split would share
prompts with them. File and Nemotron data have no unused rows to draw: a seeded selection of a domain's
RL rows. Either way every validation item is checked against every test benchmark's items, by id and by
prompt text, before the run exists; an overlap is refused.

Cost: the search runs inside the tuned merge run's attempt, so the ledger's device-hours and process
CPU time of the run (what compare's cost rows read) include every trial; each trial's own wall and CPU
seconds are kept in `<run>/search/trials.jsonl` and summed in the manifest's `merge.search`.

Resumable: every finished trial is one line of that file, and a new attempt of the run adds them to the
study again (`add_trial`) and goes on from the next trial.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from m2rl.console import console
from m2rl.data.files import file_domains
from m2rl.data.load import rl_samples
from m2rl.errors import UserError
from m2rl.evaluate.benchmarks import load_items
from m2rl.evaluate.runner import evaluate_items
from m2rl.evaluate.settings import EvalSettings
from m2rl.ledger import Run, process_tree_cpu_seconds
from m2rl.merge.methods import MergeMethod, resolve_method
from m2rl.merge.run import merge_models
from m2rl.specs import MergeJob, MergeSearch

SEARCH_SUFFIX = (
    "+search"  # a tuned merge's method in its manifest (`paper_ties+search`): its own row in compare
)
TRIALS_FILE = Path("search") / "trials.jsonl"
VALIDATION_FILE = Path("search") / "validation.jsonl"


@dataclass(frozen=True)
class Range:
    """The interval a parameter is searched in (on a log scale where `log`)."""

    low: float
    high: float
    log: bool = False

    def widened(self, value: float) -> Range:
        """The range stretched to hold the method's configured value (trial 0)."""
        return Range(min(self.low, float(value)), max(self.high, float(value)), self.log)

    def distribution(self):
        # lazy: optuna (heavy), only where a merge search runs
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log)


# What each method parameter is searched in. A `weight` shared by every expert is not searched: a
# normalised merge divides it out, and an unnormalised one scales like `lambda`.
SPACE: dict[str, Range] = {
    "density": Range(0.05, 1.0),  # share of each task vector kept
    "lambda": Range(0.2, 2.0),  # scale of the merged task vector
    "drop_rate": Range(0.0, 0.9),  # DARE's drop probability
    "gamma": Range(0.0, 0.1),  # breadcrumbs: the largest share dropped
    "select_topk": Range(0.05, 1.0),  # SCE: the share of high-variance entries kept
    "r": Range(0.0, 1.0),  # RAM+: how much more an expert's unique updates count
    "alpha": Range(0.0, 1.0),  # RAM+: the cap of the shared / unique ratio
    "epsilon": Range(1e-7, 1e-3, log=True),  # RAM: the smallest |delta| that counts as an update
}
# Where an algorithm gives a parameter another meaning or a joint constraint.
ALGORITHM_SPACE: dict[str, dict[str, Range]] = {
    # DELLA: density +/- epsilon must stay inside (0, 1)
    "della": {"density": Range(0.2, 0.8), "epsilon": Range(0.0, 0.15)},
}


def search_space(method: MergeMethod, names: Sequence[str] = ()) -> dict[str, Range]:
    """The searched parameters of `method` and their ranges: `names`, or every searchable one."""
    space = SPACE | ALGORITHM_SPACE.get(method.algorithm, {})
    searchable = [name for name in method.params if name in space]
    chosen = list(dict.fromkeys(names)) or searchable
    unknown = [name for name in chosen if name not in searchable]
    if unknown or not chosen:
        what = f"cannot search {', '.join(unknown)}" if unknown else "has no parameter to search"
        raise UserError(f"merge method {method.name} {what}; searchable: {', '.join(searchable) or 'none'}")
    return {name: space[name].widened(method.params[name]) for name in chosen}


# -- validation items ------------------------------------------------------------------------------
def _prompt_text(item: dict[str, Any]) -> str:
    """A prompt's words, whitespace-normalised (what makes two items the same question)."""
    prompt = item.get("prompt")
    turns = prompt if isinstance(prompt, list) else [{"content": prompt}]
    return "\n".join(" ".join(str(turn.get("content", "")).split()) for turn in turns)


def held_out_keys(search: MergeSearch) -> tuple[set[str], set[str]]:
    """(ids, prompt texts) of every item of every test benchmark of the search's eval section."""
    settings = EvalSettings.of(search.eval, search.verifiers, 0)
    ids: set[str] = set()
    prompts: set[str] = set()
    for bench in settings.benchmarks:
        for item in load_items(bench):
            ids.add(str(item["id"]))
            prompts.add(_prompt_text(item))
    return ids, prompts


def _builtin_tail(data: DictConfig, domain: str, used: int, count: int) -> list[dict[str, Any]]:
    """The `count` built-in `rl` items of `domain` that follow the `used` training prompts."""
    extended = OmegaConf.create(OmegaConf.to_container(data, resolve=True))
    OmegaConf.update(extended, "sizes.rl", {domain: used + count}, merge=False)
    try:
        return rl_samples(extended, [domain])[domain][used:]
    except RuntimeError as exc:  # the generator's problem space is used up
        raise UserError(
            f"merge search: {count} validation items of {domain} do not fit the built-in rl split ({exc}); "
            "ask for fewer items per domain"
        ) from None


def validation_items(search: MergeSearch) -> dict[str, list[dict[str, Any]]]:
    """`search.items_per_domain` validation items per objective domain, from the training distribution
    and disjoint from every test item (UserError naming an overlap)."""
    data = OmegaConf.create(search.data)
    training = rl_samples(data, list(search.domains))
    backed = file_domains(data)
    count = search.items_per_domain
    items: dict[str, list[dict[str, Any]]] = {}
    for domain in search.domains:
        rows = training[domain]
        if data.get("name") == "builtin" and domain not in backed:
            items[domain] = _builtin_tail(data, domain, len(rows), count)
        elif len(rows) < count:
            raise UserError(
                f"merge search: {domain} has {len(rows)} RL rows, fewer than {count} validation items per domain"
            )
        else:
            items[domain] = random.Random(f"{data.get('seed', 0)}:{domain}:validation").sample(rows, count)
    ids, prompts = held_out_keys(search)
    for domain, rows in items.items():
        overlap = [row for row in rows if str(row["id"]) in ids or _prompt_text(row) in prompts]
        if overlap:
            raise UserError(
                f"merge search: {len(overlap)} of {len(rows)} validation items of {domain} are test items "
                f"(e.g. {overlap[0]['id']}); the search must not see the test sets: check eval.benchmarks "
                "and the domain's RL rows"
            )
    return items


# -- the search ------------------------------------------------------------------------------------
def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of one trial: a function of the search's seed and the trial number only."""
    return int(hashlib.sha256(f"{seed}:merge-search:{number}".encode()).hexdigest()[:8], 16)


def read_trials(run_dir: Path) -> list[dict[str, Any]]:
    """The finished trials a run's search saved, in order (a line cut short by a kill is dropped)."""
    path = run_dir / TRIALS_FILE
    if not path.is_file():
        return []
    trials = []
    for line in path.read_text().splitlines():
        try:
            trials.append(json.loads(line))
        except ValueError:
            break
    return trials


def _append(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / TRIALS_FILE, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _trial(
    spec: MergeJob,
    run: Run,
    params: dict[str, float],
    number: int,
    dirs: tuple[Path, list[Path]],
    items: dict[str, list[dict[str, Any]]],
    settings: EvalSettings,
) -> dict[str, Any]:
    """Merge with `params` into a scratch folder, score it on the validation items, time both."""
    base_dir, expert_dirs = dirs
    wall, cpu = time.perf_counter(), process_tree_cpu_seconds()
    scratch = run.path / "search" / f"trial-{number}"
    shutil.rmtree(scratch, ignore_errors=True)
    merge_models(resolve_method(spec.merge, params), base_dir, expert_dirs, scratch / "model")
    results = evaluate_items(scratch / "model", [base_dir, *expert_dirs], items, settings, spec.search.eval.k)
    shutil.rmtree(scratch)
    scores = {domain: sum(r.mean_reward for r in rows) / len(rows) for domain, rows in results.items()}
    seconds, cpu_seconds = time.perf_counter() - wall, process_tree_cpu_seconds() - cpu
    device = run.manifest["device"]
    return {
        "number": number,
        "params": params,
        "value": sum(scores.values()) / len(scores),
        "domains": scores,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        # the run's cost unit (m2rl.compare.costs): GPU wall x devices, or the CPU time on a CPU
        "device_hours": (seconds * int(device["count"]) if device["type"] == "cuda" else cpu_seconds) / 3600,
        "items": {domain: [r.id for r in rows] for domain, rows in results.items()},
    }


def _describe(record: dict[str, Any], total: int, best: dict[str, Any], name: str) -> str:
    params = " ".join(f"{k}={v:.4g}" for k, v in record["params"].items())
    return (
        f"search {name} trial {record['number'] + 1}/{total}: {params} -> {record['value']:.4f} "
        f"(best {best['value']:.4f}, trial {best['number'] + 1}; {record['seconds']:.1f} s)"
    )


def run_search(spec: MergeJob, run: Run, base_dir: Path, expert_dirs: list[Path]) -> tuple[MergeMethod, dict]:
    """Search `spec.search.trials` trials (continuing from the run's finished ones); return the method with
    the best trial's parameters and the record of the search for the manifest."""
    # lazy: optuna (heavy), only where a merge search runs
    import optuna

    search = spec.search
    assert search is not None
    method = resolve_method(spec.merge)
    space = search_space(method, search.params)
    distributions = {name: r.distribution() for name, r in space.items()}
    items = validation_items(search)
    (run.path / "search").mkdir(exist_ok=True)
    with open(run.path / VALIDATION_FILE, "w") as handle:
        for domain, rows in items.items():
            for row in rows:
                handle.write(json.dumps({"domain": domain, "id": row["id"], "prompt": row["prompt"]}) + "\n")
    settings = EvalSettings.of(search.eval, search.verifiers, spec.seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    done = read_trials(run.path)[: search.trials]
    for record in done:
        study.add_trial(
            optuna.trial.create_trial(
                params=record["params"], distributions=distributions, value=record["value"]
            )
        )
    if not done:
        study.enqueue_trial({name: float(method.params[name]) for name in space})
    startup = max(2, search.trials // 3)
    for number in range(len(done), search.trials):
        study.sampler = optuna.samplers.TPESampler(
            seed=trial_seed(spec.seed, number), n_startup_trials=startup
        )
        trial = study.ask(distributions)
        record = _trial(spec, run, dict(trial.params), number, (base_dir, expert_dirs), items, settings)
        study.tell(trial, record["value"])
        _append(run.path, record)
        done.append(record)
        line = _describe(record, search.trials, _best(done), spec.method)
        console.print(line, highlight=False, markup=False, soft_wrap=True)
        run.write_progress("merge", number + 1, search.trials, line)
        run.save()  # the attempt's time so far into the manifest: a killed search still counts it
    best = _best(done)
    summary = {
        "trials": len(done),
        "best_trial": best["number"],
        "value": best["value"],
        "default_value": done[0]["value"],
        "domains": list(search.domains),
        "space": {name: [r.low, r.high, "log" if r.log else "linear"] for name, r in space.items()},
        "validation_items": {domain: len(rows) for domain, rows in items.items()},
        "sampler": f"optuna TPE, seed {spec.seed}, {startup} start-up trials",
        "seconds": round(sum(r["seconds"] for r in done), 3),
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in done), 3),
        "device_hours": sum(r["device_hours"] for r in done),
    }
    return resolve_method(spec.merge, best["params"]), summary


def _best(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial of the highest objective, the earliest of equal ones."""
    return max(trials, key=lambda r: (r["value"], -r["number"]))
