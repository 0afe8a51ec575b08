"""Adapters for NVIDIA's Nemotron post-training data: the RL blend and the v3 SFT blend.

RL: rows of `nvidia/Nemotron-3-Nano-RL-Training-Blend` become canonical samples exactly as the M2RL
paper maps them (blend category -> domain and reward type, the math prefix, the science prompt edit,
labels and metadata). Its DAPO and Skywork rows are placeholders (`_hf_placeholder = {row,
question_template}`) restored from the source datasets the way NVIDIA's `create_nanov3_jsonl.py`
does; rows whose source is unavailable are reported, not silently dropped.

SFT: rows of the six Nemotron v3 SFT subsets (`messages` with role, content, reasoning_content,
tool_calls; `tools`) become a `datasets.Dataset` with a `messages` column for TRL's SFTTrainer,
sampled to the paper's per-subset counts.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from m2rl.data.schema import make_sample, validate_sample
from m2rl.data.sources import Record, RecordCursor, is_local, iter_records, load_indexed, local_files
from m2rl.errors import UserError

# The paper's routing table: blend `dataset` -> (domain, reward type).
BLEND_CATEGORIES: dict[str, tuple[str, str]] = {
    "nano_v3_sft_profiled_dapo17k": ("math", "deepscaler"),
    "nano_v3_sft_profiled_skywork_no_omni": ("math", "deepscaler"),
    "nano_v3_sft_profiled_stem_mcqa": ("science", "gpqa"),
    "nano_v3_sft_profiled_comp_coding_50tests": ("code", "unit_test"),
    "nano_v3_sft_profiled_instruction_following": ("if", "ifevalg"),
    "nano_v3_sft_profiled_workbench": ("agent", "workbench"),
}
DROPPED_CATEGORIES = frozenset({"nano_v3_sft_profiled_structured_outputs"})
MATH_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
MCQA_INSTRUCTION = "Answer the following multiple choice question."
MCQA_INSTRUCTION_STEP_BY_STEP = "Answer the following multiple choice question step by step."
DEFAULT_PLACEHOLDER_SOURCES = {
    "nano_v3_sft_profiled_dapo17k": {"source": "BytedTsinghua-SIA/DAPO-Math-17k", "split": "train"},
    "nano_v3_sft_profiled_skywork_no_omni": {"source": "Skywork/Skywork-OR1-RL-Data", "split": "math"},
}


def _container(cfg: Any) -> dict[str, Any]:
    """A DictConfig or mapping as plain Python containers."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return copy.deepcopy(dict(cfg))


# -------------------------------------------------------------------------------------------------
# RL blend


@dataclass
class BlendReport:
    """What happened to the blend's rows: kept per domain, skipped, dropped and unresolved."""

    rows: int = 0
    kept: Counter = field(default_factory=Counter)  # domain -> samples
    not_requested: Counter = field(default_factory=Counter)  # domain -> rows of domains not asked for
    dropped: Counter = field(default_factory=Counter)  # category -> rows dropped by design or unknown
    unresolved: dict[str, dict[str, Any]] = field(default_factory=dict)  # category -> {count, reason}
    notes: Counter = field(default_factory=Counter)  # e.g. science prompts left unchanged

    def add_unresolved(self, category: str, reason: str) -> None:
        """Count one placeholder row whose source was not available."""
        entry = self.unresolved.setdefault(category, {"count": 0, "reason": reason})
        entry["count"] += 1

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "rows": self.rows,
            "kept": dict(self.kept),
            "not_requested": dict(self.not_requested),
            "dropped": dict(self.dropped),
            "unresolved": self.unresolved,
            "notes": dict(self.notes),
        }

    def lines(self) -> list[str]:
        """One human-readable line per thing a user should know about."""
        out = [f"dropped {n} row(s) of category {c}" for c, n in sorted(self.dropped.items())]
        out += [
            f"unresolved {u['count']} placeholder row(s) of {c}: {u['reason']}"
            for c, u in sorted(self.unresolved.items())
        ]
        out += [f"{n} row(s): {note}" for note, n in sorted(self.notes.items())]
        return out


