"""Replicates: runs of one study and one role (kind, training domains, merge method) over training seeds.

Each group is one row of the comparison. A run joins the first group of its role that has no run of
its seed yet; a run without a recorded seed (older manifests), or a second run of a seed, is a row of
its own. Labels that still collide are told apart by study, then merge backend, then run name.
"""

from __future__ import annotations

from collections.abc import Sequence

from m2rl.compare.records import RunRecord

RoleKey = tuple[str | None, str, tuple[str, ...], str]


def role_key(record: RunRecord) -> RoleKey:
    """What makes two runs replicates of one row: study, kind, training domains (a cascade's in their
    order), merge method."""
    domains = (
        tuple(sorted(record.domains))
        if record.kind == "rl"
        else tuple(record.domains)
        if record.kind == "cascade"
        else ()
    )
    return (record.study, record.kind, domains, (record.merge_method or "").lower())


def group_replicates(records: Sequence[RunRecord]) -> list[list[RunRecord]]:
    """Groups of replicates in first-seen order, each sorted by seed."""
    groups: list[list[RunRecord]] = []
    by_role: dict[RoleKey, list[list[RunRecord]]] = {}
    for record in records:
        candidates = by_role.setdefault(role_key(record), [])
        home = None
        if record.seed is not None:
            home = next(
                (g for g in candidates if g[0].seed is not None and all(r.seed != record.seed for r in g)),
                None,
            )
        if home is None:
            home = []
            candidates.append(home)
            groups.append(home)
        home.append(record)
    for group in groups:
        group.sort(key=lambda r: (r.seed is None, r.seed or 0))
    return groups


# What tells colliding rows apart, tried in this order: study, merge backend, run name, run id.
DISTINGUISHERS = (
    lambda group: group[0].study,
    lambda group: group[0].merge_backend,
    lambda group: group[0].name or None,
    lambda group: group[0].id,
)


def unique_labels(groups: Sequence[list[RunRecord]]) -> list[str]:
    """Each group's label, with a `[study]`, `[backend]` or `[run name]` suffix where labels collide."""
    labels = [group[0].label for group in groups]
    for label in set(labels):
        clashing = [i for i, other in enumerate(labels) if other == label]
        if len(clashing) < 2:
            continue
        for distinguish in DISTINGUISHERS:
            values = [distinguish(groups[i]) for i in clashing]
            if None not in values and len(set(values)) == len(values):
                for i, value in zip(clashing, values, strict=True):
                    labels[i] = f"{label} [{value}]"
                break
    return labels
