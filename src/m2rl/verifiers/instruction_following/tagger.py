"""NLTK's averaged-perceptron part-of-speech tagger, which IFBench's `words:start_verb` asks.

IFBench checks `'VB' in nltk.pos_tag(nltk.word_tokenize(response))[0][1]`: the Penn Treebank tag
NLTK's English model gives the first token. No package on the index ships that model (NLTK
downloads it into its data directories), and another tagger would score other responses, so the
model is read from NLTK's data path (`NLTK_DATA`, `~/nltk_data`, ...) and never fetched here. Where
it is absent, `first_tag` raises `TaggerUnavailable`, whose message says what to download; the
checker then counts the instruction as not followed with that reason.

NLTK tags greedily left to right, and a token's features reach two tokens ahead, so the first
tag depends on the first three tokens only: they are all that is tagged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

MODEL = "averaged_perceptron_tagger_eng"
DOWNLOAD = f"python -m nltk.downloader {MODEL}"


class TaggerUnavailable(LookupError):
    """NLTK's English POS model is not installed in any of NLTK's data directories."""

    def __init__(self) -> None:
        super().__init__(f"needs NLTK's {MODEL} POS model (install it with `{DOWNLOAD}`)")


@functools.lru_cache(maxsize=1)
def _tagger() -> Any | None:
    # lazy: NLTK, only where words are tagged
    from nltk.tag.perceptron import PerceptronTagger

    try:
        return PerceptronTagger(lang="eng")
    except LookupError:
        return None


def available() -> bool:
    """True when NLTK's English POS model loads from NLTK's data path."""
    return _tagger() is not None


def first_tag(tokens: Sequence[str]) -> str:
    """The tag `nltk.pos_tag(tokens)` gives the first token ("" for no tokens)."""
    if not tokens:
        return ""
    tagger = _tagger()
    if tagger is None:
        raise TaggerUnavailable()
    return str(tagger.tag(list(tokens[:3]))[0][1])