@dataclass
class BlendResult:
    """Validated samples per requested domain plus the report of what was left out."""

    samples: dict[str, list[dict[str, Any]]]
    report: BlendReport


class PlaceholderResolver:
    """Restores DAPO/Skywork placeholder rows from their source datasets, loaded once each on demand."""

    def __init__(self, sources: Mapping[str, Mapping[str, Any] | None]) -> None:
        self.sources = dict(sources)
        self.tables: dict[str, Any] = {}
        self.failures: dict[str, str] = {}

    def _table(self, category: str) -> Any | None:
        if category in self.tables or category in self.failures:
            return self.tables.get(category)
        spec = self.sources.get(category) or {}
        if not spec.get("source"):
            self.failures[category] = "no source configured (set data.rl.placeholders.<category>.source)"
            return None
        try:
            self.tables[category] = load_indexed(str(spec["source"]), spec.get("split"), spec.get("name"))
        except UserError as exc:
            self.failures[category] = str(exc)
            return None
        return self.tables[category]

    def resolve(self, record: Record, category: str) -> tuple[dict[str, Any] | None, str]:
        """(restored row, "") or (None, reason the source is unavailable)."""
        table = self._table(category)
        if table is None:
            return None, self.failures[category]
        placeholder = record.row["_hf_placeholder"]
        if not isinstance(placeholder, Mapping) or not isinstance(placeholder.get("row"), int):
            raise UserError(f"{record.location}: _hf_placeholder needs an integer 'row'")
        index = placeholder["row"]
        if not 0 <= index < len(table):
            raise UserError(
                f"{record.location}: placeholder row {index} is outside {self.sources[category]['source']} "
                f"({len(table)} rows); is it the version the blend was built from?"
            )
        source_row = table[index]
        try:
            question = source_row["prompt"][0]["content"]
            answer = source_row["reward_model"]["ground_truth"]
        except (KeyError, IndexError, TypeError) as exc:
            raise UserError(
                f"{self.sources[category]['source']} row {index}: expected prompt[0].content and "
                "reward_model.ground_truth (DAPO/Skywork schema)"
            ) from exc
        full_question = restore_question(category, str(question), placeholder.get("question_template"))
        restored = {k: v for k, v in record.row.items() if k != "_hf_placeholder"}
        restored["question"] = full_question
        restored["expected_answer"] = first_answer(answer)
        restored["responses_create_params"] = {"input": [{"role": "user", "content": full_question}]}
        return restored, ""


def strip_dapo_wrapper(question: str) -> str:
    """DAPO prompts wrap the problem as `instruction\\n\\nPROBLEM\\n\\nreminder`; keep the problem."""
    parts = question.split("\n\n")
    return "\n\n".join(parts[1:-1]) if len(parts) >= 3 else question


def restore_question(category: str, question: str, template: Any) -> str:
    """The blend's question text from the source question and the placeholder's template."""
    if category == "nano_v3_sft_profiled_dapo17k":
        if isinstance(template, Mapping):
            stripped = strip_dapo_wrapper(question)
            return f"{template.get('prefix') or ''}{stripped}{template.get('suffix') or ''}".rstrip("\n")
        return question
    if isinstance(template, Mapping):
        template = template.get("template")
    if isinstance(template, str) and "{question}" in template:
        return template.replace("{question}", question)
    return question


def first_answer(raw: Any) -> str:
    """A ground truth as one string: Skywork stores a JSON list of accepted answers, DAPO a string."""
    if isinstance(raw, list):
        return str(raw[0]) if raw else ""
    text = str(raw).strip()
    if text.startswith("["):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(decoded, list):
            return str(decoded[0]) if decoded else ""
    return text


