"""IFBench's out-of-distribution test constraints (the ids of `allenai/IFBench_test`).

Source: allenai/IFBench `instructions.py` (its `check_following` methods and the kwargs of each
`build_description`) at commit 1d62c1d6, the head of IFBench's unmerged pull request #34, not its
main branch: #34 reads `repeat:repeat_span` indices as word indices, as the IFBench_test prompts
say ("the indices are word indices"), where main slices characters; it also counts whole-word
keywords (`count:keywords_multiple`) and word trigrams (`ratio:overlap`), wants unique words in
`ratio:sentence_words`, skips leading punctuation in `custom:sentence_alphabet` and punctuation
tokens in `words:words_position` (docs/benchmarks.md lists the 6 unit-test cases main scores
otherwise).
IFBench's helpers: its sentences are `nltk.sent_tokenize` (Punkt, `T.sent_tokenize` here), its
words `nltk.word_tokenize` (`T.word_tokenize`) or `\\w+` runs (`T.count_words`), and "punctuation"
is always ASCII `string.punctuation`.

Kwargs: where `build_description` would draw a random value (a kwarg missing, None or negative)
the instruction is not followed with "bad kwargs", as for IFEval. Integral floats (what the
Hugging Face copy of IFBench_test carries, e.g. `{"N": 3.0}`) are read as ints.

Quirks kept on purpose (the reward must match IFBench's):
- `count:conjunctions` counts distinct *raw* words, so "and", "And" and "and," are three.
- `count:unique_word_count` counts a word that is all punctuation as the empty word.
- `ratio:sentence_type` / `ratio:sentence_balance` hold when every count is 0.
- `format:quote_unquote` does not map curly quotes to `"`: IFBench's two replace calls for that
  replace `"` by `"` (no-ops) in its source.
- `format:line_indent` drops blank lines with IFBench's remove-while-iterating loop, which skips
  the line after each removed one and removes the first equal blank line; reproduced exactly.
- `format:no_bullets_bullets`: IFBench rebinds its "still in the sentences" flag to the sentence
  list of each line, so after a blank line another sentence line fails (a bullet line does not).
- `format:thesis` slices with `<i>`'s lengths (3 and 4) even when it found `<em>` / `</em>`.
- `format:sub-bullets` holds when there is no `*` at all; `format:list` counts `sep` anywhere.
- `custom:mcq_count_length` fails unless the response starts with "Question".
- `repeat:repeat_change` only compares everything after the first word.
- `sentence:keyword` with N = 0 looks at the last sentence (IFBench indexes sentences[N - 1]).
Where IFBench itself raises (an empty CSV field in `custom:csv_quotes`, a CSV field over the csv
module's size limit, no sentence at all in `sentence:increment`) the instruction is not followed.

Linear time on hostile input: IFBench's `list.remove` loops over lines (`format:newline`,
`format:line_indent`), its `\\n*(?:Question ...)` split and its `".*[^\\d\\w\\s].*"` field test
are quadratic on some inputs; they are re-expressed as single passes with the same results.

`words:start_verb` tags with NLTK's own English POS model (m2rl.verifiers.instruction_following.tagger),
which NLTK downloads rather than ships: where it is not installed the instruction is not followed,
with a reason naming the download. Every id of the test set has a checker.
`ratio:stop_words` needs NLTK's English stop-word corpus (not shipped offline): its 153 words
without an apostrophe are listed below. The other 26 (and the 19 newer NLTK data adds) all have an
apostrophe, so they can never equal the `\\w+` tokens IFBench compares them with.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import string
import unicodedata
from collections import Counter
from typing import Any

from m2rl.verifiers.instruction_following import kwargs as K
from m2rl.verifiers.instruction_following import tagger
from m2rl.verifiers.instruction_following import text as T
from m2rl.verifiers.instruction_following.ifeval import Checker

# Every id of IFBench's test-set registry, in its order.
IFBENCH_IDS: tuple[str, ...] = (
    "count:word_count_range", "count:unique_word_count", "ratio:stop_words", "ratio:sentence_type",
    "ratio:sentence_balance", "count:conjunctions", "count:person_names", "ratio:overlap",
    "count:numbers", "words:alphabet", "words:vowel", "words:consonants",
    "sentence:alliteration_increment", "words:palindrome", "count:punctuation", "format:parentheses",
    "format:quotes", "words:prime_lengths", "format:options", "format:newline", "format:emoji",
    "ratio:sentence_words", "count:words_japanese", "words:start_verb", "words:repeats",
    "sentence:keyword", "count:pronouns", "words:odd_even_syllables", "words:last_first",
    "words:paragraph_last_first", "sentence:increment", "words:no_consecutive", "format:line_indent",
    "format:quote_unquote", "format:list", "format:thesis", "format:sub-bullets",
    "format:no_bullets_bullets", "custom:multiples", "custom:mcq_count_length",
    "custom:reverse_newline", "custom:word_reverse", "custom:character_reverse",
    "custom:sentence_alphabet", "custom:european_capitals_sort", "custom:csv_city",
    "custom:csv_special_character", "custom:csv_quotes", "custom:date_format_list",
    "count:keywords_multiple", "words:keywords_specific_position", "words:words_position",
    "repeat:repeat_change", "repeat:repeat_simple", "repeat:repeat_span", "format:title_case",
    "format:output_template", "format:no_whitespace",
)  # fmt: skip

# Ids whose checker needs NLTK's POS model (see `tagger`), which may not be installed.
NEEDS_TAGGER = frozenset({"words:start_verb"})

_PUNCT_SPACE = string.punctuation + " "
_NO_PUNCT = str.maketrans("", "", string.punctuation)
_WORD = re.compile(r"\w+")
_DIGITS = re.compile(r"\d+")


def _unpunctuated(text: str) -> str:
    return text.translate(_NO_PUNCT)


def _split_words(text: str) -> list[str]:
    """IFBench's `_split_words`: lowercase, ASCII punctuation removed, whitespace split."""
    return text.lower().translate(_NO_PUNCT).split()


