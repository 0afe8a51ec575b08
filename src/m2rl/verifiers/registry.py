"""The built-in reward types, and `score`/`check_sample`/`reward_type` over every registered type.

One registry (m2rl.verifiers.kinds), filled by `register`: the built-in types below register through it exactly as a
user's plugins do (m2rl.verifiers.plugins: `verifiers.custom.<name>=module:function` in the config,
or the `m2rl.rewards` entry point group of an installed package). The first type registered for a
domain is that domain's default, and the domain name is accepted as an rm_type alias for it.

Routing is by `sample["rm_type"]`; without one, the domain name picks its default type. An unknown
type, or a sample missing what its type needs, is a UserError (raised at data-validation time by
`check_sample`, and by `score`), never a silent 0. Responses, on the other hand, never raise: any
string scores in [0, 1], and a scorer's reward outside [0, 1] (or not a number) scores 0 with the
reason, whichever type produced it.
"""

from __future__ import annotations

from typing import Any

from m2rl.errors import UserError
from m2rl.verifiers.config import VerifierConfig
from m2rl.verifiers.gate import scored_text
from m2rl.verifiers.instruction_following import unsupported_ids, verify
from m2rl.verifiers.kinds import DOMAIN_ALIASES, RM_TYPES, Budget, RewardType, register
from m2rl.verifiers.math_answer import score_math
from m2rl.verifiers.multiple_choice import score_choice, valid_letters
from m2rl.verifiers.plugins import discover, use_plugins
from m2rl.verifiers.sandbox import Limits, make_sandbox, require_isolation
from m2rl.verifiers.unit_tests import score_code, unit_tests_of
from m2rl.verifiers.verdict import Verdict, short, verdict


# ---------------------------------------------------------------------------------------------
# math
def _check_math(sample: dict[str, Any]) -> str | None:
    label = sample.get("label")
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        return None
    if not isinstance(label, str) or not label.strip():
        return "math sample needs a non-empty 'label' (the gold answer)"
    return None


def _score_math(sample: dict[str, Any], text: str, config: VerifierConfig) -> Verdict:
    return score_math(str(sample["label"]), text, config.math_timeout_s)


# ---------------------------------------------------------------------------------------------
# science
def _check_gpqa(sample: dict[str, Any]) -> str | None:
    label = sample.get("label")
    letters = valid_letters(sample)
    if not isinstance(label, str) or label.strip().upper() not in letters or len(label.strip()) != 1:
        return f"gpqa sample needs 'label' to be one letter of {letters}, got {label!r}"
    return None


def _score_gpqa(sample: dict[str, Any], text: str, config: VerifierConfig) -> Verdict:
    return score_choice(str(sample["label"]), text, valid_letters(sample))


# ---------------------------------------------------------------------------------------------
# code
def _check_code(sample: dict[str, Any]) -> str | None:
    try:
        unit_tests_of(sample)
    except ValueError as exc:
        return str(exc)
    return None


def code_limits(config: VerifierConfig) -> Limits:
    """Sandbox limits from the config."""
    return Limits(
        time_limit_s=config.code_time_limit_s,
        memory_mb=config.code_memory_limit_mb,
        output_limit_bytes=int(config.code_output_limit_mb * (1 << 20)),
        max_processes=config.code_max_processes,
    )


def _score_code(sample: dict[str, Any], text: str, config: VerifierConfig) -> Verdict:
    sandbox = make_sandbox(config.sandbox_url, config.sandbox)
    return score_code(sample, text, sandbox, code_limits(config), config.code_max_tests, config.seed)


def _code_budget(sample: dict[str, Any], config: VerifierConfig) -> float:
    try:
        count = min(len(unit_tests_of(sample)[0]), config.code_max_tests)
    except ValueError:
        count = 1
    return count * (code_limits(config).wall_limit_s + 2.0) + 10.0


# ---------------------------------------------------------------------------------------------
# instruction following (checkers live in the instruction_following package)
def _check_if(sample: dict[str, Any]) -> str | None:
    metadata = sample.get("metadata") or {}
    ids = metadata.get("instruction_id_list")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return "instruction-following sample needs metadata.instruction_id_list (a non-empty list of ids)"
    kwargs = metadata.get("kwargs")
    if kwargs is not None and (not isinstance(kwargs, list) or len(kwargs) != len(ids)):
        return f"metadata.kwargs must be a list with one entry per instruction id ({len(ids)})"
    if kwargs is not None and not all(k is None or isinstance(k, dict) for k in kwargs):
        return "metadata.kwargs entries must be objects or null"
    missing = unsupported_ids(ids)
    if missing:
        return f"unsupported instruction id(s): {', '.join(missing)}"
    return None


def _prompt_text(sample: dict[str, Any]) -> str:
    metadata = sample.get("metadata") or {}
    if isinstance(metadata.get("prompt_text"), str):
        return metadata["prompt_text"]
    users = [
        m.get("content", "")
        for m in sample.get("prompt") or []
        if isinstance(m, dict) and m.get("role") == "user"
    ]
    return users[-1] if users else ""