def _message_text(content: Any) -> str | None:
    """Message content as text: a string, or the text parts of an OpenAI Responses content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
        return "".join(texts) if texts else None
    return None


def _prompt_messages(record: Record, category: str) -> list[dict[str, str]]:
    params = record.row.get("responses_create_params")
    messages = params.get("input") if isinstance(params, Mapping) else None
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise UserError(
            f"{record.location} ({category}): responses_create_params.input must be a non-empty list of messages"
        )
    out = []
    for i, message in enumerate(messages):
        text = _message_text(message.get("content")) if isinstance(message, Mapping) else None
        if text is None or not isinstance(message.get("role"), str):
            raise UserError(
                f"{record.location} ({category}): input message {i} needs a role and text content"
            )
        out.append({"role": message["role"], "content": text})
    if not any(m["role"] == "user" for m in out):
        raise UserError(f"{record.location} ({category}): the prompt has no user message")
    return out


def _first_user(messages: list[dict[str, str]]) -> dict[str, str]:
    return next(m for m in messages if m["role"] == "user")


def _required(record: Record, category: str, name: str) -> Any:
    value = record.row.get(name)
    if value is None:
        raise UserError(f"{record.location} ({category}): missing field {name!r}")
    return value


def normalize_if_kwargs(kwargs: Any, where: str) -> list[dict[str, Any]]:
    """IFEval kwargs as one dict per instruction: null -> {}, None-valued keys removed."""
    if not isinstance(kwargs, list):
        raise UserError(f"{where}: 'kwargs' must be a list (one entry per instruction)")
    out = []
    for entry in kwargs:
        if entry is None:
            entry = {}
        if isinstance(entry, str):
            entry = json.loads(entry) if entry.strip() else {}
        if not isinstance(entry, Mapping):
            raise UserError(
                f"{where}: every kwargs entry must be an object or null, got {type(entry).__name__}"
            )
        out.append({k: v for k, v in entry.items() if v is not None})
    return out


def blend_row_to_sample(record: Record, category: str, sample_id: str, report: BlendReport) -> dict[str, Any]:
    """One (already restored) blend row as a canonical sample, per the paper's table."""
    domain, rm_type = BLEND_CATEGORIES[category]
    messages = _prompt_messages(record, category)
    metadata: dict[str, Any] = {"category": category}
    label: str | None = None
    if domain == "math":
        user = _first_user(messages)
        user["content"] = MATH_PREFIX + user["content"]
        label = first_answer(_required(record, category, "expected_answer"))
    elif domain == "science":
        user = _first_user(messages)
        if user["content"].startswith(MCQA_INSTRUCTION):
            user["content"] = MCQA_INSTRUCTION_STEP_BY_STEP + user["content"][len(MCQA_INSTRUCTION) :]
        else:
            report.notes["science prompt without the expected instruction sentence, left unchanged"] += 1
        label = str(_required(record, category, "expected_answer")).strip()
        options = record.row.get("options")
        if isinstance(options, list) and options:
            metadata["valid_letters"] = [
                k for option in options if isinstance(option, Mapping) for k in option
            ]
    elif domain == "code":
        verifier_metadata = _required(record, category, "verifier_metadata")
        tests = verifier_metadata.get("unit_tests") if isinstance(verifier_metadata, Mapping) else None
        if (
            not isinstance(tests, Mapping)
            or not isinstance(tests.get("inputs"), list)
            or not isinstance(tests.get("outputs"), list)
        ):
            raise UserError(
                f"{record.location} ({category}): verifier_metadata.unit_tests needs 'inputs' and 'outputs' lists"
            )
        if len(tests["inputs"]) != len(tests["outputs"]) or not tests["inputs"]:
            raise UserError(
                f"{record.location} ({category}): unit_tests has {len(tests['inputs'])} inputs and "
                f"{len(tests['outputs'])} outputs; need the same non-zero number"
            )
        metadata.update(copy.deepcopy(dict(verifier_metadata)))
    elif domain == "if":
        ids = _required(record, category, "instruction_id_list")
        kwargs = normalize_if_kwargs(_required(record, category, "kwargs"), f"{record.location} ({category})")
        if not isinstance(ids, list) or len(ids) != len(kwargs):
            raise UserError(
                f"{record.location} ({category}): instruction_id_list and kwargs must be lists of the same length"
            )
        metadata.update(
            instruction_id_list=list(ids),
            kwargs=kwargs,
            prompt_text=str(_required(record, category, "prompt")),
        )
    elif domain == "agent":
        params = record.row.get("responses_create_params") or {}
        metadata.update(ground_truth_tool_calls=record.row.get("ground_truth"), tools=params.get("tools"))
    return make_sample(sample_id, domain, messages, label, rm_type=rm_type, metadata=metadata)