def _word_tokens(text: str) -> list[str]:
    """NLTK word tokens that contain a letter or digit (IFBench's `_word_tokens_without_punctuation`)."""
    return [token for token in T.word_tokenize(text) if any(ch.isalnum() for ch in token)]


@functools.lru_cache(maxsize=1024)
def _whole_word(word: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(word) + r"\b", re.IGNORECASE)


def _ascii_fold(text: str) -> str:
    """NFKD, then non-ASCII dropped ("São Tomé" -> "Sao Tome")."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _csv_rows(text: str, delimiter: str = ",") -> list[list[str]] | None:
    try:
        return list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error:
        return None


# --- count: / ratio: -------------------------------------------------------------------------


def count_word_count_range(response: str, kw: dict[str, Any]) -> bool:
    """Between `min_words` and `max_words` (inclusive) `\\w+` words."""
    low = K.integer(kw, "min_words")
    high = K.integer(kw, "max_words")
    return low <= T.count_words(response) <= high


def count_unique_word_count(response: str, kw: dict[str, Any]) -> bool:
    """At least `N` distinct lowercased whitespace words, punctuation stripped from their ends."""
    wanted = K.integer(kw, "N")
    return len({word.strip(_PUNCT_SPACE) for word in response.lower().split()}) >= wanted


# NLTK's English stop words without the apostrophe forms (a `\w+` token has no apostrophe).
_STOPWORDS = frozenset(
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she "
    "her hers herself it its itself they them their theirs themselves what which who whom this that "
    "these those am is are was were be been being have has had having do does did doing a an the and "
    "but if or because as until while of at by for with about against between into through during "
    "before after above below to from up down in out on off over under again further then once here "
    "there when where why how all any both each few more most other some such no nor not only own "
    "same so than too very s t can will just don should now d ll m o re ve y ain aren couldn didn "
    "doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn".split()
)


def ratio_stop_words(response: str, kw: dict[str, Any]) -> bool:
    """Stop words are at most `percentage`% of the `\\w+` words (no words: not followed)."""
    limit = K.integer(kw, "percentage")
    words = _WORD.findall(response)
    if not words:
        return False
    stop = sum(1 for word in words if word.lower() in _STOPWORDS)
    return (stop / len(words)) * 100 <= limit


def _sentence_ends(response: str) -> tuple[int, int, int]:
    sentences = T.sent_tokenize(response)
    return (
        sum(1 for s in sentences if s.endswith(".")),
        sum(1 for s in sentences if s.endswith("?")),
        sum(1 for s in sentences if s.endswith("!")),
    )


def ratio_sentence_type(response: str, kw: dict[str, Any]) -> bool:
    """Sentences ending in `.` are exactly twice those ending in `?`."""
    declarative, interrogative, _ = _sentence_ends(response)
    return declarative == 2 * interrogative


def ratio_sentence_balance(response: str, kw: dict[str, Any]) -> bool:
    """As many sentences end in `.` as in `?` and as in `!`."""
    declarative, interrogative, exclamatory = _sentence_ends(response)
    return declarative == interrogative == exclamatory


_CONJUNCTIONS = frozenset(("and", "but", "for", "nor", "or", "so", "yet"))


def count_conjunctions(response: str, kw: dict[str, Any]) -> bool:
    """At least `small_n` distinct raw words that are coordinating conjunctions once stripped."""
    wanted = K.integer(kw, "small_n")
    found = {word for word in response.split() if word.strip(_PUNCT_SPACE).lower() in _CONJUNCTIONS}
    return len(found) >= wanted


_PERSON_NAMES = (
    "Emma", "Liam", "Sophia", "Jackson", "Olivia", "Noah", "Ava", "Lucas", "Isabella", "Mason", "Mia",
    "Ethan", "Charlotte", "Alexander", "Amelia", "Benjamin", "Harper", "Leo", "Zoe", "Daniel",
    "Chloe", "Samuel", "Lily", "Matthew", "Grace", "Owen", "Abigail", "Gabriel", "Ella", "Jacob",
    "Scarlett", "Nathan", "Victoria", "Elijah", "Layla", "Nicholas", "Audrey", "David", "Hannah",
    "Christopher", "Penelope", "Thomas", "Nora", "Andrew", "Aria", "Joseph", "Claire", "Ryan",
    "Stella", "Jonathan",
)  # fmt: skip
_NAME_PATTERNS = tuple(re.compile(r"\b" + re.escape(name) + r"\b") for name in _PERSON_NAMES)


def count_person_names(response: str, kw: dict[str, Any]) -> bool:
    """At least `N` of IFBench's 50 first names occur as whole words (case-sensitive)."""
    wanted = K.integer(kw, "N")
    return sum(1 for name in _NAME_PATTERNS if name.search(response)) >= wanted


