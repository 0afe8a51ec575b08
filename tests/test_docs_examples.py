"""Every `m2rl` command in the README and in docs/ runs, through the installed executable, so examples
cannot rot. Commands that would train, evaluate, merge, analyse or write data get `--dry-run`; they and
the read-only commands (`runs`, `compare`, `verify`) run against a runs folder of fake runs made
without training (the study `study`, seeds 0 and 1: SFT, four experts, the mixed run, two merges, each
holding the built-in tiny model and eval results). An example that cannot run in a test ends with a
comment `# needs: REASON`, REASON one of NEEDS; only those are skipped."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from m2rl.ledger import Ledger, attempt

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXECUTABLE = str(Path(sys.executable).with_name("m2rl"))  # the console script pip installed
# The one list of reasons an example may be skipped for, and why a test cannot run it.
NEEDS = {
    "an interactive shell": "writes the completion script into the user's shell start-up files",
    "an interrupted run": "--resume continues a stopped run's training; it has no dry run",
}
# Commands that train, evaluate, merge, analyse or write data: run with --dry-run.
DRY_RUN = {"sft", "rl", "distill", "merge", "pipeline", "eval", "analyze", "data"}
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
DOMAINS = ("math", "code", "science", "if")
SEEDS = (0, 1)
ITEMS = 24  # eval results per benchmark in the fake runs


@dataclass(frozen=True)
class Example:
    """One command line of a page: where it is, its words, and the reason it cannot run (if any)."""

    page: str
    line: int
    text: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    needs: str = ""

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def _fenced_blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of each fenced code block."""
    blocks, fence, language, start, lines = [], None, "", 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if fence is None:
            if opened := FENCE.match(line):
                fence, language, start, lines = opened.group(1), opened.group(2).lower(), number + 1, []
        elif line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
            blocks.append((language, start, lines))
            fence = None
        else:
            lines.append(line)
    return blocks


def _command_lines(language: str, start: int, lines: list[str]) -> list[tuple[int, str]]:
    """The command lines of a shell block (continuations joined): in a console block the `$ ` lines."""
    commands: list[tuple[int, str]] = []
    pending, first = "", 0
    for offset, line in enumerate(lines):
        if not pending:
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            first = start + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append((first, pending + line))
        pending = ""
    return commands


def _words(text: str) -> tuple[list[str], str]:
    """The shell words of a command line and its trailing comment ('' without one): the comment starts
    at the first `#` outside quotes that begins a word, and may hold any text."""
    quote = ""
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1].isspace()):
            return shlex.split(text[:index]), text[index + 1 :].strip()
    return shlex.split(text), ""


def page_commands(command: str) -> list[Example]:
    """Every line of every page's shell blocks whose command (after VAR=value words) is `command`."""
    found = []
    for path in PAGES:
        for language, start, lines in _fenced_blocks(path):
            if language not in SHELL_FENCES:
                continue
            for number, text in _command_lines(language, start, lines):
                try:
                    words, comment = _words(text)
                except ValueError as exc:  # not one shell command: a reason no list holds, so it fails
                    words, comment = text.split(), f"needs: a shell line that parses ({exc})"
                env = []
                while words and ASSIGNMENT.match(words[0]):
                    key, _, value = words.pop(0).partition("=")
                    env.append((key, value))
                if not words or words[0] != command:
                    continue
                needs = comment.removeprefix("needs:").strip() if comment.startswith("needs:") else ""
                example = Example(
                    path.relative_to(REPO).as_posix(), number, text.strip(), tuple(words), tuple(env), needs
                )
                found.append(example)
    return found


def help_examples() -> list[Example]:
    """The examples each command's --help ends with (m2rl.cli.EXAMPLES)."""
    from m2rl.cli import EXAMPLES as HELP_EXAMPLES

    return [
        Example(f"m2rl {command} --help", number, text, tuple(shlex.split(text)))
        for command, lines in HELP_EXAMPLES.items()
        for number, text in enumerate(lines, 1)
    ]


def examples() -> list[Example]:
    """The `m2rl` examples of the pages and of --help, each command line once (where it first appears)."""
    unique: dict[tuple[str, ...], Example] = {}
    for example in [*page_commands("m2rl"), *help_examples()]:
        unique.setdefault((*as_run(example), *sorted(example.env)), example)
    return list(unique.values())


def as_run(example: Example) -> list[str]:
    """The command a test runs: --dry-run added where the example would train or change runs, its own
    --runs-dir dropped (the fake runs folder is $M2RL_RUNS_DIR)."""
    argv = list(example.argv[1:])
    for index, word in enumerate(argv):
        if word == "--runs-dir":
            del argv[index : index + 2]
            break
        if word.startswith("--runs-dir="):
            del argv[index]
            break
    command = argv[0] if argv else ""
    if command in DRY_RUN and not {"--dry-run", "--help", "-h"} & set(argv):
        argv.append("--dry-run")
    return [EXECUTABLE, *argv]


# -------------------------------------------------------------------------------- the fake runs
def _evaluate(run, cfg, seed: int, index: int) -> None:
    """Per-item results and manifest metrics as `m2rl eval` would write them with this config."""
    from m2rl.evaluate.results import ItemResult, results_path, write_results
    from m2rl.evaluate.runner import eval_plan, settings_summary
    from m2rl.evaluate.settings import EvalSettings

    settings = EvalSettings.from_cfg(cfg)
    rng = np.random.default_rng([seed, index])
    evals = {}
    for bench, digest, _saved in eval_plan(run, settings):
        k = bench.k
        items = [
            ItemResult(
                f"{bench.domain}-{i}",
                bench.domain,
                [float(rng.random() < 0.5) for _ in range(k)],
                [""] * k,
                [""] * k,
                [8] * k,
                [True] * k,
            )
            for i in range(ITEMS)
        ]
        write_results(results_path(run.path, bench.name), items)
        score = float(np.mean([np.mean(item.rewards) for item in items]))
        evals[bench.name] = {
            "domain": bench.domain,
            "k": k,
            "avg_at_k": score,
            "pass_at_k": score,
            "ci95": [score, score],
            "n_items": ITEMS,
            "config_hash": digest,  # as made with this eval config: analyze accepts them
            "settings": settings_summary(bench, settings),
        }
    run.set_metrics(eval=evals)


