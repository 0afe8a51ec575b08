"""Math reward (deepscaler): the last `\\boxed{}` after the last "Answer:", checked for equivalence.

Equivalence is Hendrycks-MATH style string normalisation first (cheap, exact), then math-verify
(sympy) for everything the strings cannot settle. The normaliser is hand-written because
math-verify has no "are these two answer strings the same after MATH normalisation" entry point,
and the fast path keeps integer answers (most of the data) off sympy. The timeout is a SIGALRM
timer around the whole check (math-verify's own alarms are disabled so they cannot cancel it); it
is active in a main thread, which is where batch workers score. Elsewhere the batch pool's hard
per-item deadline is the backstop.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

from m2rl.verifiers.verdict import Verdict, verdict

ANSWER_MARKER = "Answer:"
BOX_COMMANDS = ("\\boxed", "\\fbox")


class MathTimeout(Exception):
    """The equivalence check ran past its time limit."""


def answer_region(text: str) -> str:
    """The text after the last "Answer:", or the whole text when there is none."""
    cut = text.rfind(ANSWER_MARKER)
    return text if cut < 0 else text[cut + len(ANSWER_MARKER) :]


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (nested braces, spaces before the brace allowed) or
    `\\boxed x`; None if there is none."""
    start = max(text.rfind(cmd) for cmd in BOX_COMMANDS)
    if start < 0:
        return None
    rest = text[start:]
    rest = rest[len("\\boxed") :] if rest.startswith("\\boxed") else rest[len("\\fbox") :]
    if rest[:1] in (" ", "\t") and not rest.lstrip(" \t").startswith("{"):
        token = rest.strip().split("$")[0].split()
        return token[0] if token else None
    rest = rest.lstrip(" \t")  # "\\boxed {5}" is "\\boxed{5}" in LaTeX
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, ch in enumerate(rest):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    return None


def extract_answer(text: str) -> str | None:
    """The answer a response commits to: last box in the answer region; None if unboxed."""
    return last_boxed(answer_region(text))


# ---------------------------------------------------------------------------------------------
# MATH-style normalisation
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm)\s*\{([^{}]*)\}")
_UNIT_TAIL = re.compile(r"(?<=[\d}.])\s*\\(?:text|mathrm|mbox|textrm)\s*\{\s*[A-Za-z][A-Za-z .^0-9]*\}\s*$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_ASSIGNMENT = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?!.*=)")
_SIMPLE_FRAC = re.compile(r"\\frac(\d)(\d)")
_SLASH = re.compile(r"^(-?\d+)/(\d+)$")
_NUMBER = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)$")


def normalize(answer: str) -> str:
    """Hendrycks-MATH style canonical string: units, $, \\left/\\right, spaces, x=, %, 1,000 removed."""
    s = answer.strip()
    s = _UNIT_TAIL.sub("", s)
    for old, new in (
        ("\n", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\ ", ""), ("~", ""),
        ("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"),
        ("^{\\circ}", ""), ("^\\circ", ""), ("\\circ", ""), ("\\%", ""), ("%", ""), ("\\$", ""), ("$", ""),
        ("\\displaystyle", ""),
    ):  # fmt: skip
        s = s.replace(old, new)
    s = _TEXT_COMMAND.sub(r"\1", s)
    s = _ASSIGNMENT.sub("", s.strip())
    s = s.replace(" ", "").rstrip(".")
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _SIMPLE_FRAC.sub(r"\\frac{\1}{\2}", s)
    if m := _SLASH.match(s):
        s = f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}"
    if _NUMBER.match(s):
        s = _canonical_number(s)
    return s


def _canonical_number(s: str) -> str:
    value = Fraction(s)
    return str(value.numerator) if value.denominator == 1 else s.lstrip("0") if not s.startswith("-") else s


def _as_fraction(s: str) -> Fraction | None:
    if _NUMBER.match(s):
        return Fraction(s)
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", s)
    if m and int(m.group(3)) != 0:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return -value if m.group(1) else value
    return None


# ---------------------------------------------------------------------------------------------
# equivalence
def load_math_verify() -> None:
    """Import math-verify (and sympy) now, outside any per-item time limit."""
    # lazy: math_verify (sympy, ~1 s), only in a process that scores math (this is its warm-up)
    import math_verify  # noqa: F401

    logging.getLogger("math_verify").setLevel(logging.ERROR)


def _math_verify_equal(gold: str, pred: str) -> bool:
    # lazy: math_verify (sympy, ~1 s), only where a math answer is checked
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    gold_parsed = parse(f"${gold}$", extraction_config=config, parsing_timeout=None)
    pred_parsed = parse(f"${pred}$", extraction_config=config, parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def is_equivalent(gold: str, pred: str) -> bool:
    """True iff the predicted answer equals the gold answer (string normalisation, then sympy)."""
    gold_norm, pred_norm = normalize(gold), normalize(pred)
    if gold_norm == pred_norm and gold_norm:
        return True
    gold_value, pred_value = _as_fraction(gold_norm), _as_fraction(pred_norm)
    if gold_value is not None and pred_value is not None:
        if gold_value == pred_value:
            return True
        # two exact numbers that differ; math-verify only adds float rounding for decimals
        if "." not in gold_norm + pred_norm:
            return False
    if len(pred) > 2000 or len(gold) > 2000 or "\x00" in pred:
        return False
    return _math_verify_equal(gold, pred)


@contextmanager
def time_limit(seconds: float):
    """Raise MathTimeout in the block after `seconds` (main thread only; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise MathTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _guarded(check: Callable[[], bool], seconds: float) -> bool | None:
    """check() under the time limit; None on timeout, False on any error inside the checker."""
    try:
        with time_limit(seconds):
            return check()
    except MathTimeout:
        return None
    except Exception:
        return False


def score_math(label: str, text: str, timeout_s: float = 10.0) -> Verdict:
    """Reward 1 iff the last box after the last "Answer:" is equivalent to the label."""
    answer = extract_answer(text)
    if answer is None:
        return verdict(False, "no \\boxed{} answer")
    if not answer.strip():
        return verdict(False, "empty \\boxed{} answer")
    gold = str(label)
    load_math_verify()
    ok = _guarded(lambda: is_equivalent(gold, answer), timeout_s)
    if ok is None:
        return verdict(False, f"timeout after {timeout_s:g}s checking {answer[:40]!r}")
    if ok:
        return verdict(True, "correct")
    return verdict(False, f"wrong answer {answer[:60]!r} (expected {gold[:40]!r})")