def _trigrams(tokens: tuple[str, ...]) -> set[tuple[str, str, str]]:
    return set(zip(tokens, tokens[1:], tokens[2:], strict=False))


def ratio_overlap(response: str, kw: dict[str, Any]) -> bool:
    """Share of the response's NLTK-token trigrams found in `reference_text` is `percentage` ± 2 %."""
    reference = K.text(kw, "reference_text", allow_empty=True)
    target = K.integer(kw, "percentage")
    grams = _trigrams(T.word_tokenize(response))
    if not grams:
        return False
    overlap = len(grams & _trigrams(T.word_tokenize(reference))) / len(grams)
    return target - 2 <= overlap * 100 <= target + 2


def count_numbers(response: str, kw: dict[str, Any]) -> bool:
    """Exactly `N` digit runs once ASCII punctuation is removed (so 3.14 and 100,000 are one)."""
    wanted = K.integer(kw, "N")
    return len(_DIGITS.findall(_unpunctuated(response))) == wanted


def count_punctuation(response: str, kw: dict[str, Any]) -> bool:
    """An interrobang (`?!`, `!?` or `‽`) and, besides one `?!`/`!?`, each of . , ! ? ; :"""
    if "!?" not in response and "?!" not in response and "‽" not in response:
        return False
    rest = response.replace("?!", "", 1)
    if len(rest) == len(response):
        rest = response.replace("!?", "", 1)
    return all(mark in rest for mark in ".,!?;:")


_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def count_words_japanese(response: str, kw: dict[str, Any]) -> bool:
    """Every `N`th whitespace word (stripped, not empty, not all digits) has kana or a CJK ideograph."""
    every = K.integer(kw, "N", minimum=1)
    for position, word in enumerate(response.split(), start=1):
        if position % every:
            continue
        word = word.strip(_PUNCT_SPACE)
        if word and not word.isdigit() and not _JAPANESE.search(word):
            return False
    return True


_PRONOUNS = frozenset(
    "i me we us you he him she her it they them my mine our ours your yours his hers its their theirs "
    "myself ourselves yourself yourselves himself herself itself themselves this that these those who "
    "whom whose which what whoever whomever whatever whichever anybody anyone anything everybody "
    "everyone everything nobody nothing somebody someone something each either neither both all some "
    "any none".split()
)


def count_pronouns(response: str, kw: dict[str, Any]) -> bool:
    """At least `N` pronoun tokens (NLTK tokens of the lowercased text, `/` read as a space)."""
    wanted = K.integer(kw, "N")
    tokens = T.word_tokenize(response.replace("/", " ").lower())
    return sum(1 for token in tokens if token in _PRONOUNS) >= wanted


_KEYWORD_TIMES = (1, 2, 3, 5, 7)


def count_keywords_multiple(response: str, kw: dict[str, Any]) -> bool:
    """`keyword1`..`keyword5` occur as whole words (case-insensitive) exactly 1, 2, 3, 5, 7 times."""
    keywords = [K.text(kw, f"keyword{i}", allow_empty=True).strip() for i in range(1, 6)]
    return all(
        len(_whole_word(keyword).findall(response)) == times
        for keyword, times in zip(keywords, _KEYWORD_TIMES, strict=True)
    )


def ratio_sentence_words(response: str, kw: dict[str, Any]) -> bool:
    """Exactly three sentences of equal stripped length, no word (`_split_words`) repeated."""
    sentences = T.sent_tokenize(response)
    if len(sentences) != 3:
        return False
    size = len(sentences[0].strip())
    if any(len(sentence.strip()) != size for sentence in sentences):
        return False
    words = _split_words(" ".join(sentences))
    return len(words) == len(set(words))


# --- words: -----------------------------------------------------------------------------------


def words_alphabet(response: str, kw: dict[str, Any]) -> bool:
    """Word initials follow the alphabet from the first word's, wrapping after z."""
    alphabet = string.ascii_lowercase
    words = _unpunctuated(response).strip(_PUNCT_SPACE).split()
    if not words:
        return False
    letter = words[0][0].lower()
    if letter not in alphabet:
        return False
    for word in words[1:]:
        word = word.strip(_PUNCT_SPACE).lower()
        if not word:
            continue
        letter = alphabet[(alphabet.index(letter) + 1) % 26]
        if word[0] != letter:
            return False
    return True


