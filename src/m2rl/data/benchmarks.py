"""Loaders for the paper's evaluation benchmarks, from the hub or local files, as canonical samples.

A benchmark spec is a dict: `name`, `source` (hub id or local path), `split`, optional `config`
(hub config name), `limit`, `template` (prompt with `{problem}`/`{question}`/`{options}`/`{letters}`
/`{prompt}` fields), `seed`, and `format` (which loader; inferred from the name when absent).
`PAPER_BENCHMARKS` lists the paper preset's specs (with K and reward type) for `conf/eval/paper.yaml`.

A row the loader cannot express (a missing field, test cases it cannot decode, an instruction id
no checker knows, ...) is left out, counted, and named in one warning line with the problem: one
such row never stops a whole benchmark. A file that cannot be read, or a benchmark none of whose
rows loads, is still an error. Left out rather than scored 0: the reward registry refuses a
sample it cannot score (never a silent 0), and a row in the denominator that no response can pass
would read as the model's failure; the warning gives the count to set beside published numbers.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import pickle
import random
import re
import string
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.text import Text

from m2rl.console import err_console
from m2rl.data.nemotron import normalize_if_kwargs
from m2rl.data.schema import make_sample, validate_sample
from m2rl.data.sources import Record, RecordCursor, is_local, iter_records
from m2rl.errors import UserError
from m2rl.verifiers.instruction_following import unavailable_ids

MATH_TEMPLATE = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: \\boxed{$Answer} (without quotes) where $Answer is the answer to the problem.\n\n{problem}"
)
MCQA_TEMPLATE = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'Answer: $LETTER' (without quotes) where LETTER is one of {letters}. Think step by step before "
    "answering.\n\n{question}\n\n{options}"
)
HLE_MC_TEMPLATE = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'Answer: $LETTER' (without quotes) where LETTER is one of {letters}. Think step by step before "
    "answering.\n\n{question}"
)
LCB_TEMPLATE = (
    "You will be given a question (problem specification) and will generate a correct Python program that "
    "matches the specification and passes all tests.\n\n### Question:\n{question}\n\n### Format: Read the inputs "
    "from stdin solve the problem and write the answer to stdout (do not directly test on the sample inputs). "
    "Enclose your code within delimiters as follows. Ensure that when the python program runs, it reads the "
    "inputs, runs the algorithm and writes output to STDOUT.\n```python\n# YOUR CODE HERE\n```\n\n"
    "### Answer: (use the provided format with backticks)\n\n"
)
IF_TEMPLATE = "{prompt}"

MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry "
    "college_computer_science college_mathematics college_medicine college_physics computer_security "
    "conceptual_physics econometrics electrical_engineering elementary_mathematics formal_logic global_facts "
    "high_school_biology high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics "
    "high_school_mathematics high_school_microeconomics high_school_physics high_school_psychology "
    "high_school_statistics high_school_us_history high_school_world_history human_aging human_sexuality "
    "international_law jurisprudence logical_fallacies machine_learning management marketing medical_genetics "
    "miscellaneous moral_disputes moral_scenarios nutrition philosophy prehistory professional_accounting "
    "professional_law professional_medicine professional_psychology public_relations security_studies sociology "
    "us_foreign_policy virology world_religions"
).split()

# The paper preset's benchmarks. K for AIME/GPQA/IF is the paper's; K for LCB, HLE and MMLU-Redux is
# ours (the brief gives none). LCB windows: v5 = 2024-08-01..2025-02-01, v6 = 2025-02-01..2025-05-01.
# HLE scores each item with the reward type of its answer kind (gpqa for multiple choice,
# deepscaler for exact match), so its spec has no single rm_type.
PAPER_BENCHMARKS: list[dict[str, Any]] = [
    {
        "name": "aime24",
        "domain": "math",
        "format": "aime",
        "source": "math-ai/aime24",
        "split": "test",
        "k": 16,
        "rm_type": "deepscaler",
    },
    {
        "name": "aime25",
        "domain": "math",
        "format": "aime",
        "source": "math-ai/aime25",
        "split": "test",
        "k": 16,
        "rm_type": "deepscaler",
    },
    {
        "name": "lcb_v5",
        "domain": "code",
        "format": "livecodebench",
        "source": "lighteval/code_generation_lite",
        "config": "release_v5",
        "split": "test",
        "k": 4,
        "rm_type": "unit_test",
        "start_date": "2024-08-01",
        "end_date": "2025-02-01",
    },
    {
        "name": "lcb_v6",
        "domain": "code",
        "format": "livecodebench",
        "source": "lighteval/code_generation_lite",
        "config": "release_v6",
        "split": "test",
        "k": 4,
        "rm_type": "unit_test",
        "start_date": "2025-02-01",
        "end_date": "2025-05-01",
    },
    {
        "name": "hle",
        "domain": "science",
        "format": "hle",
        "source": "cais/hle",
        "split": "test",
        "k": 1,
        "rm_type": None,
    },
    {
        "name": "gpqa_diamond",
        "domain": "science",
        "format": "gpqa",
        "source": "Idavidrein/gpqa",
        "config": "gpqa_diamond",
        "split": "train",
        "k": 4,
        "rm_type": "gpqa",
        "seed": 0,
    },
    {
        "name": "ifeval",
        "domain": "if",
        "format": "ifeval",
        "source": "google/IFEval",
        "split": "train",
        "k": 1,
        "rm_type": "ifevalg",
    },
    {
        "name": "ifbench",
        "domain": "if",
        "format": "ifbench",
        "source": "allenai/IFBench_test",
        "split": "train",
        "k": 1,
        "rm_type": "ifbench",
    },
    {
        "name": "mmlu_redux",
        "domain": "general",
        "format": "mmlu_redux",
        "source": "edinburgh-dawg/mmlu-redux-2.0",
        "split": "test",
        "k": 1,
        "rm_type": "gpqa",
        "keep_error_types": ["ok"],
    },
]

FORMAT_BY_NAME_PREFIX = {
    "aime": "aime", "gpqa": "gpqa", "ifeval": "ifeval", "ifbench": "ifbench", "lcb": "livecodebench",
    "livecodebench": "livecodebench", "mmlu": "mmlu_redux", "hle": "hle",
}  # fmt: skip


def fill(template: str, **fields: str) -> str:
    """Substitute `{field}` markers; other braces (LaTeX in problems) are left alone, unlike str.format."""
    for key, value in fields.items():
        template = template.replace("{" + key + "}", value)
    return template


def _field(record: Record, *names: str) -> Any:
    for name in names:
        if record.row.get(name) is not None:
            return record.row[name]
    raise UserError(f"{record.location}: missing field {' or '.join(repr(n) for n in names)}")


def _boxed(text: str) -> str:
    """The content of a whole-string `\\boxed{...}`, else the text itself."""
    text = text.strip()
    if text.startswith("\\boxed{") and text.endswith("}"):
        return text[len("\\boxed{") : -1].strip()
    return text


def _options_block(options: list[str]) -> tuple[str, str]:
    letters = string.ascii_uppercase[: len(options)]
    return "\n".join(
        f"{letter}) {str(option).strip()}" for letter, option in zip(letters, options, strict=True)
    ), letters


# -------------------------------------------------------------------------------------------------
# one function per format: (spec, records) -> samples (not yet validated)


def _aime(spec: dict[str, Any], records: Iterator[Record]) -> Iterator[dict[str, Any]]:
    template = spec.get("template") or MATH_TEMPLATE
    for record in records:
        problem = str(_field(record, "problem", "question", "Problem", "Question")).strip()
        answer = _boxed(str(_field(record, "answer", "Answer", "solution")))
        key = record.row.get("id", record.row.get("ID", record.index))
        yield make_sample(
            f"{spec['name']}-{key}", "math", fill(template, problem=problem), answer, rm_type="deepscaler"
        )


def _gpqa(spec: dict[str, Any], records: Iterator[Record]) -> Iterator[dict[str, Any]]:
    template = spec.get("template") or MCQA_TEMPLATE
    seed = spec.get("seed", 0)
    for record in records:
        question = str(_field(record, "Question")).strip()
        correct = str(_field(record, "Correct Answer")).strip()
        wrong = [str(_field(record, f"Incorrect Answer {i}")).strip() for i in (1, 2, 3)]
        key = record.row.get("Record ID") or record.index
        rng = random.Random(f"{seed}:{key}")
        gold = rng.randrange(4)
        options = wrong[:gold] + [correct] + wrong[gold:]
        block, letters = _options_block(options)
        prompt = fill(template, question=question, options=block, letters=letters)
        metadata = {"valid_letters": list(letters), "choices": options}
        yield make_sample(
            f"{spec['name']}-{key}", "science", prompt, letters[gold], rm_type="gpqa", metadata=metadata
        )


def _instruction_following(
    rm_type: str,
) -> Callable[[dict[str, Any], Iterator[Record]], Iterator[dict[str, Any]]]:
    def load(spec: dict[str, Any], records: Iterator[Record]) -> Iterator[dict[str, Any]]:
        template = spec.get("template") or IF_TEMPLATE
        for record in records:
            prompt = str(_field(record, "prompt"))
            ids = _field(record, "instruction_id_list")
            kwargs = normalize_if_kwargs(_field(record, "kwargs"), record.location)
            if not isinstance(ids, list) or len(ids) != len(kwargs):
                raise UserError(
                    f"{record.location}: instruction_id_list and kwargs must be lists of the same length"
                )
            metadata = {"instruction_id_list": list(ids), "kwargs": kwargs, "prompt_text": prompt}
            key = record.row.get("key", record.index)
            yield make_sample(
                f"{spec['name']}-{key}",
                "if",
                fill(template, prompt=prompt),
                None,
                rm_type=rm_type,
                metadata=metadata,
            )

    return load


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain data (str, bytes, numbers, containers): no class can be constructed."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from benchmark data")


def decode_lcb_tests(raw: Any, where: str) -> list[dict[str, Any]]:
    """LiveCodeBench test cases: a JSON list, or base64(zlib(pickle(JSON string))) for private tests."""
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return []
    text = raw.strip()
    if not text.startswith("["):
        try:
            text = _PlainUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(text)))).load()
        except Exception as exc:
            raise UserError(
                f"{where}: could not decode the compressed test cases ({type(exc).__name__})"
            ) from exc
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if isinstance(text, list):
            return text
    try:
        tests = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"{where}: test cases are not a JSON list") from exc
    if not isinstance(tests, list):
        raise UserError(f"{where}: test cases are not a JSON list")
    return tests


def _livecodebench(spec: dict[str, Any], records: Iterator[Record]) -> Iterator[dict[str, Any]]:
    template = spec.get("template") or LCB_TEMPLATE
    start, end = spec.get("start_date"), spec.get("end_date")
    for record in records:
        date = str(_field(record, "contest_date"))[:10]
        if (start and date < str(start)) or (end and date >= str(end)):
            continue
        tests = decode_lcb_tests(record.row.get("public_test_cases"), f"{record.location} public_test_cases")
        tests += decode_lcb_tests(
            record.row.get("private_test_cases"), f"{record.location} private_test_cases"
        )
        if not tests or any(t.get("testtype", "stdin") != "stdin" for t in tests):
            continue  # call-based (LeetCode) problems need a function harness; the unit_test verifier runs stdin programs
        unit_tests = {"inputs": [t["input"] for t in tests], "outputs": [t["output"] for t in tests]}
        question = str(_field(record, "question_content")).strip()
        key = _field(record, "question_id")
        metadata = {
            "unit_tests": unit_tests,
            "contest_date": date,
            "platform": record.row.get("platform"),
            "difficulty": record.row.get("difficulty"),
        }
        yield make_sample(
            f"{spec['name']}-{key}",
            "code",
            fill(template, question=question),
            None,
            rm_type="unit_test",
            metadata=metadata,
        )


def _mmlu_redux(spec: dict[str, Any], records: Iterator[Record]) -> Iterator[dict[str, Any]]:
    template = spec.get("template") or MCQA_TEMPLATE
    keep = spec.get("keep_error_types", ["ok"])
    for record in records:
        if keep is not None and record.row.get("error_type", "ok") not in keep:
            continue
        question = str(_field(record, "question")).strip()
        choices = _field(record, "choices")
        if isinstance(choices, str):
            choices = json.loads(choices)
        answer = _field(record, "answer")
        block, letters = _options_block(list(choices))
        gold = letters[int(answer)] if str(answer).strip().isdigit() else str(answer).strip().upper()
        if gold not in letters:
            raise UserError(f"{record.location}: answer {answer!r} is not one of the {len(letters)} choices")
        subject = record.row.get("subject") or Path(record.where.split("[")[0]).stem
        prompt = fill(template, question=question, options=block, letters=letters)
        metadata = {"valid_letters": list(letters), "choices": list(choices), "subject": subject}
        yield make_sample(
            f"{spec['name']}-{subject}-{record.index}",
            "general",
            prompt,
            gold,
            rm_type="gpqa",
            metadata=metadata,
        )


def _hle(spec: dict[str, Any], records: Iterator[Record]) -> Iterator[dict[str, Any]]:
    for record in records:
        if record.row.get("image"):
            continue  # text-only subset: the models studied here read no images
        question = str(_field(record, "question")).strip()
        answer = str(_field(record, "answer")).strip()
        key = record.row.get("id", record.index)
        if record.row.get("answer_type") == "multipleChoice":
            letters = "".join(re.findall(r"(?m)^\s*([A-Z])[.)]\s", question)) or string.ascii_uppercase[:8]
            prompt = fill(spec.get("mc_template") or HLE_MC_TEMPLATE, question=question, letters=letters)
            metadata = {"valid_letters": list(letters), "answer_type": "multipleChoice"}
            yield make_sample(
                f"{spec['name']}-{key}", "science", prompt, answer, rm_type="gpqa", metadata=metadata
            )
        else:
            prompt = fill(spec.get("template") or MATH_TEMPLATE, problem=question)
            metadata = {"answer_type": record.row.get("answer_type")}
            yield make_sample(
                f"{spec['name']}-{key}", "science", prompt, answer, rm_type="deepscaler", metadata=metadata
            )


LOADERS: dict[str, Callable[[dict[str, Any], Iterator[Record]], Iterator[dict[str, Any]]]] = {
    "aime": _aime,
    "gpqa": _gpqa,
    "ifeval": _instruction_following("ifevalg"),
    "ifbench": _instruction_following("ifbench"),
    "livecodebench": _livecodebench,
    "mmlu_redux": _mmlu_redux,
    "hle": _hle,
}


def benchmark_format(spec: dict[str, Any]) -> str:
    """The loader a spec uses: its `format`, else the one its name starts with."""
    fmt = spec.get("format")
    if fmt is None:
        name = str(spec.get("name", "")).lower()
        fmt = next((f for prefix, f in FORMAT_BY_NAME_PREFIX.items() if name.startswith(prefix)), None)
    if fmt not in LOADERS:
        raise UserError(
            f"benchmark {spec.get('name')!r}: unknown format {fmt!r}; set `format` to one of {', '.join(LOADERS)}"
        )
    return fmt


def _records(spec: dict[str, Any], fmt: str) -> Iterator[Record]:
    source, split, config = str(spec["source"]), spec.get("split"), spec.get("config")
    if fmt == "mmlu_redux" and config in (None, "all"):
        if not is_local(source):  # one hub config per subject
            for subject in MMLU_SUBJECTS:
                for record in iter_records(source, split, subject):
                    yield dataclasses.replace(record, row={"subject": subject, **record.row})
            return
        config = None
    if isinstance(config, list):
        for name in config:
            yield from iter_records(source, split, str(name))
        return
    yield from iter_records(source, split, config)


@dataclasses.dataclass(frozen=True)
class LeftOut:
    """A row of a benchmark file that was not loaded: where it is, its item id if it got one, and why."""

    where: str
    row: str
    item_id: str | None
    problem: str

    @property
    def location(self) -> str:
        return f"{self.where} {self.row}"


@dataclasses.dataclass
class BenchmarkRead:
    """A benchmark's validated samples, the rows left out, and how many rows were read."""

    samples: list[dict[str, Any]]
    left_out: list[LeftOut]
    rows: int