def _rl_config(data_cfg: Any) -> dict[str, Any]:
    cfg = _container(data_cfg)
    rl = cfg.get("rl")
    if not isinstance(rl, dict) or not rl.get("source"):
        raise UserError(
            "data config has no rl.source (the Nemotron RL blend: a hub id or a local jsonl/parquet path)"
        )
    return rl


def read_rl_blend(data_cfg: Any, domains: list[str]) -> BlendResult:
    """Validated samples per requested domain from the RL blend, plus the report of skipped rows."""
    rl = _rl_config(data_cfg)
    known = {d for d, _ in BLEND_CATEGORIES.values()}
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise UserError(
            f"the Nemotron RL blend has no domain(s) {', '.join(unknown)}; it has {', '.join(sorted(known))}"
        )
    limit = rl.get("max_per_domain")
    placeholders = {**DEFAULT_PLACEHOLDER_SOURCES, **(rl.get("placeholders") or {})}
    resolver = PlaceholderResolver(placeholders)
    report = BlendReport()
    samples: dict[str, list[dict[str, Any]]] = {d: [] for d in domains}
    files = rl.get("files")
    cursor = RecordCursor(
        iter_records(str(rl["source"]), rl.get("split"), rl.get("name"), list(files) if files else None)
    )
    for record in cursor:
        report.rows += 1
        category = record.row.get("dataset")
        if not isinstance(category, str):
            found = "missing" if category is None else f"{type(category).__name__}, not a string"
            hint = (
                "; this row is in m2rl's canonical schema (what `m2rl data prepare` writes): read it "
                "with data=files data.domains.<domain>.train=FILE, or data.files.<domain>.train=FILE"
                if category is None and "rm_type" in record.row and "prompt" in record.row
                else ""
            )
            raise UserError(f"{record.location}: 'dataset' (the blend category) is {found}{hint}")
        if category in DROPPED_CATEGORIES or category not in BLEND_CATEGORIES:
            report.dropped[category] += 1
            continue
        domain = BLEND_CATEGORIES[category][0]
        if domain not in samples:
            report.not_requested[domain] += 1
            continue
        if limit is not None and len(samples[domain]) >= int(limit):
            continue
        with cursor.reading():
            if record.row.get("_hf_placeholder") is not None:
                restored, reason = resolver.resolve(record, category)
                if restored is None:
                    report.add_unresolved(category, reason)
                    continue
                record = dataclasses.replace(record, row=restored)
            sample_id = f"nemotron-{domain}-{report.rows - 1}"
            sample = blend_row_to_sample(record, category, sample_id, report)
            samples[domain].append(validate_sample(sample, f"{record.location} ({category})"))
        report.kept[domain] += 1
    return BlendResult(samples, report)