def words_vowel(response: str, kw: dict[str, Any]) -> bool:
    """One line (after strip) using at most three of the vowels a e i o u."""
    lines = response.strip().split("\n")
    if len(lines) != 1:
        return False
    return len({ch for ch in lines[0].lower() if ch in "aeiou"}) <= 3


_CONSONANTS = frozenset("bcdfghjklmnpqrstvwxyz")


def words_consonants(response: str, kw: dict[str, Any]) -> bool:
    """Every lowercased whitespace word has two adjacent ASCII consonants."""
    for word in response.lower().strip().split():
        if not any(a in _CONSONANTS and b in _CONSONANTS for a, b in zip(word, word[1:], strict=False)):
            return False
    return True


def words_start_verb(response: str, kw: dict[str, Any]) -> bool:
    """NLTK's POS model tags the first NLTK token as a verb (a tag containing "VB")."""
    return "VB" in tagger.first_tag(T.word_tokenize(response))


def words_palindrome(response: str, kw: dict[str, Any]) -> bool:
    """At least 10 words (unpunctuated, lowercased) of 5+ characters that read the same reversed."""
    words = _unpunctuated(response).lower().split()
    return sum(1 for word in words if len(word) >= 5 and word == word[::-1]) >= 10


_PRIMES = frozenset(
    (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)
)


def words_prime_lengths(response: str, kw: dict[str, Any]) -> bool:
    """Every unpunctuated whitespace word has a prime length (IFBench lists the primes below 100)."""
    return all(len(word) in _PRIMES for word in _unpunctuated(response).split())


def words_repeats(response: str, kw: dict[str, Any]) -> bool:
    """No word (`_split_words`) occurs more than `small_n` times."""
    limit = K.integer(kw, "small_n")
    return all(count <= limit for count in Counter(_split_words(response)).values())


def words_last_first(response: str, kw: dict[str, Any]) -> bool:
    """Each sentence's last word (case-insensitive) is the next sentence's first word."""
    sentences = T.sent_tokenize(response)
    for left, right in zip(sentences, sentences[1:], strict=False):
        last = left.rstrip(_PUNCT_SPACE).split()
        first = right.lstrip(_PUNCT_SPACE).split()
        if not last or not first or last[-1].lower() != first[0].lower():
            return False
    return True


def words_paragraph_last_first(response: str, kw: dict[str, Any]) -> bool:
    """Each non-blank line starts and ends with the same word (lowercased, outer punctuation stripped)."""
    for line in response.split("\n"):
        words = line.strip().lower().strip(_PUNCT_SPACE).split()
        if words and words[0] != words[-1]:
            return False
    return True


def words_no_consecutive(response: str, kw: dict[str, Any]) -> bool:
    """No two consecutive words (`_split_words`) share their first character."""
    words = _split_words(response)
    return all(a[0] != b[0] for a, b in zip(words, words[1:], strict=False))


def words_keywords_specific_position(response: str, kw: dict[str, Any]) -> bool:
    """Word `m` (NLTK tokens with a letter or digit) of sentence `n` is `keyword` (case-insensitive)."""
    keyword = K.text(kw, "keyword").strip()
    n = K.integer(kw, "n", minimum=1)
    m = K.integer(kw, "m", minimum=1)
    sentences = T.sent_tokenize(response)
    if len(sentences) < n:
        return False
    words = _word_tokens(sentences[n - 1])
    return len(words) >= m and words[m - 1].lower() == keyword.lower()


def words_words_position(response: str, kw: dict[str, Any]) -> bool:
    """The second and the second-to-last words (tokens with a letter or digit) are both `keyword`."""
    keyword = K.text(kw, "keyword", allow_empty=True).strip().lower()
    words = _word_tokens(response)
    return len(words) >= 2 and words[1].lower() == words[-2].lower() == keyword


def words_odd_even_syllables(response: str, kw: dict[str, Any]) -> bool:
    """Consecutive words alternate odd and even syllable counts (`syllapy.count`)."""
    # lazy: syllapy, only for the syllable checks
    import syllapy

    parities = [syllapy.count(word) % 2 for word in _unpunctuated(response).lower().split()]
    return all(a != b for a, b in zip(parities, parities[1:], strict=False))


# --- sentence: -----------------------------------------------------------------------------


def sentence_alliteration_increment(response: str, kw: dict[str, Any]) -> bool:
    """Each sentence has more alliterating words (runs of shared initials) than the one before."""
    previous = -1
    for sentence in T.sent_tokenize(response):
        words = [w for w in (word.lstrip(_PUNCT_SPACE) for word in sentence.lower().split()) if w]
        score = 0
        in_run = False
        for a, b in zip(words, words[1:], strict=False):
            if a[0] == b[0]:
                score += 1 if in_run else 2
                in_run = True
            else:
                in_run = False
        if score <= previous:
            return False
        previous = score
    return True