def build_fake_study(root: Path, model: Path) -> None:
    """The study `study` as `m2rl pipeline study.seeds=2` names its runs, evaluated, without training."""
    from m2rl.config import compose_config

    ledger = Ledger(root)
    for seed in SEEDS:

        def make(kind: str, role: str, parents: list[str], seed=seed, **fields):
            run = ledger.create(kind, f"study-s{seed}-{role}", {}, parents=parents, seed=seed, study="study")
            with attempt(run):
                shutil.copytree(model, run.model_dir)
                run.update(**fields)
            return run

        sft = make("sft", "sft", [])
        experts = [make("rl", f"rl-{d}", [sft.id], domains=[d]) for d in DOMAINS]
        mixed = make("rl", "rl-mixed", [sft.id], domains=list(DOMAINS))
        ids = [e.id for e in experts]
        merges = [
            make(
                "merge",
                f"merge-{method}",
                [sft.id, *ids],
                domains=list(DOMAINS),
                merge={"method": method, "backend": "paper", "experts": ids, "base": sft.id},
            )
            for method in ("paper_ties", "paper_ta")
        ]
        cfg = compose_config([f"seed={seed}"])
        for index, run in enumerate([sft, *experts, mixed, *merges]):
            _evaluate(run, cfg, seed, index)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir) -> tuple[Path, dict[str, str]]:
    """A working folder holding a copy of examples/ (after the pages' `python examples/...` set-up lines
    ran in it), the pages' ```jsonl blocks as responses.jsonl, and the fake runs folder."""
    folder = tmp_path_factory.mktemp("docs-examples")
    shutil.copytree(REPO / "examples", folder / "examples")
    records = [
        line
        for path in PAGES
        for language, _start, lines in _fenced_blocks(path)
        if language == "jsonl"
        for line in lines
    ]
    (folder / "responses.jsonl").write_text("\n".join(records) + "\n")
    runs = folder / "runs"
    build_fake_study(runs, Path(tiny_model_dir))
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="100", M2RL_RUNS_DIR=str(runs))
    for setup in page_commands("python"):
        if len(setup.argv) > 1 and setup.argv[1].startswith("examples/"):
            done = subprocess.run(
                [sys.executable, *setup.argv[1:]],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{setup.name}: {setup.text}\n{done.stderr}"
    return folder, env


# -------------------------------------------------------------------------------- the tests
EXAMPLES = examples()


def _run(
    example: Example, folder: Path, env: dict[str, str]
) -> tuple[list[str], subprocess.CompletedProcess]:
    command = as_run(example)
    try:
        done = subprocess.run(
            command,
            cwd=folder,
            env=dict(env, **dict(example.env)),
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired as exc:
        done = subprocess.CompletedProcess(command, -1, "", f"timed out after {exc.timeout} s")
    return command, done


@pytest.fixture(scope="module")
def outcomes(workspace) -> dict[str, tuple[list[str], subprocess.CompletedProcess]]:
    """Every example that can run, run once: the dry runs (which write nothing) a few at a time, then
    the commands that write (compare's folders, verify's output) and `runs --check` one by one."""
    folder, env = workspace
    runnable = [e for e in EXAMPLES if e.needs not in NEEDS]
    dry = [e for e in runnable if "--dry-run" in as_run(e)]
    results = {}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2)) as pool:
        for example, outcome in zip(dry, pool.map(lambda e: _run(e, folder, env), dry), strict=True):
            results[example.name] = outcome
    for example in runnable:
        if example.name not in results:
            results[example.name] = _run(example, folder, env)
    return results


def test_the_pages_have_examples_and_every_skip_has_a_listed_reason():
    assert len(EXAMPLES) >= 20, [e.name for e in EXAMPLES]
    unknown = [f"{e.name}: needs {e.needs!r}" for e in EXAMPLES if e.needs and e.needs not in NEEDS]
    assert not unknown, f"reasons not in NEEDS {sorted(NEEDS)}:\n" + "\n".join(unknown)
    resumes = [e.name for e in EXAMPLES if "--resume" in e.argv and e.needs != "an interrupted run"]
    assert not resumes, f"--resume ignores --dry-run: mark these `# needs: an interrupted run`: {resumes}"
    chained = [e.name for e in EXAMPLES if {"&&", "|", ";", "&", ">"} & set(e.argv)]
    assert not chained, f"one command per line, without pipes or chains: {chained}"


@pytest.mark.parametrize(
    "example",
    [
        pytest.param(e, id=e.name, marks=pytest.mark.skip(reason=f"needs {e.needs}: {NEEDS[e.needs]}"))
        if e.needs in NEEDS
        else pytest.param(e, id=e.name)
        for e in EXAMPLES
    ],
)
def test_the_example_runs(example: Example, outcomes):
    command, done = outcomes[example.name]
    assert done.returncode == 0, (
        f"{example.name}: {example.text}\nran: {shlex.join(command[1:])} (exit {done.returncode})\n"
        f"stderr:\n{done.stderr[-3000:]}\nstdout:\n{done.stdout[-1500:]}"
    )
