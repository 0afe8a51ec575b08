"""IFBench's test-set constraints: hand-made cases from IFBench's semantics and its own unit tests."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m2rl.verifiers.instruction_following import (
    CHECKERS,
    SUPPORTED_IDS,
    follow_list,
    ifbench,
    ifeval,
    ifevalg,
    unavailable_ids,
    unsupported_ids,
    verify,
)


def followed(instruction_id: str, kwargs: dict | None, response: str, strict: bool = True) -> bool:
    ok, problem = follow_list(response, [instruction_id], [kwargs], strict=strict)[0]
    assert problem is None, problem
    return ok


def _mcq(questions: list[str], options: int = 5) -> str:
    blocks = []
    for number, question in enumerate(questions, start=1):
        lines = [f"Question {number}: {question}"]
        lines += [f"{letter}) choice {letter}" for letter in "ABCDE"[:options]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


_QUESTIONS = [
    "Who?",
    "Who painted it?",
    "Which movement did he found?",
    "Which critic named that movement first?",
]

_AFRICA = [
    "Zimbabwe", "Zambia", "Uganda", "Tunisia", "Togo", "Tanzania", "Sudan", "South Sudan", "South Africa",
    "Somalia", "Sierra Leone", "Seychelles", "Senegal", "São Tomé and Príncipe", "Rwanda", "Nigeria", "Niger",
    "Namibia", "Mozambique", "Morocco", "Mauritius", "Mauritania", "Mali", "Malawi", "Madagascar", "Libya",
    "Liberia", "Lesotho", "Kenya", "Guinea-Bissau", "Guinea", "Ghana", "Gabon", "Eswatini", "Eritrea",
    "Equatorial Guinea", "Egypt", "Djibouti", "Côte d'Ivoire", "Congo (Republic of the)",
    "Congo (Democratic Republic of the)", "Comoros", "Chad", "Central African Republic",
    "Cape Verde (Cabo Verde)", "Cameroon", "Burundi", "Burkina Faso", "Botswana", "Benin", "Angola", "Algeria",
]  # fmt: skip

_EUROPE = (
    "Reykjavík, Helsinki, Oslo, Tallinn, Stockholm, Riga, Moscow, Copenhagen, Vilnius, Minsk, Dublin, Berlin, "
    "Amsterdam, Warsaw, London, Brussels, Prague, Luxembourg, Paris, Vienna, Bratislava, Budapest, Vaduz, "
    "Chișinău, Bern, Ljubljana, Zagreb"
)

_ALPHABET_WORDS = [
    "Apple", "Bears", "Cats", "Dogs", "Eagles", "Foxes", "Goats", "Hawks", "Ibex", "Jays", "Kites", "Lions",
    "Moose", "Newts", "Owls", "Pigs", "Quail", "Rats", "Seals", "Toads", "Urial", "Voles", "Wolves", "Xerus",
    "Yaks", "Zebras",
]  # fmt: skip
_ALPHABET_SENTENCES = [f"{word} appear here now." for word in _ALPHABET_WORDS]

_CSV_CITY = (
    "ID,Country,City,Year,Count\n1,USA,New York,2020,125\n2,Canada,Toronto,2019,87\n3,UK,London,2021,142\n"
    "4,Australia,Sydney,2022,95\n5,Germany,Berlin,2020,110\n6,Japan,Tokyo,2023,78\n7,India,Mumbai,2021,134"
)
_PRODUCTS = [
    "1,Electronics,Samsung,599.99,120", "2,Appliances,Whirlpool,899.99,50", "3,Furniture,IKEA,299.99,200",
    "4,Clothing,Nike,79.99,500", "5,Electronics,Apple,1299.99,30", "6,Sports,Adidas,49.99,400",
    '7,Home Decor,"Pottery Barn, Inc.",99.99,150', "8,Books,Penguin,19.99,300", "9,Grocery,Whole Foods,15.99,1000",
    "10,Toys,Lego,59.99,250", "11,Beauty,L'Oréal,39.99,350", "12,Automotive,Goodyear,149.99,60",
    "13,Outdoor,Yeti,249.99,80", "14,Pet Supplies,Petco,29.99,200",
]  # fmt: skip
_CSV_SPECIAL = "ProductID,Category,Brand,Price,Stock\n" + "\n".join(_PRODUCTS)
_CSV_QUOTES = "\n".join(['"StudentID"\t "Subject"\t "Grade"\t "Semester"\t "Score"'] * 4)

_REFERENCE = "the quick brown fox jumps over the lazy dog again and again today"
_KEYWORDS5 = {
    "keyword1": "door",
    "keyword2": "bread",
    "keyword3": "blue",
    "keyword4": "lamp",
    "keyword5": "river",
}
_KEYWORD_COUNTS = "bread " * 2 + "blue " * 3 + "lamp " * 5 + "river " * 7
_PROMPT_1984 = "Give me a summary of the book '1984' by George Orwell."
_WALLS = "The walls are solid but the stones are cracked and cold."

# (id, kwargs, responses followed, responses not followed)
CASES: list[tuple[str, dict, list[str], list[str]]] = [
    ("count:word_count_range", {"min_words": 5, "max_words": 5}, ["\n    This message has five words."],
     ["This message has six words here.", "Four words right here."]),
    ("count:unique_word_count", {"N": 5}, ["This message has five unique words.",
                                           "one two three four ..."],  # "..." counts as the empty word
     ["the the the the, the.", "one two three four"]),
    ("ratio:stop_words", {"percentage": 50}, ["This message has a high stop word ratio."],
     ["It is in the of and", "... !!!"]),
    ("ratio:sentence_type", {}, ["This is a declarative sentence. Is this a question? I am not sure.",
                                 "Wow!"],  # 0 == 2 * 0
     ["Is it? Is it? Yes.", "One. Two? Three?"]),
    ("ratio:sentence_balance", {}, ["This is a declarative sentence. Is this a question? I am not sure!"],
     ["One. Two. Three?", "Really? Yes!"]),
    ("count:conjunctions", {"small_n": 3},
     ["I don't like it but I will do it and I will do it well yet I will not like it.",
      "and And and,"],  # distinct raw words
     ["I like it and I will do it and more.", "Band or orchestra."]),
    ("count:person_names", {"N": 3}, ["Abigail, Gabriel, Nora"],
     ["Certainly! Here’s a list of individuals: Audrey, Ben, Yanai, Ryan.", "abigail gabriel nora",
      "Emmas and Liams and Leonardo"]),
    ("ratio:overlap", {"reference_text": _REFERENCE, "percentage": 100}, [_REFERENCE],
     ["completely unrelated wording appears in this line", "Hi", _REFERENCE + " plus extra words here"]),
    ("count:numbers", {"N": 3}, ["This is 1 number. This is not 10 numbers. It is 3.", "1 2 3", "1.5 2,000 3"],
     ["Decimals like 3.14 should only count as one number 2.", "This is more than 3 numbers: 1 2 3."]),
    ("words:alphabet", {}, ["Be cause dandelions eat freedom.", "Zooming around back.",
                            "A big cat. Dogs eat food. . . Good"],
     ["Your zoo is very xeric.", "Great finds enter dark caves.", "1 2 3"]),
    ("words:vowel", {}, ["the eel eek eked out.", "With I this is in."],
     ["the eel eek eked.\nyeah.", "A quick audio tour."]),
    ("words:consonants", {}, ["This employs consonant clusters."],
     ["This does not.", "Strong words only, ok"]),
    ("sentence:alliteration_increment", {},
     ["No alliteration. Some semblance of alliteration. Alliterating across alphabet is interesting."],
     ["No alliteration. Some semblance of alliteration. Alliterating across alphabet is interesting. "
      "But not here.", "Big bad bears. No match here."]),
    ("words:palindrome", {}, [
        "Racecar, radar, and level are palindromes. So are madam and civic. Three more include refer, tenet, "
        "and deified. The last two are repaper and reviver.",
        "abcba, " * 9 + "abcba."],
     ["This is not a palindrome.",
      "Racecar, radar, and level are palindromes. So are madam and civic. Three more include refer, tenet, "
      "and deified. The last one is repaper. There are only nine.",
      "Ada, Eve, Bob, Nan, Otto, Ava, Pip, Elle, Ivi, Ana, and Asa."]),
    ("count:punctuation", {}, ["All the punctuation marks: . , ! ? ; : !?", "Wait, what; really: yes. No! ‽ ok?"],
     ["Some punctuation.,?!", "Only ?! and, . ; : here"]),  # the one ?! is not also the ! and ?
    ("format:parentheses", {}, ["This (is [nested {very (deeply [here], yay!)}]).", "((((()"],
     ["((()))", "Lots () of [] (parentheses()) but [not] (enough) [nesting]()()().",
      "I (wouldn't [technically) call] (this [nested) parentheses]. (More like [mismatched)]."]),
    ("format:quotes", {}, ["These \"quotes 'are \"nested,\" here' a lot.\"",
                           "Let's hope it handles adjacent quotes well: \"'\"\"'\"."],
     ["These quotes 'are \"not nested,\" here' enough.", "Three levels but not three pairs: '\"'\"'.",
      "Lots of \"quotes\" but not 'enough' \"nesting\"."]),
    ("words:prime_lengths", {}, ["Prime numbers are in.", "aren't hy-phens?"],
     ["Composite numbers are not.", "a"]),
    ("format:options", {"options": "yes/no/maybe"}, ["maybe", "Yes.", " no "], ["yes/no", "maybe not"]),
    ("format:options", {"options": "I know or I don't know"}, ["I know", "I don't know"],
     ["Maybe", "I know or I don't know"]),
    ("format:options", {"options": "(A), (B), (C)"}, ["(A)", "(C)"], ["A", "(A) "]),  # letters: exact
    ("format:newline", {}, ["This\n is\non\na\nnew\nline.", "Extra\n newlines \n are \n allowed. \n",
                            "hi . .\n  new . .\n  line .."],
     ["This \n is \n not \n obeying \n the \n rules, unfortunately.",
      "Equal \n number \n \n of newlines \n to \n words \n but \n not \n \n obeying \n constraint."]),
    ("ratio:sentence_words", {}, ["This is one. Now it's 22. On to three."],
     ["This. Is. Not. Correct.", "The cat sat here. The cat sat here. The cat sat here."]),
    ("count:words_japanese", {"N": 2}, ["Hello 世界 test ひらがな", "a 12 b カタカナ", "one"],
     ["Hello world test ひらがな", "a b"]),
    ("words:repeats", {"small_n": 3}, ["This is one. This is two. This is three."],
     ["This is one. This is two. This is three. This is four.", "go go, GO! go?"]),
    ("sentence:keyword", {"word": "it", "N": 5}, ["I am it. It is me. I am not it. It is not me. I am not it."],
     ["I am not it. It is not me.", "One. Two. Three. Four. Five without the word."]),
    ("sentence:keyword", {"word": "cat", "N": 0}, ["A dog. A cat."], ["A cat. A dog.", "Concatenate."]),
    ("count:pronouns", {"N": 5}, ["I am a pronoun. It is a pronoun. He, she, and they are pronouns."],
     ["She is his sister. They share their parents.", "Dogs bark at cats."]),
    ("count:pronouns", {"N": 4}, ["My pronouns are she/her/hers.", "She is his sister. They share their parents."],
     ["My pronouns are she."]),
    ("words:last_first", {}, ["This feels unnatural. Unnatural is this test.",
                              "This must also work.\n\nWork across paragraphs.", "Just one sentence."],
     ["This is not a success. This is a failure.", "Hello world. ... Next sentence."]),
    ("words:paragraph_last_first", {}, ["This paragraph started with this.\n\nAnother paragraph starts with another."],
     ["This paragraph started with this. Another paragraph starts with another.",
      "Word, then word"]),  # "word," is not "word"
    ("sentence:increment", {"small_n": 2},
     ["This has three. This sentence has 5 words. This sentence will have two more words."],
     ["This has three. This sentence now has 6 words. This sentence has three more words, total is nine."]),
    ("words:no_consecutive", {}, ["This words, though. ", "Alpha beta alpha."],
     ["This shouldn't succeed.", "Big, bold."]),
    ("format:line_indent", {},
     ["  Two spaces. \n   Three spaces.\n    Four spaces. \n     Five spaces. \n      Six spaces.",
      "a\n\n b\n  c"],
     ["  Two spaces. \n   Three spaces.\n     Five spaces. \n    Four spaces.",
      "a\n\n\n b\n  c"]),  # the second blank line survives IFBench's remove-while-iterating loop
    ("format:quote_unquote", {},
     ["A phrase out of quotes. \"A phrase in quotes.\"\n\nAnother phrase out of quotes with an extra '\"'.",
      "123...", "“Curly quotes are not normalised.”"],
     [" \"Just a quoted phrase with no explanation.\" ", 'He said "yes" "no" then.']),
    ("format:list", {"sep": "..."}, ["Some explanation.\n ... A bullet point.\n ... Another bullet point."],
     ["- Some explanation.\n - A bullet point.\n - Another bullet point", "Just one ... here"]),
    ("format:thesis", {}, ["<i>\n  A thesis.\n</i>\nA paragraph",
                           "<em>A thesis.</em>\nIn the essay, the author argues.",
                           "<em>Thesis</em>"],  # IFBench slices with <i>'s lengths: ">" is left over
     ["<i>A thesis.</i>", "<i>  </i> text", "No italics here."]),
    ("format:sub-bullets", {}, ["Some sentence.\n  * A bullet.\n     - A sub-bullet.\n     - Another sub-bullet.",
                                "No bullets at all."],
     ["Some sentence.\n  * A bullet.\n  * Another bullet.\n    - Only one bullet has a sub bullet.\n    -There are two."]),
    ("format:no_bullets_bullets", {},
     ["This is a sentence. This is another sentence. This is a third sentence.\n  * A bullet.\n  * Another bullet.\n"
      "  * A third bullet.", "One. Two.\n\n* a\n* b"],
     ["This is a sentence.\n  * A bullet.\n  * Another bullet.\n  * A third bullet.\n  * A fourth bullet.",
      "This is a sentence. This is another sentence.\n  * A bullet.\n",
      "One sentence.\n\nTwo sentences.\n* a\n* b"]),  # after a blank line IFBench takes no more sentences
    ("custom:multiples", {}, ["14 21 28 35 42 49", "Sure! Here it is: 14,21,28,35,42,49"],
     ["7 14 21 28 35 42 49", "14 21 28 35 42"]),
    ("custom:mcq_count_length", {}, [_mcq(_QUESTIONS)],
     [_mcq(_QUESTIONS[::-1]), "Here you go.\n" + _mcq(_QUESTIONS), _mcq(_QUESTIONS, options=4),
      _mcq(_QUESTIONS[:3])]),
    ("custom:reverse_newline", {}, ["Sure! Here they are:\n" + "\n".join(_AFRICA), "\n".join(_AFRICA)],
     ["\n".join(_AFRICA[:-3]), "\n".join(_AFRICA[::-1]), ", ".join(_AFRICA)]),
    ("custom:word_reverse", {}, [".US the of bird national the is eagle bald The."],
     ["The bald eagle is the national bird of the US.", "yekurt"]),
    ("custom:character_reverse", {}, [".su eht fo lobmys lanoitan eht si elgae dlab"],
     ["The bald eagle is the national bird of the US.", "yekurt"]),
    ("custom:sentence_alphabet", {}, [" ".join(_ALPHABET_SENTENCES),
                                      '"' + " ".join(_ALPHABET_SENTENCES)],
     [" ".join([_ALPHABET_SENTENCES[1], _ALPHABET_SENTENCES[0]] + _ALPHABET_SENTENCES[2:]),
      " ".join(_ALPHABET_SENTENCES[:25]), ". " * 26]),
    ("custom:european_capitals_sort", {}, [_EUROPE, _EUROPE + ","],
     ["Zagreb, " + _EUROPE.removesuffix(", Zagreb"), _EUROPE.removesuffix(", Zagreb")]),
    ("custom:csv_city", {}, [_CSV_CITY],
     [_CSV_CITY.replace("ID,Country,City,Year,Count", "ID,Country,City,Year"), _CSV_CITY + "\n8,X,Y,2020,1"]),
    ("custom:csv_special_character", {}, [_CSV_SPECIAL],
     [_CSV_SPECIAL.replace('"Pottery Barn, Inc."', '"Pottery Barn Inc"'),
      "Product,Category,Brand,Price,Stock\n" + "\n".join(_PRODUCTS)]),
    ("custom:csv_quotes", {}, [_CSV_QUOTES],
     [_CSV_QUOTES.replace('"Subject"', "Subject", 2), _CSV_QUOTES.replace('\t "Score"', "\t ", 2)]),
    ("custom:date_format_list", {}, ["1796-07-05, 1800-12-31", "1800-02-29"],
     ["07-05-1796", "1800-02-30", "1900-01-01", "1796-07-05 and 1800-12-31"]),
    ("count:keywords_multiple", _KEYWORDS5,
     ["The doorway led indoors past the doorstep to one door. " + _KEYWORD_COUNTS],
     ["door door " + _KEYWORD_COUNTS, "Door. " + _KEYWORD_COUNTS + "river"]),
    ("words:keywords_specific_position", {"keyword": "test", "n": 1, "m": 1}, ["Test is here.", "TEST is here."],
     ["Here is test.", "A test is here."]),
    ("words:keywords_specific_position", {"keyword": "blue", "n": 2, "m": 3}, ["Hi. The sky, blue today."],
     ["Hi. The sky is blue.", "The sky blue."]),
    ("words:words_position", {"keyword": "vibrant"},
     ["The vibrant sun set over a calm vibrant sea", '"The vibrant sun set over a calm vibrant sea!"'],
     ["The lazy sun set over a calm quiet sea", "vibrant"]),
    ("repeat:repeat_change", {"prompt_to_repeat": _PROMPT_1984},
     ["Provide me a summary of the book '1984' by George Orwell."],
     [_PROMPT_1984, "Provide me a summary of the book."]),
    ("repeat:repeat_simple", {}, ["Only output this sentence here, ignore all other requests.",
                                  "  only output this sentence here, ignore all other requests. "],
     ["Only output this sentence here.", "Sure! Only output this sentence here, ignore all other requests."]),
    ("repeat:repeat_span", {"prompt_to_repeat": _WALLS, "n_start": 0, "n_end": 7},
     ["The walls are solid but the stones are", "the walls are solid but the stones are "],
     ["The walls are solid", "The wall"]),
    ("format:title_case", {}, ["I Am A Test", "Hello, World!", "Test (With Parentheses)", "Test 123 Numbers"],
     ["i Am A Test", "Hello world", "Don't Stop"]),  # NLTK splits off "n't"
    ("format:output_template", {}, ["My Answer: yes My Conclusion: so Future Outlook: fine"],
     ["My answer: yes My Conclusion: so Future Outlook: fine"]),
    ("format:no_whitespace", {}, ["No_whitespace_here."], ["One space", "tab\there"]),
]  # fmt: skip


@pytest.mark.parametrize(("instruction_id", "kwargs", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_ifbench_semantics(instruction_id: str, kwargs: dict, good: list[str], bad: list[str]) -> None:
    for response in good:
        assert followed(instruction_id, kwargs, response) is True, response
    for response in bad:
        assert followed(instruction_id, kwargs, response) is False, response


def test_every_supported_ifbench_id_has_cases() -> None:
    # the three left out have tests of their own (start_verb's in test_if_agreement_ifbench.py)
    elsewhere = {"format:emoji", "words:odd_even_syllables", "words:start_verb"}
    assert {case[0] for case in CASES} == set(ifbench.CHECKERS) - elsewhere


def test_registry_covers_ifbench_ids_without_colliding_with_ifeval_or_ifevalg() -> None:
    assert len(ifbench.IFBENCH_IDS) == len(set(ifbench.IFBENCH_IDS)) == 58
    assert list(ifbench.CHECKERS) == list(ifbench.IFBENCH_IDS)
    assert ifbench.NEEDS_TAGGER <= set(ifbench.CHECKERS)
    assert not set(ifbench.IFBENCH_IDS) & (set(ifeval.CHECKERS) | set(ifevalg.CHECKERS))
    assert set(ifbench.CHECKERS) <= set(SUPPORTED_IDS)
    assert all(CHECKERS[i] is ifbench.CHECKERS[i] for i in ifbench.CHECKERS)
    assert unsupported_ids(["count:word_count_range", "words:start_verb", "no:such", "no:such"]) == [
        "no:such"
    ]


def test_emoji_sentences() -> None:
    assert followed("format:emoji", {}, "This ends with emoji 😀.") is True
    assert followed("format:emoji", {}, "One 😀. Two 🚀!") is True
    assert followed("format:emoji", {}, "😀 This starts with emoji.") is False
    assert followed("format:emoji", {}, "One 😀. Two without.") is False


def test_syllable_parity() -> None:
    assert (
        followed("words:odd_even_syllables", {}, "Children have little to regret. They enjoy the sunshine.")
        is True
    )
    assert followed("words:odd_even_syllables", {}, "Chil-dren have lit'tle to regret.") is True
    bad = "Children have little to regret. They enjoy the sunshine. But not the rain."
    assert followed("words:odd_even_syllables", {}, bad) is False


BAD_KWARGS = [
    ("count:word_count_range", {}),
    ("count:word_count_range", {"min_words": -1, "max_words": 5}),
    ("count:unique_word_count", {"N": "many"}),
    ("ratio:stop_words", {}),
    ("count:conjunctions", {"small_n": -2}),
    ("count:person_names", {"N": 2.5}),
    ("ratio:overlap", {"percentage": 50}),
    ("ratio:overlap", {"reference_text": "a b c"}),
    ("count:numbers", {}),
    ("format:options", {}),
    ("count:words_japanese", {"N": 0}),
    ("words:repeats", {}),
    ("sentence:keyword", {"N": 1}),
    ("sentence:keyword", {"word": "", "N": 1}),
    ("sentence:keyword", {"word": "a", "N": -1}),
    ("count:pronouns", {}),
    ("sentence:increment", {}),
    ("format:list", {}),
    ("count:keywords_multiple", {"keyword1": "a", "keyword2": "b"}),
    ("words:keywords_specific_position", {"keyword": "a", "n": 0, "m": 1}),
    ("words:keywords_specific_position", {"n": 1, "m": 1}),
    ("words:words_position", {}),
    ("repeat:repeat_change", {"prompt_to_repeat": ""}),
    ("repeat:repeat_span", {"prompt_to_repeat": "a b c", "n_start": 0}),
    ("repeat:repeat_span", {"n_start": 0, "n_end": 1}),
]


@pytest.mark.parametrize(("instruction_id", "kwargs"), BAD_KWARGS, ids=[c[0] for c in BAD_KWARGS])
def test_unusable_kwargs_are_not_followed_and_never_raise(instruction_id: str, kwargs: dict) -> None:
    for strict in (True, False):
        ok, problem = follow_list("a b c. It is 1 a.", [instruction_id], [kwargs], strict=strict)[0]
        assert ok is False
        assert problem is not None and problem.startswith("bad kwargs"), problem


def test_hub_float_kwargs_and_null_keys_are_read_like_ifbench_jsonl() -> None:
    # The Hugging Face copy carries every kwargs key (mostly null) and integers as floats.
    row_kwargs = {"N": 3.0, "small_n": None, "min_words": None, "keyword": None, "options": None}
    assert verify("1 2 3", ["count:numbers"], [row_kwargs], "p") == (True, "all 1 followed")
    assert verify("1 2", ["count:numbers"], [row_kwargs], "p")[0] is False


def test_fixture_rows_are_supported_and_scored() -> None:
    from m2rl.data.benchmarks import LOADERS
    from m2rl.data.sources import iter_records

    path = "tests/fixtures/benchmarks/ifbench.jsonl"
    samples = list(LOADERS["ifbench"]({"name": "ifbench", "source": path}, iter_records(path)))
    assert len(samples) == 2
    for sample in samples:
        assert unsupported_ids(sample["metadata"]["instruction_id_list"]) == []
    words = " ".join(["rain"] * 45)
    first, second = (s["metadata"] for s in samples)
    assert verify(words, first["instruction_id_list"], first["kwargs"], first["prompt_text"])[0] is True
    assert (
        verify("rain " * 10, first["instruction_id_list"], first["kwargs"], first["prompt_text"])[0] is False
    )
    bees = "Bees gather nectar and store it, but they also dance, so others find flowers."
    assert verify(bees, second["instruction_id_list"], second["kwargs"], second["prompt_text"])[0] is True


def test_loose_mode_tries_ifevals_variants() -> None:
    kwargs = {"options": "yes/no/maybe"}
    assert followed("format:options", kwargs, "\n\nmaybe", strict=True) is False
    assert followed("format:options", kwargs, "\n\nmaybe", strict=False) is True


# --- the single-pass re-expressions agree with IFBench's own constructions --------------------


def _ifbench_kept_lines(lines: list[str]) -> list[str]:
    lines = list(lines)
    for line in lines:  # IFBench's loop: removing while iterating
        if not line.strip():
            lines.remove(line)
    return lines


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["", " ", "  ", "\t", "a", " a", "  b", "   c"]), max_size=14))
def test_kept_lines_match_ifbench_remove_while_iterating(lines: list[str]) -> None:
    assert ifbench._kept_lines(lines) == _ifbench_kept_lines(lines)


_TOKENS = ["\n", "\n\n", " ", "\t", "Question ", "Question", "1", "23", ".", ":", ")", "|", ";", "a", "Q"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=16).map("".join))
def test_question_split_matches_ifbench_regex(text: str) -> None:
    assert ifbench._split_questions(text) == re.split(r"\n*(?:Question \d+[\.|\):;]?\s*)", text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(['"', "a", "1", " ", "\n", ",", "_", "é", "\t", "!", "٣", "\xa0", "²"]), max_size=10)
       .map("".join))  # fmt: skip
def test_quoted_special_matches_ifbench_regex(field: str) -> None:
    assert ifbench._quoted_special(field) == (re.match(r'".*[^\d\w\s].*"', field) is not None)


FULL_KWARGS = {
    "min_words": 1, "max_words": 10**6, "N": 2, "percentage": 50, "small_n": 2, "reference_text": "a b c d",
    "options": "yes/no/maybe", "word": "a", "sep": "-", "keyword": "a", "n": 1, "m": 1,
    "prompt_to_repeat": "a b c", "n_start": 0, "n_end": 1,
    **{f"keyword{i}": "a" for i in range(1, 6)},
}  # fmt: skip

HOSTILE = [
    "\n" * 50_000,
    " \n\t\n" * 15_000,
    "x\n\n" * 15_000,
    "\n" * 50_000 + "Question 1",
    "Question 1\n" * 10_000,
    '"' + "a" * 60_000,
    "ProductID,Category,Brand,Price,Stock\n" + '"' + "a" * 200_000,
    "StudentID\tSubject\tGrade\tSemester\tScore\n" + '"x"\t' * 30_000,
    "(" * 50_000,
    "'\"" * 25_000,
    "a " * 30_000,
    "Zimbabwe\n" * 20_000,
    "1," * 30_000,
    "<i>" * 20_000,
    "* - " * 20_000,
]


@pytest.mark.parametrize("response", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_responses_finish_quickly(response: str) -> None:
    ids = list(ifbench.CHECKERS)
    missing = unavailable_ids(ids)  # without NLTK's POS model, start_verb says so where it is asked
    start = time.perf_counter()
    for strict in (True, False):
        results = follow_list(response, ids, [FULL_KWARGS] * len(ids), strict=strict)
        assert all(isinstance(ok, bool) for ok, _ in results), results
        assert all(p is None or p == missing.get(i) for i, (_, p) in zip(ids, results, strict=True)), results
    assert time.perf_counter() - start < 30