def _problem(message: str, location: str, name: str, item_id: str | None) -> str:
    """The problem of an error about one row, without the row's location, benchmark and id."""
    text = message.removeprefix(location).removeprefix(f" (benchmark {name})")
    if item_id is not None:
        text = re.sub(r"^ \(id " + re.escape(repr(item_id)) + r"(, rm_type [^)]*)?\)", "", text)
    return text.removeprefix(":").strip()


def read_benchmark(spec: dict[str, Any]) -> BenchmarkRead:
    """A benchmark's items as validated canonical samples (first `limit` items when set), and the
    rows that could not be expressed (left out, each with its problem)."""
    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)  # type: ignore[assignment]
    for key in ("name", "source"):
        if not spec.get(key):
            raise UserError(f"benchmark spec {spec!r} needs a {key!r}")
    fmt = benchmark_format(spec)
    name = str(spec["name"])
    limit = None if spec.get("limit") is None else int(spec["limit"])
    read = BenchmarkRead([], [], 0)
    cursor = RecordCursor(_records(spec, fmt))
    for record in cursor:  # a file that cannot be read raises here, for the whole benchmark
        if limit is not None and len(read.samples) >= limit:
            break
        read.rows += 1
        item_id = None
        try:
            with cursor.reading():  # each loader converts one record per sample it yields
                for sample in LOADERS[fmt](spec, iter([record])):
                    item_id = str(sample.get("id"))
                    read.samples.append(validate_sample(sample, f"{record.location} (benchmark {name})"))
        except UserError as exc:
            problem = _problem(str(exc), record.location, name, item_id)
            row = record.location.removeprefix(record.where).strip()
            read.left_out.append(LeftOut(record.where, row, item_id, problem))
    return read