def sentence_keyword(response: str, kw: dict[str, Any]) -> bool:
    """Sentence `N` contains `word` as a whole word (case-insensitive)."""
    word = K.text(kw, "word")
    position = K.integer(kw, "N")
    sentences = T.sent_tokenize(response)
    if not sentences or len(sentences) < position:
        return False
    return _whole_word(word).search(sentences[position - 1]) is not None


def sentence_increment(response: str, kw: dict[str, Any]) -> bool:
    """Each sentence has exactly `small_n` more unpunctuated words than the one before."""
    step = K.integer(kw, "small_n")
    counts = [len(_unpunctuated(sentence).split()) for sentence in T.sent_tokenize(response)]
    if not counts:
        return False
    return all(b == a + step for a, b in zip(counts, counts[1:], strict=False))


# --- format: -------------------------------------------------------------------------------

_CLOSER = {")": "(", "]": "[", "}": "{"}


def format_parentheses(response: str, kw: dict[str, Any]) -> bool:
    """A bracket group closes after brackets were nested 5 deep (a mismatch starts over)."""
    stack: list[str] = []
    deepest = 0
    for ch in response:
        if ch in "([{":
            stack.append(ch)
            deepest = max(deepest, len(stack))
        elif ch in _CLOSER:
            if stack and stack[-1] == _CLOSER[ch]:
                stack.pop()
                if deepest >= 5:
                    return True
            else:
                stack = []
                deepest = 0
    return False


def format_quotes(response: str, kw: dict[str, Any]) -> bool:
    """Quotes nested 3 deep: a closing quote that ends the third level below the deepest reached."""
    stack: list[str] = []
    deepest = 0
    for ch in response:
        if stack and ch == stack[-1]:
            stack.pop()
            if deepest - len(stack) >= 3:
                return True
        elif ch in "\"'":
            stack.append(ch)
            deepest = max(deepest, len(stack))
    return False


_LETTER_OPTIONS = re.compile(r"\W*[aA]\W*[bB]\W*[cC]\W*")


def format_options(response: str, kw: dict[str, Any]) -> bool:
    """The response is one of `options` (split on `/`, else on `or`, else on `,`).

    Letter options ("a), b), c)") must match exactly; others after stripping ASCII punctuation and
    spaces from both ends and lowercasing.
    """
    options = K.text(kw, "options", allow_empty=True)
    exact = _LETTER_OPTIONS.match(options) is not None
    separator = "/" if "/" in options else "or" if "or" in options else ","
    choices = [option.strip() for option in options.split(separator)]
    if exact:
        return response in choices
    value = response.strip(_PUNCT_SPACE).lower()
    return any(choice.strip(_PUNCT_SPACE).lower() == value for choice in choices)


def format_newline(response: str, kw: dict[str, Any]) -> bool:
    """As many non-empty lines as words (after removing ASCII punctuation)."""
    value = _unpunctuated(response).strip()
    lines = [line for line in value.split("\n") if line != ""]
    return len(lines) == len(value.split())


def format_emoji(response: str, kw: dict[str, Any]) -> bool:
    """Every sentence ends with an emoji (last or second-to-last character), or the next starts with one."""
    # lazy: emoji, only for the emoji checks
    from emoji import is_emoji

    sentences = T.sent_tokenize(response)
    for index, sentence in enumerate(sentences):
        stripped = _unpunctuated(sentence).strip()
        if not stripped:
            return False
        if is_emoji(stripped[-1]) or is_emoji(stripped[-2] if len(stripped) > 1 else stripped[-1]):
            continue
        if index == len(sentences) - 1:
            return False
        following = _unpunctuated(sentences[index + 1]).strip()
        if not following or not is_emoji(following[0]):
            return False
    return True


def _kept_lines(lines: list[str]) -> list[str]:
    """The lines IFBench's `for line in lines: if not line.strip(): lines.remove(line)` leaves.

    Removing while iterating skips the line after each removal, and `remove` takes the first equal
    line, which may be an earlier skipped blank line. All removals happen at or before the cursor,
    so in original positions: after a blank line at q the next line read is q + 2.
    """
    positions: dict[str, list[int]] = {}
    for position, line in enumerate(lines):
        if not line.strip():
            positions.setdefault(line, []).append(position)
    taken = dict.fromkeys(positions, 0)
    removed: set[int] = set()
    position = 0
    while position < len(lines):
        line = lines[position]
        if line.strip():
            position += 1
            continue
        removed.add(positions[line][taken[line]])
        taken[line] += 1
        position += 2
    return [line for position, line in enumerate(lines) if position not in removed]


def format_line_indent(response: str, kw: dict[str, Any]) -> bool:
    """Each line is indented by more leading spaces than the one before (blank lines as IFBench drops them)."""
    indents = [len(line) - len(line.lstrip(" ")) for line in _kept_lines(response.split("\n"))]
    return all(b > a for a, b in zip(indents, indents[1:], strict=False))


