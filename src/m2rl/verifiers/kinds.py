"""The table of reward types: `RewardType`, the registry (`RM_TYPES`, `DOMAIN_ALIASES`) and `register`.

Its own module, below both the built-in types (m2rl.verifiers.registry) and the plugins
(m2rl.verifiers.plugins), so that either registers here without importing the other. The first type
registered for a domain is that domain's default, and the domain name is an rm_type alias for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from m2rl.errors import UserError
from m2rl.verifiers.verdict import Verdict

# A check returns None when the sample has what its reward type needs, else the problem.
Check = Callable[[dict[str, Any]], str | None]
# The config argument is a m2rl.verifiers.VerifierConfig (not imported here: the config module
# registers plugins, which register here).
Scorer = Callable[[dict[str, Any], str, Any], Verdict]
Budget = Callable[[dict[str, Any], Any], float]


@dataclass(frozen=True)
class RewardType:
    """One reward type: its domain, what a sample must carry, how to score, and its time budget."""

    name: str
    domain: str
    check: Check
    score: Scorer
    budget_s: Budget
    # Items a batch worker may hold queued: many for verifiers that take well under a millisecond
    # (each round trip between processes costs ~90 us on a VM), few for code, whose items take up
    # to seconds and would leave the other workers idle behind a long queue at a batch's end.
    queue_depth: int = 16
    # True where the scorer runs model-written programs and needs the sandbox's isolation checked
    # (`check_runnable`) before a batch starts.
    sandboxed: bool = False
    # Where the type came from: "m2rl" for the built-ins, else the config path or entry point.
    origin: str = "m2rl"


# The registry: rm_type name (and domain alias) -> RewardType. Tests may monkeypatch entries.
RM_TYPES: dict[str, RewardType] = {}
DOMAIN_ALIASES: dict[str, str] = {}  # domain -> its default rm_type


def register(kind: RewardType, replace: bool = False) -> RewardType:
    """Add a reward type; the first one of its domain becomes the domain's default (and alias).

    Registering the same definition again is a no-op; another definition under a taken name (or
    a name that is another domain's alias) is a UserError naming both origins -- except that with
    `replace` (a config's plugins) a plugin of that name from an earlier config gives way.
    """
    existing = RM_TYPES.get(kind.name)
    if existing == kind:
        return existing
    if replace and existing is not None and existing.name == kind.name and existing.origin != "m2rl":
        RM_TYPES.update({key: kind for key, value in RM_TYPES.items() if value is existing})
        if existing.domain != kind.domain and DOMAIN_ALIASES.get(existing.domain) == kind.name:
            del DOMAIN_ALIASES[existing.domain]
            RM_TYPES.pop(existing.domain, None) if existing.domain != kind.name else None
        existing = None
    if existing is not None:
        taken = (
            f"registered by {existing.origin}"
            if existing.name == kind.name
            else f"the {kind.name} domain's alias of {existing.name} ({existing.origin})"
        )
        raise UserError(f"reward type {kind.name!r} from {kind.origin}: the name is already {taken}")
    RM_TYPES[kind.name] = kind
    if kind.domain not in DOMAIN_ALIASES:
        DOMAIN_ALIASES[kind.domain] = kind.name
        RM_TYPES.setdefault(kind.domain, kind)
    return kind
