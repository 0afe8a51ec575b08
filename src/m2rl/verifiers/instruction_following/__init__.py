"""Instruction-following verifier: IFEval's 25 instructions, IFEvalG's extensions and IFBench's test set.

`verify(response, instruction_id_list, kwargs, prompt_text, strict)` is True iff every listed
instruction is followed. strict=True is IFEval's strict test (an empty response follows nothing);
strict=False is IFEval's loose test, which also accepts the response with its first and/or last
line removed and/or with asterisks stripped. It never raises: a checker error, unusable kwargs or
a checker's model that is not installed (`unavailable_ids`) count as "not followed" with a reason
that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from m2rl.verifiers.instruction_following import ifbench, ifeval, ifevalg, tagger
from m2rl.verifiers.instruction_following.kwargs import BadKwargs, normalise

CHECKERS: dict[str, ifeval.Checker] = {**ifeval.CHECKERS, **ifevalg.CHECKERS, **ifbench.CHECKERS}

SUPPORTED_IDS: tuple[str, ...] = tuple(CHECKERS)
IFEVAL_IDS: tuple[str, ...] = tuple(ifeval.CHECKERS)

__all__ = [
    "IFEVAL_IDS",
    "SUPPORTED_IDS",
    "follow_list",
    "loose_variants",
    "unavailable_ids",
    "unsupported_ids",
    "verify",
]


def unsupported_ids(ids: Sequence[str]) -> list[str]:
    """The ids (in order, without repeats) this verifier cannot check."""
    seen: list[str] = []
    for instruction_id in ids:
        if instruction_id not in CHECKERS and instruction_id not in seen:
            seen.append(str(instruction_id))
    return seen


def unavailable_ids(ids: Sequence[str]) -> dict[str, str]:
    """The ids (in order, without repeats) whose checker needs a model not installed here, with what to install.

    Such an instruction is never followed here: its reason is this message.
    """
    if not any(i in ifbench.NEEDS_TAGGER for i in ids) or tagger.available():
        return {}
    return {str(i): str(tagger.TaggerUnavailable()) for i in dict.fromkeys(ids) if i in ifbench.NEEDS_TAGGER}


def loose_variants(response: str) -> list[str]:
    """IFEval's loose-mode candidates: as is, without asterisks, without first/last/both lines."""
    lines = response.split("\n")
    first = "\n".join(lines[1:]).strip()
    last = "\n".join(lines[:-1]).strip()
    both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        first,
        last,
        both,
        first.replace("*", ""),
        last.replace("*", ""),
        both.replace("*", ""),
    ]


def _check(instruction_id: str, candidates: list[str], kw: dict[str, Any]) -> tuple[bool, str | None]:
    checker = CHECKERS[instruction_id]
    for candidate in candidates:
        if candidate.strip() and checker(candidate, kw):
            return True, None
    return False, None


def follow_list(
    response: str,
    instruction_id_list: Sequence[str],
    kwargs: Sequence[dict[str, Any] | None] | None,
    strict: bool = True,
) -> list[tuple[bool, str | None]]:
    """Per instruction: (followed, problem) where problem names bad kwargs or a checker error."""
    if not isinstance(response, str):
        response = "" if response is None else str(response)
    candidates = [response] if strict else loose_variants(response)
    kwargs_list = list(kwargs or [])
    results: list[tuple[bool, str | None]] = []
    for index, instruction_id in enumerate(instruction_id_list):
        if instruction_id not in CHECKERS:
            results.append((False, "unsupported"))
            continue
        try:
            kw = normalise(kwargs_list[index] if index < len(kwargs_list) else None)
            results.append(_check(instruction_id, candidates, kw))
        except BadKwargs as error:
            results.append((False, f"bad kwargs ({error})"))
        except tagger.TaggerUnavailable as error:
            results.append((False, str(error)))
        except Exception as error:  # noqa: BLE001 - a reward never raises; the reason records it
            results.append((False, f"error {type(error).__name__}"))
    return results


def verify(
    response: str,
    instruction_id_list: list[str],
    kwargs: list[dict | None],
    prompt_text: str,
    strict: bool = True,
) -> tuple[bool, str]:
    """(all instructions followed, short reason such as 'failed: punctuation:no_comma')."""
    try:
        ids = list(instruction_id_list or [])
        if not ids:
            return False, "no instructions"
        results = follow_list(response, ids, kwargs, strict)
    except Exception as error:  # noqa: BLE001 - malformed rows score 0 with a reason, never raise
        return False, f"error {type(error).__name__}"
    failed = []
    for instruction_id, (followed, problem) in zip(ids, results, strict=True):
        if not followed:
            failed.append(f"{instruction_id} {problem}" if problem else str(instruction_id))
    if failed:
        return False, "failed: " + ", ".join(failed)
    return True, f"all {len(ids)} followed"
