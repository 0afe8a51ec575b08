"""Science reward (gpqa): the final answer letter of a multiple-choice response.

Hand-written because the reference extractor has no word boundaries ("The answer depends..."
reads as D). Every explicit answer statement is found ("Answer: C", "Answer: (C)", "\\boxed{C}",
"the correct option is C", "option C is correct", lower case too); the last one in the text wins.
A lower-case letter counts only where it cannot be an English word ("answer is a cat" is not A).
An "I" followed by a lower-case word is the pronoun ("Answer: I think..."), not option I. A
response that is nothing but a letter ("C", "(C)", "**C**") also counts. Letters are A-H and
whatever the sample's valid letters add (MMLU-Pro's ten options go to J), so a statement of any
letter the item could have is seen, and one outside its valid letters scores 0.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Any

from m2rl.verifiers.verdict import Verdict, verdict

DEFAULT_LETTERS = "ABCDEFGH"
_END = r"(?![A-Za-z0-9_])"
_WORDY_AFTER = re.compile(r"\s*[A-Za-z0-9]")
_PRONOUN_AFTER = re.compile(r" [a-z]")


@lru_cache(maxsize=64)
def _patterns(letters: str) -> tuple[list[re.Pattern[str]], re.Pattern[str]]:
    """The statement patterns and the bare-response pattern for a letter set (A-H plus `letters`)."""
    chars = "".join(sorted(set(DEFAULT_LETTERS + letters.upper())))
    klass = "[" + re.escape(chars + chars.lower()) + "]"
    letter = r"\(?\s*\*{0,2}(" + klass + r")\*{0,2}\s*\)?"
    statements = [
        re.compile(r"\\boxed\s*\{\s*(?:\\(?:text|textbf|mathrm|mathbf)\s*\{\s*)?" + letter + r"\s*\}?\s*\}"),
        re.compile(
            r"\banswer\b\**(?:\s+is)?\s*(?:would\s+be|should\s+be|will\s+be)?\s*[:=]?\s*\**\s*"
            r"(?:(?:option|choice|letter)\s+)?" + letter + _END,
            re.IGNORECASE,
        ),
        re.compile(
            r"\b(?:correct|right|best|final)\s+(?:option|choice|letter)\b\**(?:\s+is)?\s*[:=]?\s*\**\s*"
            + letter
            + _END,
            re.IGNORECASE,
        ),
        re.compile(
            r"\b(?:option|choice)\s+" + letter + r"\s+is\s+(?:the\s+)?(?:correct|right|answer)\b",
            re.IGNORECASE,
        ),
    ]
    return statements, re.compile(r"^\W*\(?\s*\*{0,2}(" + klass + r")\*{0,2}\s*\)?\W*$")


def valid_letters(sample: dict[str, Any]) -> str:
    """The letters a sample accepts: metadata.valid_letters, else one per option (A, B, ...), else A-H."""
    metadata = sample.get("metadata") or {}
    letters = metadata.get("valid_letters")
    if letters:
        return "".join(str(x).strip().upper() for x in letters)
    options = metadata.get("options") or metadata.get("choices")
    if isinstance(options, (list, tuple)) and options:
        return string.ascii_uppercase[: len(options)]
    return DEFAULT_LETTERS


def extract_letter(text: str, letters: str = DEFAULT_LETTERS) -> str | None:
    """The letter of the last explicit answer statement in `text`, upper-cased; None if none.

    Statements of A-H and of any of `letters` are recognised.
    """
    statements, bare_response = _patterns(letters)
    text = " ".join(text.split())  # single spaces keep backtracking between optional-space pieces bounded
    best: tuple[int, str] | None = None
    for pattern in statements:
        for match in pattern.finditer(text):
            letter = match.group(1)
            if letter.islower() and _WORDY_AFTER.match(text, match.end(1)):
                continue  # "the answer is a cat": an article, not option A
            if letter == "I" and _PRONOUN_AFTER.match(text, match.end(1)):
                continue  # "Answer: I think it is B": the pronoun, not option I
            if best is None or match.start(1) > best[0]:
                best = (match.start(1), letter.upper())
    if best is not None:
        return best[1]
    bare = bare_response.match(text.strip()[:40]) if len(text.strip()) <= 40 else None
    return bare.group(1).upper() if bare else None


def score_choice(label: str, text: str, letters: str) -> Verdict:
    """Reward 1 iff the final stated letter is valid and equals the gold letter."""
    letter = extract_letter(text, letters)
    if letter is None:
        return verdict(False, "no answer letter")
    if letter not in letters:
        return verdict(False, f"letter {letter} is not one of {letters}")
    gold = str(label).strip().upper()
    return verdict(letter == gold, "correct" if letter == gold else f"answered {letter}, expected {gold}")
