"""Google IFEval's 25 instruction checkers, reimplemented from its published semantics.

Each checker takes the response text and the instruction's normalised kwargs and returns whether
the instruction is followed, exactly as IFEval's `check_following` decides (keywords are regexes,
as in IFEval; `less than` is strict, `at least` inclusive). The strict/loose wrapping and the
empty-response rule live in the package's `__init__`.

Reference: google-research `instruction_following_eval/instructions.py`, which the `if-verifiable`
package ships (tests/test_if_agreement_ifeval.py compares every instruction of GPT-4's 541
published IFEval responses with it). One difference is intended: where `keywords:letter_frequency`
names a character that is not an ASCII letter (`#`, `!` in IFEval), IFEval draws a random letter
and this checker counts the given character.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from m2rl.verifiers.instruction_following import kwargs as K
from m2rl.verifiers.instruction_following import text as T

Checker = Callable[[str, dict[str, Any]], bool]

CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


@functools.lru_cache(maxsize=4096)
def pattern(source: str, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    """A kwarg used as a regex, as IFEval does; a string that is not a valid regex matches literally."""
    try:
        return re.compile(source, flags)
    except (re.error, RecursionError, OverflowError):
        return re.compile(re.escape(source), flags)


def keywords_existence(response: str, kw: dict[str, Any]) -> bool:
    """Every keyword occurs (case-insensitive)."""
    return all(pattern(word).search(response) for word in K.words(kw, "keywords"))


def keywords_frequency(response: str, kw: dict[str, Any]) -> bool:
    """The keyword occurs less than / at least `frequency` times."""
    keyword = K.text(kw, "keyword").strip()
    occurrences = sum(1 for _ in pattern(keyword).finditer(response))
    return K.compare(occurrences, K.relation(kw), K.integer(kw, "frequency"))


def keywords_forbidden_words(response: str, kw: dict[str, Any]) -> bool:
    """None of the words occurs as a whole word (case-insensitive)."""
    return not any(pattern(r"\b" + word + r"\b").search(response) for word in K.words(kw, "forbidden_words"))


def keywords_letter_frequency(response: str, kw: dict[str, Any]) -> bool:
    """The letter (case-insensitive) occurs less than / at least `let_frequency` times."""
    letter = K.text(kw, "letter")
    if len(letter) > 1:
        raise K.BadKwargs("letter")
    letter = letter.strip().lower()
    occurrences = response.lower().count(letter) if len(letter) == 1 else 0
    return K.compare(occurrences, K.relation(kw, "let_relation"), K.integer(kw, "let_frequency"))


def language_response_language(response: str, kw: dict[str, Any]) -> bool:
    """langdetect reads the response as `language` (undetectable text counts as followed)."""
    language = K.text(kw, "language")
    detected = T.detect_language(response)
    return detected is None or detected == language


def length_number_sentences(response: str, kw: dict[str, Any]) -> bool:
    """Punkt sentence count less than / at least `num_sentences`."""
    return K.compare(T.count_sentences(response), K.relation(kw), K.integer(kw, "num_sentences"))


PARAGRAPH_DIVIDER = re.compile(r"\s?\*\*\*\s?")


def divided_paragraph_count(response: str) -> int | None:
    """Paragraphs separated by `***`, empty ones at either end not counted; None if one inside is empty."""
    parts = PARAGRAPH_DIVIDER.split(response)
    count = len(parts)
    for index, part in enumerate(parts):
        if not part.strip():
            if index in (0, len(parts) - 1):
                count -= 1
            else:
                return None
    return count


def length_number_paragraphs(response: str, kw: dict[str, Any]) -> bool:
    """Exactly `num_paragraphs` paragraphs separated by `***` (no empty paragraph inside)."""
    return divided_paragraph_count(response) == K.integer(kw, "num_paragraphs")


def length_number_words(response: str, kw: dict[str, Any]) -> bool:
    """`\\w+` word count less than / at least `num_words`."""
    return K.compare(T.count_words(response), K.relation(kw), K.integer(kw, "num_words"))


_FIRST_WORD_STOP = frozenset(".,?!'\"")


def length_nth_paragraph_first_word(response: str, kw: dict[str, Any]) -> bool:
    """Exactly `num_paragraphs` blank-line paragraphs, paragraph `nth_paragraph` starting with `first_word`."""
    wanted = K.integer(kw, "num_paragraphs")
    nth = K.integer(kw, "nth_paragraph", minimum=1)
    if nth > wanted:
        raise K.BadKwargs("nth_paragraph")
    first_word = K.text(kw, "first_word", allow_empty=True).lower()
    paragraphs = response.split("\n\n")
    count = sum(1 for paragraph in paragraphs if paragraph.strip())
    if nth > count:
        return False
    paragraph = paragraphs[nth - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    found = []
    for letter in word:
        if letter in _FIRST_WORD_STOP:
            break
        found.append(letter.lower())
    return count == wanted and "".join(found) == first_word


def content_number_placeholders(response: str, kw: dict[str, Any]) -> bool:
    """At least `num_placeholders` `[...]` spans."""
    return T.count_bracket_spans(response) >= K.integer(kw, "num_placeholders")


_PS = re.compile(r"p\.\s?s\.")
_PPS = re.compile(r"p\.\s?p\.\s?s")


def content_postscript(response: str, kw: dict[str, Any]) -> bool:
    """A postscript marker (P.S. / P.P.S / custom) appears (case-insensitive)."""
    marker = K.text(kw, "postscript_marker").strip()
    lowered = response.lower()
    if marker == "P.P.S":
        return _PPS.search(lowered) is not None
    if marker == "P.S.":
        return _PS.search(lowered) is not None
    # IFEval: re.findall(r"\s*" + marker + r".*$", MULTILINE); the \s* and .*$ always match.
    return pattern(marker.lower(), re.MULTILINE).search(lowered) is not None


def format_number_bullet_lists(response: str, kw: dict[str, Any]) -> bool:
    """Exactly `num_bullets` lines starting with `* ` or `-` bullets."""
    wanted = K.integer(kw, "num_bullets")
    found = T.count_line_items(response, "*", "*") + T.count_line_items(response, "-", None)
    return found == wanted


def format_constrained_response(response: str, kw: dict[str, Any]) -> bool:
    """Contains one of IFEval's fixed answers ("My answer is yes." ...)."""
    stripped = response.strip()
    return any(option in stripped for option in CONSTRAINED_RESPONSES)