def left_out_line(name: str, read: BenchmarkRead, shown: int = 12) -> str | None:
    """One line naming the rows left out of benchmark `name` (with their ids) by problem, or None."""
    if not read.left_out:
        return None
    files = {row.where for row in read.left_out}
    single = len(files) == 1
    by_problem: dict[str, list[LeftOut]] = {}
    for row in read.left_out:
        by_problem.setdefault(row.problem, []).append(row)
    parts = []
    for problem, rows in by_problem.items():
        named = [
            (row.row if single else row.location) + (f" (id {row.item_id})" if row.item_id else "")
            for row in rows[:shown]
        ]
        more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
        parts.append(f"{problem}: {', '.join(named)}{more}")
    source = f" of {files.pop()}" if single else ""
    return f"left out {len(read.left_out)} of {read.rows} rows{source} it cannot express: " + "; ".join(parts)


def unavailable_line(samples: list[dict[str, Any]], shown: int = 12) -> str | None:
    """One line naming the instruction-following items that score 0 here for want of a model, or None."""
    missing: dict[str, list[str]] = {}
    for sample in samples:
        ids = (sample.get("metadata") or {}).get("instruction_id_list") or []
        for reason in dict.fromkeys(unavailable_ids(ids).values()):
            missing.setdefault(reason, []).append(str(sample["id"]))
    if not missing:
        return None
    return "; ".join(
        f"{len(items)} item(s) score 0 here: {reason}: {', '.join(items[:shown])}"
        + (f" and {len(items) - shown} more" if len(items) > shown else "")
        for reason, items in missing.items()
    )


def load_benchmark(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A benchmark's items as validated canonical samples; rows left out are named in one warning line."""
    read = read_benchmark(spec)
    name = str(spec["name"])
    if not read.samples:
        detail = f": {read.left_out[0].location}: {read.left_out[0].problem}" if read.left_out else ""
        raise UserError(f"benchmark {name} ({spec['source']}) has no usable items{detail}")
    for line in (left_out_line(name, read), unavailable_line(read.samples)):
        if line:
            _warn(name, line)
    return read.samples


def _warn(name: str, line: str) -> None:
    err_console.print(Text.assemble((f"benchmark {name}: ", "yellow"), line), soft_wrap=True, highlight=False)