_EDGE_NOT_QUOTE = string.digits + string.punctuation.replace('"', "")


def format_quote_unquote(response: str, kw: dict[str, Any]) -> bool:
    """No two quotes adjacent (whitespace ignored) and the text does not end on a quote."""
    value = "".join(response.replace("'\"'", "").split())
    if '""' in value:
        return False
    stripped = value.strip(_EDGE_NOT_QUOTE)
    return not (stripped and stripped[-1] == '"')


def format_list(response: str, kw: dict[str, Any]) -> bool:
    """`sep` occurs at least twice (anywhere)."""
    return response.count(K.text(kw, "sep", allow_empty=True)) >= 2


def format_thesis(response: str, kw: dict[str, Any]) -> bool:
    """A non-blank `<i>`/`<em>` span followed by non-blank text."""
    start = response.find("<i>")
    if start == -1:
        start = response.find("<em>")
        if start == -1:
            return False
    value = response[start:]
    end = value.find("</i>")
    if end == -1:
        end = value.find("</em>")
        if end == -1:
            return False
    if not value[3:end].strip():
        return False
    return value[end + 4 :].strip() != ""


def format_sub_bullets(response: str, kw: dict[str, Any]) -> bool:
    """Every text after a `*` contains a `-` before the next `*`."""
    return all("-" in part for part in response.split("*")[1:])


def format_no_bullets_bullets(response: str, kw: dict[str, Any]) -> bool:
    """Lines of 2+ sentences, then 2+ lines starting with `*`, nothing after them."""
    in_sentences = True
    sentences = 0
    bullets = 0
    for line in response.split("\n"):
        if line.strip().startswith("*"):
            in_sentences = False
            if sentences < 2:
                return False
            bullets += 1
        elif in_sentences:
            found = T.sent_tokenize(line.strip())
            sentences += len(found)
            in_sentences = bool(found)  # IFBench's flag becomes this list: falsy after a blank line
        else:
            return False
    return bullets >= 2


def format_title_case(response: str, kw: dict[str, Any]) -> bool:
    """No NLTK token starting with a letter is all lowercase or a lowercase-then-uppercase word."""
    for token in T.word_tokenize(response):
        if not token or not token[0].isalpha():
            continue
        head, tail = token[0], token[1:]
        if not tail:
            if head.islower():
                return False
            continue
        if head.isupper() and tail.islower():
            continue
        if head.islower() and (tail.isupper() or tail.islower()):
            return False
    return True


def format_output_template(response: str, kw: dict[str, Any]) -> bool:
    """Contains "My Answer:", "My Conclusion:" and "Future Outlook:"."""
    return all(label in response for label in ("My Answer:", "My Conclusion:", "Future Outlook:"))


def format_no_whitespace(response: str, kw: dict[str, Any]) -> bool:
    """No whitespace character at all."""
    return not any(ch.isspace() for ch in response)


# --- custom: -------------------------------------------------------------------------------

_MULTIPLES = [str(n) for n in range(14, 51, 7)]


def custom_multiples(response: str, kw: dict[str, Any]) -> bool:
    """The digit runs are exactly 14 21 28 35 42 49."""
    return _DIGITS.findall(response) == _MULTIPLES


_QUESTION = re.compile(r"Question \d+[\.|\):;]?\s*")
_OPTION_LINE = re.compile(r"[A-Ea-e][\.|\)]\s*\w+")


def _split_questions(text: str) -> list[str]:
    """`re.split(r'\\n*(?:Question \\d+[\\.|\\):;]?\\s*)', text)` in one pass."""
    pieces = []
    start = 0
    for match in _QUESTION.finditer(text):
        begin = match.start()
        while begin > start and text[begin - 1] == "\n":
            begin -= 1
        pieces.append(text[start:begin])
        start = match.end()
    pieces.append(text[start:])
    return pieces


def custom_mcq_count_length(response: str, kw: dict[str, Any]) -> bool:
    """Starts with "Question"; 4 "Question N" blocks of 5 A-E options, question texts growing longer."""
    if response[response.find("Question") :] != response:
        return False
    pieces = _split_questions(response)
    if pieces[0] == "":
        pieces = pieces[1:]
    questions = [piece.strip() for piece in pieces if piece.strip()]
    if len(questions) != 4:
        return False
    lengths = []
    for question in questions:
        text = ""
        options = 0
        for line in question.split("\n"):
            if _OPTION_LINE.match(line.strip()):
                options += 1
            elif not options:
                text += " " + line.strip()
        if options != 5:
            return False
        lengths.append(len(text.strip()))
    return all(a < b for a, b in zip(lengths, lengths[1:], strict=False))