def load_rl_blend(data_cfg: Any, domains: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Validated RL samples per requested domain; what was dropped or unresolved is printed to stderr."""
    result = read_rl_blend(data_cfg, domains)
    if lines := result.report.lines():
        console = Console(stderr=True)
        for line in lines:
            console.print(f"[yellow]nemotron RL blend:[/] {line}")
    return result.samples


# -------------------------------------------------------------------------------------------------
# SFT blend

# Nemotron v3 SFT subsets and the paper's per-subset counts (14,121,873 rows in all).
SFT_SUBSETS: dict[str, dict[str, Any]] = {
    "math_proofs": {"source": "nvidia/Nemotron-Math-Proofs-v1", "count": 335_122},
    "math": {"source": "nvidia/Nemotron-Math-v2", "count": 2_950_525},
    "science": {"source": "nvidia/Nemotron-Science-v1", "count": 2_263_340},
    "code": {"source": "nvidia/Nemotron-Competitive-Programming-v1", "count": 3_927_984},
    "chat": {"source": "nvidia/Nemotron-Instruction-Following-Chat-v1", "count": 4_309_780},
    "agent": {"source": "nvidia/Nemotron-Agentic-v1", "count": 335_122},
}
REASONING_FORMATS = ("fold", "field")


def _tool_calls(raw: Any, where: str) -> list[dict[str, Any]] | None:
    """Tool calls as [{type, function: {name, arguments (JSON string)}}], the shape chat templates read."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.strip() else []
    if not isinstance(raw, list):
        raise UserError(f"{where}: tool_calls must be a list")
    calls = []
    for call in raw:
        function = call.get("function", call) if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise UserError(f"{where}: every tool call needs a function name")
        arguments = function.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append({"type": "function", "function": {"name": function["name"], "arguments": arguments}})
    return calls or None


def normalize_conversation(
    row: Mapping[str, Any], where: str, reasoning: str = "fold"
) -> tuple[dict[str, Any] | None, str]:
    """One SFT row as {messages, tools} for TRL, or (None, why it is skipped).

    `reasoning="fold"` writes a non-empty reasoning_content into the assistant content as
    `<think>\\n...\\n</think>\\n\\n` (the Qwen3 template reads it back out); `"field"` keeps it as
    `reasoning_content`. An empty reasoning adds nothing: the Qwen3 template then renders an empty
    think block, which the paper masks out of the loss.
    """
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, "no messages"
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise UserError(f"{where}: message {i} needs a role")
        role = message["role"]
        content = message.get("content")
        if content is None:
            content = ""
        elif not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False)
        thought = message.get("reasoning_content")
        thought = thought.strip() if isinstance(thought, str) else ""
        calls = _tool_calls(message.get("tool_calls"), f"{where} message {i}")
        if role == "user" and content.strip() == "-":
            return None, "placeholder prompt '-' (question held in an external dataset)"
        if role in ("user", "assistant") and not content.strip() and not thought and not calls:
            return None, f"empty {role} message"
        entry: dict[str, Any] = {"role": role, "content": content, "tool_calls": calls}
        if role == "assistant" and reasoning == "fold" and thought and "</think>" not in content:
            entry["content"] = f"<think>\n{thought}\n</think>\n\n{content.lstrip()}"
        if reasoning == "field":
            entry["reasoning_content"] = thought if role == "assistant" else None
        out.append(entry)
    if not any(m["role"] == "assistant" for m in out):
        return None, "no assistant message"
    tools = row.get("tools")
    if isinstance(tools, str):
        tools = json.loads(tools) if tools.strip() else None
    return {"messages": out, "tools": json.dumps(tools, ensure_ascii=False) if tools else None}, ""


def _sft_features(reasoning: str):
    # lazy: datasets (heavy), only where a dataset file is read or written
    from datasets import Features, List, Value

    message = {
        "role": Value("string"),
        "content": Value("string"),
        "tool_calls": List(
            {"type": Value("string"), "function": {"name": Value("string"), "arguments": Value("string")}}
        ),
    }
    if reasoning == "field":
        message["reasoning_content"] = Value("string")
    return Features({"messages": List(message), "tools": Value("string")})