def normalise_kwargs(kwargs: list[Any] | None, count: int) -> list[dict[str, Any]]:
    """One dict per instruction: null -> {}, None-valued keys dropped."""
    items = list(kwargs or [])
    items += [None] * (count - len(items))
    return [{k: v for k, v in (item or {}).items() if v is not None} for item in items[:count]]


def _score_if(sample: dict[str, Any], text: str, config: VerifierConfig) -> Verdict:
    metadata = sample.get("metadata") or {}
    ids = list(metadata["instruction_id_list"])
    kwargs = normalise_kwargs(metadata.get("kwargs"), len(ids))
    ok, reason = verify(text, ids, kwargs, _prompt_text(sample), strict=config.if_strict)
    return verdict(bool(ok), reason)


def _fixed_budget(seconds: float) -> Budget:
    return lambda sample, config: seconds


# ---------------------------------------------------------------------------------------------
for _kind in (
    RewardType("deepscaler", "math", _check_math, _score_math, lambda s, c: c.math_timeout_s + 5.0),
    RewardType("gpqa", "science", _check_gpqa, _score_gpqa, _fixed_budget(10.0)),
    RewardType("unit_test", "code", _check_code, _score_code, _code_budget, queue_depth=4, sandboxed=True),
    RewardType("ifevalg", "if", _check_if, _score_if, _fixed_budget(20.0)),
    RewardType("ifbench", "if", _check_if, _score_if, _fixed_budget(20.0)),
):
    register(_kind)


def default_rm_type(domain: str) -> str | None:
    """The reward type a sample of `domain` without an rm_type gets (None if the domain has none)."""
    if domain not in DOMAIN_ALIASES:
        discover(domain)  # an installed plugin of that name may declare it
    return DOMAIN_ALIASES.get(domain)


def reward_type(sample: dict[str, Any], where: str = "sample") -> RewardType:
    """The reward type of a sample (its rm_type, else its domain's default); UserError if unknown."""
    if not isinstance(sample, dict):
        raise UserError(f"{where}: a sample must be an object, got {type(sample).__name__}")
    name = sample.get("rm_type") or default_rm_type(str(sample.get("domain")))
    if name is None:
        raise UserError(
            f"{where} (id {sample.get('id')!r}): no rm_type and domain {sample.get('domain')!r} has no default; "
            f"set rm_type to one of {', '.join(RM_TYPES)} (or register a reward plugin for it)"
        )
    if name not in RM_TYPES:
        discover(name)
    if name not in RM_TYPES:
        raise UserError(
            f"{where} (id {sample.get('id')!r}): unknown rm_type {name!r}; choose from {', '.join(RM_TYPES)} "
            "or register a reward plugin (verifiers.custom.<name>=module:function)"
        )
    return RM_TYPES[name]


def check_runnable(samples: list[dict[str, Any]], config: VerifierConfig) -> None:
    """UserError if code samples would run in a local sandbox that cannot isolate them here
    (unless `verifiers.code.allow_unsandboxed`); probed once per process."""
    if config.sandbox_url is None and any(reward_type(s).sandboxed for s in samples):
        require_isolation(config.sandbox)


def check_sample(sample: dict[str, Any], where: str) -> None:
    """Raise UserError (naming `where`, the id and the problem) unless the sample can be scored."""
    kind = reward_type(sample, where)
    problem = kind.check(sample)
    if problem:
        raise UserError(f"{where} (id {sample.get('id')!r}, rm_type {kind.name}): {problem}")


def score(sample: dict[str, Any], response: str, config: VerifierConfig | None = None) -> Verdict:
    """Score one response to one sample: binary reward and reason; raises only for a bad sample."""
    config = config or VerifierConfig()
    if config.custom:
        use_plugins(config.custom)  # a worker process learns the config's plugins here
    check_sample(sample, "sample")
    kind = reward_type(sample)
    text = scored_text(response, config.require_think)
    if text is None:
        return verdict(False, "no </think>")
    try:
        result = kind.score(sample, text, config)
    except UserError:
        raise
    except Exception as exc:  # a verifier bug must not kill training; the reason records it
        return verdict(False, f"verifier error {type(exc).__name__}: {exc}")
    return checked_verdict(result, kind.name)


def checked_verdict(result: Any, name: str) -> Verdict:
    """A scorer's result as a Verdict with a reward in [0, 1]; anything else scores 0 with the reason."""
    if isinstance(result, Verdict):
        reward, reason = result.reward, result.reason
    elif isinstance(result, tuple) and len(result) == 2:
        reward, reason = result
    else:
        reward, reason = result, ""
    try:
        value = float(reward)
    except (TypeError, ValueError):
        return verdict(False, f"reward type {name} returned {short(repr(reward), 60)}, not a number")
    if not 0.0 <= value <= 1.0:  # also NaN
        return verdict(False, f"reward type {name} returned {value!r}, outside [0, 1]")
    if not reason:
        reason = "correct" if value == 1.0 else "incorrect" if value == 0.0 else f"partial {value:g}"
    return Verdict(value, short(str(reason)))