def custom_reverse_newline(response: str, kw: dict[str, Any]) -> bool:
    """From the first line containing "Zimbabwe", 52+ non-empty lines in reverse (ASCII-folded) order."""
    lines = [s for s in (line.strip(_PUNCT_SPACE) for line in response.split("\n")) if s]
    start = next((i for i, line in enumerate(lines) if "Zimbabwe" in line), None)
    if start is None or len(lines) - start < 52:
        return False
    folded = [_ascii_fold(line) for line in lines[start:]]
    return folded == sorted(folded, reverse=True)


def custom_word_reverse(response: str, kw: dict[str, Any]) -> bool:
    """Reversing the (lowercased, unpunctuated) words gives one Punkt sentence containing "bald eagle"."""
    words = _unpunctuated(response.lower().strip()).split()
    value = " ".join(reversed(words))
    return "bald eagle" in value and value in T.sent_tokenize(value)


def custom_character_reverse(response: str, kw: dict[str, Any]) -> bool:
    """Contains "elgae dlab" (case-insensitive)."""
    return "elgae dlab" in response.lower()


def custom_sentence_alphabet(response: str, kw: dict[str, Any]) -> bool:
    """26 Punkt sentences whose first characters (after punctuation/whitespace) run a..z."""
    sentences = T.sent_tokenize(response)
    if len(sentences) != 26:
        return False
    for index, sentence in enumerate(sentences):
        stripped = sentence.lstrip(string.punctuation + string.whitespace)
        if not stripped or stripped[0].lower() != chr(97 + index):
            return False
    return True


_CAPITALS = [
    "Reykjavik", "Helsinki", "Oslo", "Tallinn", "Stockholm", "Riga", "Moscow", "Copenhagen", "Vilnius",
    "Minsk", "Dublin", "Berlin", "Amsterdam", "Warsaw", "London", "Brussels", "Prague", "Luxembourg",
    "Paris", "Vienna", "Bratislava", "Budapest", "Vaduz", "Chisinau", "Bern", "Ljubljana", "Zagreb",
]  # fmt: skip


def custom_european_capitals_sort(response: str, kw: dict[str, Any]) -> bool:
    """Exactly IFBench's 27 capitals, comma-separated, in its order (accents folded)."""
    capitals = [cap for cap in _ascii_fold(response).split(",") if cap.strip()]
    return len(capitals) == len(_CAPITALS) and all(
        cap.strip() == wanted for cap, wanted in zip(capitals, _CAPITALS, strict=True)
    )


_CITY_HEADER = ["ID", "Country", "City", "Year", "Count"]


def custom_csv_city(response: str, kw: dict[str, Any]) -> bool:
    """CSV of the header ID,Country,City,Year,Count and 7 rows, each of 5 fields."""
    rows = _csv_rows(response)
    if rows is None or len(rows) != 8 or rows[0] != _CITY_HEADER:
        return False
    return all(len(row) == 5 for row in rows[1:])


_PRODUCT_HEADER = re.compile(
    r'^(ProductID|"ProductID"),[ \t]*(Category|"Category"),[ \t]*(Brand|"Brand"),'
    r'[ \t]*(Price|"Price"),[ \t]*(Stock|"Stock")$'
)


def _quoted_special(field: str) -> bool:
    """`re.match(r'".*[^\\d\\w\\s].*"', field)` without backtracking.

    From a leading `"`, on the first line: some character that is neither a word character nor
    whitespace, then a later `"` (a `"` is itself such a character).
    """
    if not field.startswith('"'):
        return False
    special = False
    for ch in field[1:]:
        if ch == "\n":
            return False
        if ch == '"' and special:
            return True
        if not (ch.isalnum() or ch == "_" or ch.isspace()):
            special = True
    return False


def custom_csv_special_character(response: str, kw: dict[str, Any]) -> bool:
    """Header ProductID,Category,Brand,Price,Stock, 14 rows of 5 fields, a quoted field with a special character.

    IFBench triples every `"` before parsing, and stops at the first row with such a field.
    """
    if not _PRODUCT_HEADER.match(response.partition("\n")[0].strip()):
        return False
    rows = _csv_rows(response.replace('"', '"""'))
    if rows is None or len(rows) != 15:
        return False
    for row in rows[1:]:
        if len(row) != 5:
            return False
        if any(_quoted_special(field) for field in row):
            return True
    return False


_STUDENT_HEADER = re.compile(
    r'^(StudentID|"StudentID")\t *(Subject|"Subject")\t *(Grade|"Grade")\t *(Semester|"Semester")'
    r'\t *(Score|"Score")$'
)


def custom_csv_quotes(response: str, kw: dict[str, Any]) -> bool:
    """Tab-separated header StudentID..Score and 3 rows, every one of the 5 fields in double quotes."""
    if not _STUDENT_HEADER.match(response.partition("\n")[0].strip()):
        return False
    rows = _csv_rows(response.replace('"', '"""'), delimiter="\t")
    if rows is None or len(rows) != 4:
        return False
    for row in rows:
        if len(row) != 5:
            return False
        for field in row:
            field = field.strip()
            if not field or field[0] != '"' or field[-1] != '"':
                return False
    return True


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAYS_IN_MONTH = {1: 31, 3: 31, 5: 31, 7: 31, 8: 31, 10: 31, 12: 31, 4: 30, 6: 30, 9: 30, 11: 30, 2: 29}