def _generate(subset: str, spec: dict[str, Any], reasoning: str, signature: str) -> Iterator[dict[str, Any]]:
    """Rows of one subset for `Dataset.from_generator` (`signature` only keys its cache); skips are reported."""
    skipped: Counter = Counter()
    cursor = RecordCursor(
        iter_records(str(spec["source"]), spec.get("split"), spec.get("name"), spec.get("files"))
    )
    for record in cursor:
        with cursor.reading():
            row, reason = normalize_conversation(record.row, f"{record.location} ({subset})", reasoning)
        if row is None:
            skipped[reason] += 1
            continue
        yield row
    if skipped:
        console = Console(stderr=True)
        for reason, count in sorted(skipped.items()):
            console.print(f"[yellow]SFT subset {subset}:[/] skipped {count} row(s): {reason}")


def _source_signature(spec: dict[str, Any]) -> str:
    """Identifies a subset's inputs (paths with size and mtime), so a changed file is re-read."""
    parts = [json.dumps(spec, sort_keys=True, default=str)]
    if is_local(str(spec["source"])):
        for path in local_files(str(spec["source"]), spec.get("split")):
            stat = Path(path).stat()
            parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def sft_subsets(data_cfg: Any) -> dict[str, dict[str, Any]]:
    """The configured SFT subsets ({name: {source, split, count}}), checked."""
    cfg = _container(data_cfg)
    subsets = (cfg.get("sft") or {}).get("subsets")
    if not isinstance(subsets, dict) or not subsets:
        raise UserError("data config has no sft.subsets (name: {source, split, count}) for the SFT blend")
    for name, spec in subsets.items():
        if not isinstance(spec, dict) or not spec.get("source"):
            raise UserError(f"data.sft.subsets.{name}: needs a source (hub id or local path)")
        if spec.get("count") is not None and int(spec["count"]) < 0:
            raise UserError(f"data.sft.subsets.{name}.count must be >= 0 or null (all rows)")
    return subsets


def load_sft_conversations(data_cfg: Any):
    """The SFT blend as a shuffled `datasets.Dataset` with `messages` (and `tools`) columns for SFTTrainer.

    Each subset is sampled to its `count` (without replacement when it has enough rows, else all
    rows plus a seeded draw with replacement, as the paper's preparation does); `count: null` keeps
    every row.
    """
    # lazy: datasets (heavy), only where a dataset file is read or written
    import datasets

    cfg = _container(data_cfg)
    sft = cfg.get("sft") or {}
    reasoning = sft.get("reasoning", "fold")
    if reasoning not in REASONING_FORMATS:
        raise UserError(
            f"data.sft.reasoning must be one of {', '.join(REASONING_FORMATS)}, got {reasoning!r}"
        )
    seed = int(sft.get("seed", cfg.get("seed", 0)))
    features = _sft_features(reasoning)
    parts = []
    for subset, spec in sft_subsets(data_cfg).items():
        if spec.get("count") == 0:
            continue
        try:
            part = datasets.Dataset.from_generator(
                _generate,
                features=features,
                cache_dir=sft.get("cache_dir"),
                gen_kwargs={
                    "subset": subset,
                    "spec": spec,
                    "reasoning": reasoning,
                    "signature": _source_signature(spec),
                },
            )
        except datasets.exceptions.DatasetGenerationError as exc:
            if isinstance(exc.__cause__, UserError):  # a bad row: its one-line message, not the wrapper's
                raise exc.__cause__ from None
            raise
        if len(part) == 0:
            raise UserError(f"SFT subset {subset} ({spec['source']}) has no usable conversations")
        parts.append(part.select(sample_indices(len(part), spec.get("count"), seed=f"{seed}:{subset}")))
    if not parts:
        raise UserError("every SFT subset has count 0; nothing to train on")
    return datasets.concatenate_datasets(parts).shuffle(seed=seed)


def sample_indices(size: int, count: int | None, seed: int | str) -> list[int]:
    """`count` row numbers out of `size`: a permutation prefix, topped up with replacement if short."""
    rng = random.Random(seed)
    if count is None:
        return list(range(size))
    count = int(count)
    if count <= size:
        return sorted(rng.sample(range(size), count))
    return list(range(size)) + [rng.randrange(size) for _ in range(count - size)]