_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


def format_number_highlighted_sections(response: str, kw: dict[str, Any]) -> bool:
    """At least `num_highlights` non-empty `*...*` / `**...**` spans."""
    wanted = K.integer(kw, "num_highlights")
    count = sum(1 for m in _HIGHLIGHT.finditer(response) if m.group(0).strip("*").strip())
    count += sum(
        1
        for m in _DOUBLE_HIGHLIGHT.finditer(response)
        if m.group(0).removeprefix("**").removesuffix("**").strip()
    )
    return count >= wanted


def format_multiple_sections(response: str, kw: dict[str, Any]) -> bool:
    """At least `num_sections` section markers `<section_spliter> <number>`."""
    splitter = K.text(kw, "section_spliter", allow_empty=True).strip()
    wanted = K.integer(kw, "num_sections")
    marker = pattern(r"\s?" + splitter + r"\s?\d+\s?", 0)
    return sum(1 for _ in marker.finditer(response)) >= wanted


_FENCE_PREFIXES = ("```json", "```Json", "```JSON", "```")


def format_json_format(response: str, kw: dict[str, Any]) -> bool:
    """The whole response (optionally in a ``` fence) parses as JSON."""
    value = response.strip()
    for prefix in _FENCE_PREFIXES:
        value = value.removeprefix(prefix)
    value = value.removesuffix("```").strip()
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        return False
    return True


def format_title(response: str, kw: dict[str, Any]) -> bool:
    """Contains a non-empty `<<title>>`."""
    return any(title.lstrip("<").rstrip(">").strip() for title in T.angle_titles(response))


def combination_two_responses(response: str, kw: dict[str, Any]) -> bool:
    """Two different non-empty responses separated by `******`."""
    parts = response.split("******")
    valid = []
    for index, part in enumerate(parts):
        if not part.strip():
            if index not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def combination_repeat_prompt(response: str, kw: dict[str, Any]) -> bool:
    """Starts with `prompt_to_repeat` (case-insensitive, surrounding whitespace ignored)."""
    prompt = K.text(kw, "prompt_to_repeat")
    return response.strip().lower().startswith(prompt.strip().lower())


def startend_end_checker(response: str, kw: dict[str, Any]) -> bool:
    """Ends with `end_phrase` (case-insensitive; surrounding whitespace and double quotes ignored)."""
    phrase = K.text(kw, "end_phrase", allow_empty=True).strip().lower()
    return response.strip().strip('"').lower().endswith(phrase)


def change_case_capital_word_frequency(response: str, kw: dict[str, Any]) -> bool:
    """All-capital NLTK tokens less than / at least `capital_frequency`."""
    rel = K.relation(kw, "capital_relation")
    wanted = K.integer(kw, "capital_frequency", minimum=-(2**62))
    capitals = sum(1 for token in T.word_tokenize(response) if token.isupper())
    return K.compare(capitals, rel, wanted)


def change_case_english_capital(response: str, kw: dict[str, Any]) -> bool:
    """All upper case and detected as English."""
    if not response.isupper():
        return False
    detected = T.detect_language(response)
    return detected is None or detected == "en"


def change_case_english_lowercase(response: str, kw: dict[str, Any]) -> bool:
    """All lower case and detected as English."""
    if not response.islower():
        return False
    detected = T.detect_language(response)
    return detected is None or detected == "en"


def punctuation_no_comma(response: str, kw: dict[str, Any]) -> bool:
    """No ASCII comma."""
    return "," not in response


def startend_quotation(response: str, kw: dict[str, Any]) -> bool:
    """Wrapped in double quotes (after stripping whitespace)."""
    value = response.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


CHECKERS: dict[str, Checker] = {
    "keywords:existence": keywords_existence,
    "keywords:frequency": keywords_frequency,
    "keywords:forbidden_words": keywords_forbidden_words,
    "keywords:letter_frequency": keywords_letter_frequency,
    "language:response_language": language_response_language,
    "length_constraints:number_sentences": length_number_sentences,
    "length_constraints:number_paragraphs": length_number_paragraphs,
    "length_constraints:number_words": length_number_words,
    "length_constraints:nth_paragraph_first_word": length_nth_paragraph_first_word,
    "detectable_content:number_placeholders": content_number_placeholders,
    "detectable_content:postscript": content_postscript,
    "detectable_format:number_bullet_lists": format_number_bullet_lists,
    "detectable_format:constrained_response": format_constrained_response,
    "detectable_format:number_highlighted_sections": format_number_highlighted_sections,
    "detectable_format:multiple_sections": format_multiple_sections,
    "detectable_format:json_format": format_json_format,
    "detectable_format:title": format_title,
    "combination:two_responses": combination_two_responses,
    "combination:repeat_prompt": combination_repeat_prompt,
    "startend:end_checker": startend_end_checker,
    "change_case:capital_word_frequency": change_case_capital_word_frequency,
    "change_case:english_capital": change_case_english_capital,
    "change_case:english_lowercase": change_case_english_lowercase,
    "punctuation:no_comma": punctuation_no_comma,
    "startend:quotation": startend_quotation,
}
