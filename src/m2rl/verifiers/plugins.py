"""Reward types as plugins: a user's scorer registered without touching m2rl.

Two ways in, both ending in `kinds.register` (the call the built-in types make):

* the config: `verifiers.custom.<rm_type>=<target>`, where the target is `package.module:function`
  (importable from the working directory or the environment) or `path/to/file.py:function` (a
  relative path is taken from the working directory), or a mapping with that target under `score`
  and any of `domain`, `check`, `budget_s`, `queue_depth`;
* an installed package's `m2rl.rewards` entry points: the entry point's name is the rm_type and it
  points at a scoring function or at a ready `m2rl.verifiers.RewardType`. Entry points are looked
  up by name when a sample names an rm_type (or a domain) that nothing else registered, so a broken
  package costs only the runs that use it.

A scoring function is called as `score(sample, text)` -- `text` being what the think gate lets
through -- or, if it takes a third positional parameter, `score(sample, text, config)`. It returns
a bool, a number in [0, 1], a `(reward, reason)` pair or a `Verdict`. It may carry the rest of the
declaration as attributes (`domain`, `check`, `budget_s`, `queue_depth`); the config mapping wins.
Defaults: domain = the rm_type's name, no sample check, 10 s per item, queue depth 16.

A plugin gets the built-ins' treatment: its `check` runs when data is validated, it scores in the
worker pool under its per-item deadline (a hang costs the item 0 and the worker is replaced), and
the registry turns an exception or a reward outside [0, 1] into 0 with the reason. Problems with the
plugin itself (unknown module or file, missing function, wrong signature, bad option) are a
UserError when the config is read: one line, exit 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from m2rl.errors import UserError
from m2rl.verifiers.kinds import RM_TYPES, RewardType, register
from m2rl.verifiers.verdict import Verdict, verdict

ENTRY_POINT_GROUP = "m2rl.rewards"
DEFAULT_BUDGET_S = 10.0
DEFAULT_QUEUE_DEPTH = 16
OPTIONS = ("score", "domain", "check", "budget_s", "queue_depth")

_USED: set[tuple[tuple[str, str], ...]] = set()
_DISCOVERED: set[str] = set()


def custom_entries(node: Any) -> tuple[tuple[str, str], ...]:
    """`verifiers.custom` as sorted (rm_type, target) pairs, a mapping target as JSON (hashable, picklable)."""
    if node is None:
        return ()
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, Mapping):
        raise UserError(f"verifiers.custom: expected a mapping rm_type -> module:function, got {node!r}")
    entries = []
    for name, target in node.items():
        if target is None:  # `verifiers.custom.sql=null` drops one
            continue
        if isinstance(target, Mapping):
            target = json.dumps(dict(target), sort_keys=True)
        elif not isinstance(target, str):
            raise UserError(f"verifiers.custom.{name}: expected module:function or a mapping, got {target!r}")
        entries.append((str(name), target))
    return tuple(sorted(entries))


def use_plugins(entries: tuple[tuple[str, str], ...]) -> None:
    """Register the config's plugins in this process (once per set of entries)."""
    if not entries or entries in _USED:
        return
    for name, target in entries:
        options = json.loads(target) if target.startswith("{") else {"score": target}
        register(reward_type_of(name, options, f"verifiers.custom.{name}"), replace=True)
    _USED.add(entries)


def discover(name: str) -> None:
    """Register the installed `m2rl.rewards` entry point called `name`, if there is one and it is not yet in."""
    if name in _DISCOVERED or name in RM_TYPES:
        return
    _DISCOVERED.add(name)
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name != name:
            continue
        where = f"entry point {point.name} = {point.value} ({ENTRY_POINT_GROUP})"
        try:
            target = point.load()
        except Exception as exc:
            raise UserError(f"{where}: could not load ({type(exc).__name__}: {_first_line(exc)})") from None
        register(reward_type_of(name, {"score": target}, where))
        return


