"""Merge methods: one `conf/merge/<name>.yaml` each, resolved and validated before any work.

A method file names its backend (`mergekit` or `paper`), the algorithm inside that backend, the
engine options below, and every method parameter as a flat key (so `merge.density=0.3` overrides
it). mergekit parameters are checked against the method's own declared `ParameterSpec`s; the
paper's against `PAPER_PARAMETERS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from m2rl.config import conf_dir
from m2rl.errors import UserError

BACKENDS = ("mergekit", "paper")
# Keys of a method file that configure the engine rather than the algorithm.
OPTION_KEYS = ("method", "backend", "algorithm", "dtype", "seed", "max_shard_bytes")
OPTION_DEFAULTS: dict[str, Any] = {"dtype": "float32", "seed": 0, "max_shard_bytes": 2_000_000_000}
PAPER_METHODS = ("paper_average", "paper_ta", "paper_ties", "paper_dare_ta", "paper_dare_ties", "paper_sce")

# Paper algorithms: parameter -> (type, default). `drop_rate` switches DARE on.
PAPER_PARAMETERS: dict[str, dict[str, tuple[type, Any]]] = {
    "task_arithmetic": {"lambda": (float, 1.0), "drop_rate": (float, None)},
    "ties": {"density": (float, 0.2), "lambda": (float, 1.0), "drop_rate": (float, None)},
    "sce": {},
}
# Ranges shared by both backends: name -> (low, high, low inclusive, high inclusive).
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "density": (0.0, 1.0, False, True),
    "drop_rate": (0.0, 1.0, True, False),
    "epsilon": (0.0, 1.0, True, False),
    "gamma": (0.0, 1.0, True, False),
    "select_topk": (0.0, 1.0, False, True),
    "r": (0.0, math.inf, True, False),  # RAM+: how much more an expert's unique updates count
    "alpha": (0.0, math.inf, True, False),  # RAM+: the cap of the shared / unique ratio
}


@dataclass(frozen=True)
class MergeMethod:
    """A resolved, validated merge method."""

    name: str
    backend: str
    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "backend": self.backend,
            "algorithm": self.algorithm,
            "params": dict(self.params),
        }


def available_methods() -> list[str]:
    """Names of the merge methods configured in conf/merge."""
    return sorted(p.stem for p in (conf_dir() / "merge").glob("*.yaml"))


def method_section(method: str) -> dict[str, Any]:
    """The raw `merge` config section of one method file."""
    path = conf_dir() / "merge" / f"{method}.yaml"
    if not path.is_file():
        raise UserError(f"unknown merge method {method!r}; available: {', '.join(available_methods())}")
    section = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(section, dict):
        raise UserError(f"{path}: a merge method file must be a mapping")
    return section  # type: ignore[return-value]


def _mergekit_specs(algorithm: str) -> dict[str, Any]:
    # lazy: mergekit (heavy), only where its methods are listed
    from mergekit.merge_methods import registry

    try:
        method = registry.get(algorithm)
    except RuntimeError:
        known = ", ".join(sorted(m.spec.name for m in registry.registered_methods()))
        raise UserError(f"mergekit has no merge method {algorithm!r}; it has: {known}") from None
    return {p.name: p for p in method.spec.parameters}


def _check_range(method: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise UserError(f"merge method {method}: parameter {name}={value} must be finite")
    if name in RANGES:
        low, high, low_in, high_in = RANGES[name]
        ok = (value >= low if low_in else value > low) and (value <= high if high_in else value < high)
        if not ok:
            interval = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
            raise UserError(f"merge method {method}: parameter {name}={value} must lie in {interval}")


def _validate_mergekit(method: str, algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
    specs = _mergekit_specs(algorithm)
    checked = {}
    for name, value in params.items():
        if name not in specs:
            valid = ", ".join(sorted(specs)) or "none"
            raise UserError(
                f"merge method {method} (mergekit {algorithm}) has no parameter {name!r}; valid: {valid}"
            )
        try:
            checked[name] = specs[name].validate(value)
        except Exception as exc:  # pydantic ValidationError
            expected = getattr(specs[name].value_type, "__name__", str(specs[name].value_type))
            raise UserError(
                f"merge method {method}: parameter {name}={value!r} is not a valid {expected}"
            ) from exc
        _check_range(method, name, checked[name])
    missing = [n for n, s in specs.items() if s.required and n not in checked]
    if missing:
        raise UserError(
            f"merge method {method} (mergekit {algorithm}) needs parameter(s): {', '.join(missing)}"
        )
    if "epsilon" in checked and "density" in checked:
        density, epsilon = checked["density"], checked["epsilon"]
        if not (0 < density - epsilon and density + epsilon < 1):
            raise UserError(
                f"merge method {method}: density +/- epsilon ({density} +/- {epsilon}) must stay inside (0, 1)"
            )
    return checked


def _validate_paper(method: str, algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
    if algorithm not in PAPER_PARAMETERS:
        raise UserError(
            f"merge method {method}: unknown paper algorithm {algorithm!r}; known: {', '.join(PAPER_PARAMETERS)}"
        )
    specs = PAPER_PARAMETERS[algorithm]
    checked = {}
    for name, value in params.items():
        if name not in specs:
            valid = ", ".join(sorted(specs)) or "none"
            raise UserError(
                f"merge method {method} (paper {algorithm}) has no parameter {name!r}; valid: {valid}"
            )
        kind, _default = specs[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"merge method {method}: parameter {name}={value!r} is not a number")
        checked[name] = kind(value)
        _check_range(method, name, checked[name])
    for name, (_kind, default) in specs.items():
        if name not in checked and default is not None:
            checked[name] = default
    return checked


def resolve_method(section: dict[str, Any], overrides: dict[str, Any] | None = None) -> MergeMethod:
    """Validate a `merge` config section (plus overrides) into a MergeMethod; bad input is a UserError."""
    section = {**section, **(overrides or {})}
    name = section.get("method")
    if not name:
        raise UserError("the merge config has no `method` (pick one with merge=<name>)")
    backend = section.get("backend")
    if backend not in BACKENDS:
        raise UserError(f"merge method {name}: backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    algorithm = section.get("algorithm")
    if not algorithm:
        raise UserError(f"merge method {name}: no `algorithm` given")
    options = {k: section.get(k, v) for k, v in OPTION_DEFAULTS.items()}
    if options["dtype"] not in ("float32", "float64", "bfloat16", "float16"):
        raise UserError(
            f"merge method {name}: dtype must be float32, float64, bfloat16 or float16, not {options['dtype']!r}"
        )
    if isinstance(options["seed"], bool) or not isinstance(options["seed"], int):
        raise UserError(f"merge method {name}: seed must be an integer, not {options['seed']!r}")
    if (
        isinstance(options["max_shard_bytes"], bool)
        or not isinstance(options["max_shard_bytes"], int)
        or options["max_shard_bytes"] <= 0
    ):
        raise UserError(f"merge method {name}: max_shard_bytes must be a positive integer")
    params = {k: v for k, v in section.items() if k not in OPTION_KEYS}
    if backend == "mergekit":
        params = _validate_mergekit(name, algorithm, params)
    else:
        params = _validate_paper(name, algorithm, params)
        if "drop_rate" in params:
            params["seed"] = options["seed"]
    return MergeMethod(name, backend, algorithm, params, options)


def load_method(method: str, overrides: dict[str, Any] | None = None) -> MergeMethod:
    """A method from conf/merge by name, with parameter overrides, validated."""
    return resolve_method(method_section(method), overrides)