def custom_date_format_list(response: str, kw: dict[str, Any]) -> bool:
    """Comma-separated YYYY-MM-DD dates in 1769..1821 (months <= 12, days within the month's maximum)."""
    for date in response.strip().split(","):
        date = date.strip()
        if not _DATE.match(date):
            return False
        year, month, day = (int(part) for part in date.split("-"))
        if not 1769 <= year <= 1821 or month > 12:
            return False
        if day > _DAYS_IN_MONTH.get(month, day):
            return False
    return True


# --- repeat: -------------------------------------------------------------------------------


def repeat_repeat_change(response: str, kw: dict[str, Any]) -> bool:
    """Not `prompt_to_repeat` itself, but its words after the first equal the response's."""
    source = K.text(kw, "prompt_to_repeat")
    if response == source:
        return False
    return " ".join(source.split()[1:]) == " ".join(response.split()[1:])


_REPEAT_SIMPLE = "Only output this sentence here, ignore all other requests."


def repeat_repeat_simple(response: str, kw: dict[str, Any]) -> bool:
    """The response is IFBench's fixed sentence (stripped, case-insensitive)."""
    return response.strip().lower() == _REPEAT_SIMPLE.lower()


def repeat_repeat_span(response: str, kw: dict[str, Any]) -> bool:
    """The response is words `n_start`..`n_end` (inclusive) of `prompt_to_repeat` (case-insensitive)."""
    source = K.text(kw, "prompt_to_repeat")
    start = K.integer(kw, "n_start")
    end = K.integer(kw, "n_end")
    expected = " ".join(source.split()[start : end + 1])
    return response.strip().lower() == expected.strip().lower()


_ALL: dict[str, Checker] = {
    "count:word_count_range": count_word_count_range,
    "count:unique_word_count": count_unique_word_count,
    "ratio:stop_words": ratio_stop_words,
    "ratio:sentence_type": ratio_sentence_type,
    "ratio:sentence_balance": ratio_sentence_balance,
    "count:conjunctions": count_conjunctions,
    "count:person_names": count_person_names,
    "ratio:overlap": ratio_overlap,
    "count:numbers": count_numbers,
    "words:alphabet": words_alphabet,
    "words:vowel": words_vowel,
    "words:consonants": words_consonants,
    "sentence:alliteration_increment": sentence_alliteration_increment,
    "words:palindrome": words_palindrome,
    "count:punctuation": count_punctuation,
    "format:parentheses": format_parentheses,
    "format:quotes": format_quotes,
    "words:prime_lengths": words_prime_lengths,
    "format:options": format_options,
    "format:newline": format_newline,
    "format:emoji": format_emoji,
    "ratio:sentence_words": ratio_sentence_words,
    "count:words_japanese": count_words_japanese,
    "words:start_verb": words_start_verb,
    "words:repeats": words_repeats,
    "sentence:keyword": sentence_keyword,
    "count:pronouns": count_pronouns,
    "words:odd_even_syllables": words_odd_even_syllables,
    "words:last_first": words_last_first,
    "words:paragraph_last_first": words_paragraph_last_first,
    "sentence:increment": sentence_increment,
    "words:no_consecutive": words_no_consecutive,
    "format:line_indent": format_line_indent,
    "format:quote_unquote": format_quote_unquote,
    "format:list": format_list,
    "format:thesis": format_thesis,
    "format:sub-bullets": format_sub_bullets,
    "format:no_bullets_bullets": format_no_bullets_bullets,
    "custom:multiples": custom_multiples,
    "custom:mcq_count_length": custom_mcq_count_length,
    "custom:reverse_newline": custom_reverse_newline,
    "custom:word_reverse": custom_word_reverse,
    "custom:character_reverse": custom_character_reverse,
    "custom:sentence_alphabet": custom_sentence_alphabet,
    "custom:european_capitals_sort": custom_european_capitals_sort,
    "custom:csv_city": custom_csv_city,
    "custom:csv_special_character": custom_csv_special_character,
    "custom:csv_quotes": custom_csv_quotes,
    "custom:date_format_list": custom_date_format_list,
    "count:keywords_multiple": count_keywords_multiple,
    "words:keywords_specific_position": words_keywords_specific_position,
    "words:words_position": words_words_position,
    "repeat:repeat_change": repeat_repeat_change,
    "repeat:repeat_simple": repeat_repeat_simple,
    "repeat:repeat_span": repeat_repeat_span,
    "format:title_case": format_title_case,
    "format:output_template": format_output_template,
    "format:no_whitespace": format_no_whitespace,
}

CHECKERS: dict[str, Checker] = {instruction_id: _ALL[instruction_id] for instruction_id in IFBENCH_IDS}
