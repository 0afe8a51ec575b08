"""The canonical sample schema every dataset is converted into, and its validation.

A sample is a plain dict (it travels through `datasets`, JSONL and worker processes unchanged):

    {"id": str, "domain": "math"|"code"|"science"|"if"|..., "rm_type": str,
     "prompt": [{"role": "user"|"system"|"assistant", "content": str}, ...],
     "label": str | None, "metadata": dict}

`label` holds the gold answer where one exists (math answer, science letter); code tests live in
`metadata.unit_tests = {"inputs": [...], "outputs": [...]}` and instruction-following constraints in
`metadata = {"instruction_id_list": [...], "kwargs": [...], "prompt_text": str}`, as in the
Nemotron RL blend. SFT samples additionally carry the target response in `metadata.solution`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from m2rl.errors import UserError
from m2rl.verifiers import check_sample
from m2rl.verifiers.registry import default_rm_type as registered

# The paper's four domains (the built-in data's). Any other domain name works once a reward type
# declares it (m2rl.verifiers.plugins); the domains of a study are the data config's.
DOMAINS = ("math", "code", "science", "if")
# Default reward type of the paper's domains; every domain's default is the reward registry's
# (`m2rl.verifiers.registry.default_rm_type`), which these built-ins are registered into.
DEFAULT_RM_TYPE = {"math": "deepscaler", "code": "unit_test", "science": "gpqa", "if": "ifevalg"}


def default_rm_type(domain: str) -> str | None:
    """The reward type a sample of `domain` without an rm_type gets (the registry's domain default)."""
    return registered(domain)


REQUIRED_FIELDS = ("id", "domain", "prompt")
FIELD_TYPES = (
    ("id", (str, int), "a string or an integer"),
    ("domain", str, "a string"),
    ("rm_type", (str, type(None)), "a string or null"),
    ("label", (str, int, float, type(None)), "a string, a number or null"),
    ("metadata", (dict, type(None)), "an object or null"),
)


def make_sample(
    id: str,
    domain: str,
    prompt: str | list[dict[str, str]],
    label: str | None,
    rm_type: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A sample in canonical form; a string prompt becomes one user message."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return {
        "id": id,
        "domain": domain,
        "rm_type": rm_type or default_rm_type(domain),
        "prompt": messages,
        "label": label,
        "metadata": dict(metadata or {}),
    }


def sft_conversation(sample: dict[str, Any]) -> dict[str, Any]:
    """A `messages` row for SFT: the sample's prompt, then its `metadata.solution` as the assistant's turn."""
    return {"messages": sample["prompt"] + [{"role": "assistant", "content": sample["metadata"]["solution"]}]}


def validate_sample(sample: Any, where: str = "sample", reward: bool = True) -> dict[str, Any]:
    """Check one sample's shape and reward type; raise UserError naming `where` and the problem.

    `reward=False` (SFT conversations) checks the shape alone: no reward type is needed to imitate.
    """
    if not isinstance(sample, dict):
        raise UserError(f"{where}: expected an object, got {type(sample).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in sample]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)}")
    for name, types, expected in FIELD_TYPES:
        value = sample.get(name)
        if name in sample and (not isinstance(value, types) or isinstance(value, bool)):
            found = "null" if value is None else type(value).__name__
            raise UserError(f"{where} (id {sample.get('id')!r}): {name!r} must be {expected}, found {found}")
    prompt = sample["prompt"]
    if not isinstance(prompt, list) or not prompt:
        raise UserError(
            f"{where} (id {sample.get('id')!r}): 'prompt' must be a non-empty list of chat messages"
        )
    for i, message in enumerate(prompt):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("content"), str)
            or not isinstance(message.get("role"), str)
        ):
            raise UserError(
                f"{where} (id {sample.get('id')!r}): prompt message {i} needs 'role' and string 'content'"
            )
    if not reward:
        out = dict(sample)
        out.setdefault("label", None)
        out["metadata"] = dict(out.get("metadata") or {})
        return out
    rm_type = sample.get("rm_type") or default_rm_type(sample["domain"])
    if rm_type is None:
        raise UserError(
            f"{where} (id {sample.get('id')!r}): no rm_type and domain {sample['domain']!r} has no default reward type"
        )
    out = dict(sample)
    out["rm_type"] = rm_type
    out.setdefault("label", None)
    out["metadata"] = dict(out.get("metadata") or {})
    check_sample(out, where)
    return out


def validate_samples(samples: Iterable[Any], source: str) -> list[dict[str, Any]]:
    """Validate every sample, naming the source and row (from 1) of the first bad one."""
    return [validate_sample(s, f"{source} row {i}") for i, s in enumerate(samples, 1)]