def installed_plugins() -> list[str]:
    """The names of the installed `m2rl.rewards` entry points."""
    return sorted({point.name for point in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def reward_type_of(name: str, options: Mapping[str, Any], where: str) -> RewardType:
    """The RewardType a plugin declares; UserError (naming `where`) for anything wrong with it."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UserError(f"{where}: unknown option(s) {', '.join(unknown)}; expected {', '.join(OPTIONS)}")
    if "score" not in options:
        raise UserError(f"{where}: no `score` (module:function)")
    target = options["score"]
    scorer = load_target(target, where) if isinstance(target, str) else target
    if isinstance(scorer, RewardType):
        kind = scorer
        if kind.name != name:
            raise UserError(f"{where}: declares reward type {kind.name!r}, registered as {name!r}")
        return kind
    if not callable(scorer):
        raise UserError(f"{where}: {target!r} is {type(scorer).__name__}, not a function")
    takes_config = _positional_arity(scorer, where, ("sample", "text"), "config")

    def option(key: str, default: Any) -> Any:
        return options[key] if options.get(key) is not None else getattr(scorer, key, default)

    domain = option("domain", name)
    if not isinstance(domain, str) or not domain:
        raise UserError(f"{where}: domain must be a non-empty string, got {domain!r}")
    try:
        budget = float(option("budget_s", DEFAULT_BUDGET_S))
        depth = int(option("queue_depth", DEFAULT_QUEUE_DEPTH))
    except (TypeError, ValueError):
        raise UserError(f"{where}: budget_s must be a number and queue_depth an integer") from None
    if budget <= 0 or depth < 1:
        raise UserError(f"{where}: budget_s must be > 0 and queue_depth >= 1 (got {budget}, {depth})")
    check = option("check", None)
    if isinstance(check, str):
        check = load_target(check, f"{where} check")
    if check is not None:
        if not callable(check):
            raise UserError(f"{where}: check is {type(check).__name__}, not a function")
        _positional_arity(check, f"{where} check", ("sample",), None)
    label = f"{where} ({target})" if isinstance(target, str) else where
    return RewardType(
        name,
        domain,
        _plugin_check(check, name),
        _plugin_scorer(scorer, name, takes_config),
        lambda sample, config, seconds=budget: seconds,
        queue_depth=depth,
        origin=label,
    )


def _positional_arity(
    function: Callable[..., Any], where: str, needed: tuple[str, ...], optional: str | None
) -> bool:
    """True if `function` takes the `needed` positional arguments plus `optional`; False if only the
    needed ones; UserError naming its signature otherwise."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False  # a builtin without a signature: trust it
    for arguments, answer in (((*needed, optional), True), (needed, False)):
        if arguments[-1] is None:
            continue
        try:
            signature.bind(*arguments)
            return answer
        except TypeError:
            pass
    shown = f"{getattr(function, '__name__', function)}{signature}"
    expected = ", ".join(needed) + (f"[, {optional}]" if optional else "")
    raise UserError(
        f"{where}: {shown} cannot be called as f({', '.join(needed)}); expected def f({expected})"
    )


def _plugin_check(check: Callable[[dict[str, Any]], Any] | None, name: str):
    def run(sample: dict[str, Any]) -> str | None:
        if check is None:
            return None
        try:
            problem = check(sample)
        except Exception as exc:  # noqa: BLE001 - a sample the check cannot read is a bad sample
            return f"the {name} plugin's check raised {type(exc).__name__}: {_first_line(exc)}"
        if problem is None or problem is True:
            return None
        return str(problem) if problem is not False else f"rejected by the {name} plugin's check"

    return run


def _plugin_scorer(scorer: Callable[..., Any], name: str, takes_config: bool):
    def run(sample: dict[str, Any], text: str, config: Any) -> Any:
        try:
            return scorer(sample, text, config) if takes_config else scorer(sample, text)
        except BaseException as exc:  # noqa: BLE001 - even SystemExit or a UserError costs only this item
            if isinstance(exc, KeyboardInterrupt):
                raise
            return verdict(False, f"reward plugin {name} raised {type(exc).__name__}: {_first_line(exc)}")

    return run


def load_target(target: str, where: str) -> Any:
    """The object `module.path:attr` or `file.py:attr` names; UserError (one line) if it cannot be had."""
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise UserError(f"{where}: {target!r} is not of the form package.module:function or file.py:function")
    if module_part.endswith(".py"):
        path = Path(module_part).expanduser().resolve()
        if not path.is_file():
            raise UserError(f"{where}: file {module_part} does not exist (relative to {Path.cwd()})")
        module_name = f"m2rl_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise UserError(
                    f"{where}: importing {module_part} failed ({type(exc).__name__}: {_first_line(exc)})"
                ) from None
    else:
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.append(
                str(Path.cwd())
            )  # `my_pkg.rewards` next to where m2rl runs, as `python -m` finds it
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            raise UserError(
                f"{where}: no module named {exc.name or module_part!r} (from {target!r})"
            ) from None
        except Exception as exc:
            raise UserError(
                f"{where}: importing {module_part} failed ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise UserError(f"{where}: {module_part} has no {attr!r}")
        value = getattr(value, part)
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "ENTRY_POINT_GROUP",
    "Verdict",
    "custom_entries",
    "discover",
    "installed_plugins",
    "load_target",
    "reward_type_of",
    "use_plugins",
]
