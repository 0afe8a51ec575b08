"""Built-in procedural data for the four domains, so the whole study runs with no network.

Each generator draws problems from a seeded RNG and writes them in the canonical schema with the
same label formats as the real data (math: answer string, science: letter, code: stdin/stdout
tests, IF: IFEval instruction ids and kwargs), plus a reference response in `metadata.solution`
(a short `<think>` block, then the answer) used as the SFT target. Splits (`sft`, `rl`, `test`) are
disjoint by construction: every problem has a canonical key, and the key's hash picks its split.
"""

from __future__ import annotations

import hashlib
import json
import operator
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from m2rl.data.schema import make_sample
from m2rl.errors import UserError

SPLITS = ("sft", "rl", "test")
# Share of the problem space each split owns (by key hash), so no problem appears in two splits.
SPLIT_SHARES = {"sft": 0.5, "rl": 0.3, "test": 0.2}


def split_of(key: str) -> str:
    """The split a problem with this canonical key belongs to."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for split in SPLITS:
        edge += SPLIT_SHARES[split]
        if bucket < edge:
            return split
    return SPLITS[-1]


@dataclass(frozen=True)
class Problem:
    """One generated problem before it is wrapped as a sample."""

    key: str
    prompt: str
    label: str | None
    solution: str
    metadata: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# math (deepscaler): arithmetic, answer as `Answer: \boxed{N}`
MATH_INSTRUCTION = "Solve the problem. The last line must be Answer: \\boxed{N}."


def column_steps(a: int, b: int, op: str) -> str:
    """Column-by-column working for a + b or a - b (a >= b), one digit pair per step, as a pupil writes it.

    Small models learn single-digit facts and carries far more easily than whole sums, so the
    reference reasoning decomposes the problem; RL then has partial competence to sharpen.
    """
    digits_a, digits_b = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(digits_a), len(digits_b))):
        x = int(digits_a[i]) if i < len(digits_a) else 0
        y = int(digits_b[i]) if i < len(digits_b) else 0
        if op == "+":
            total = x + y + carry
            steps.append(f"{x}+{y}" + (f"+{carry}" if carry else "") + f"={total}")
            carry = total // 10
        else:
            x -= carry
            carry = 1 if x < y else 0
            steps.append(f"{x + 10 * carry}-{y}={x + 10 * carry - y}")
    if op == "+" and carry:
        steps.append(f"carry {carry}")
    return ", ".join(steps)


def math_problem(rng: random.Random, difficulty: int) -> Problem:
    """Arithmetic with column working. `difficulty` 1: a two-digit number plus or minus one up to 19;
    2: both two-digit; 3: adds multiplication and three-digit operands.

    At difficulty 2 the built-in model's SFT scored 9-32% depending on the machine and seed (float order
    decides which digit facts it learns first), too rare a success for GRPO groups on some draws; with a
    second operand up to 19 its tens column is at most a digit plus one and a carry, and RL has partial
    skill to sharpen.
    """
    level = max(1, min(3, difficulty))
    op = rng.choice(["+", "-", "*"] if level == 3 else ["+", "-"])
    high = 999 if level == 3 else 99
    if op == "*":
        a, b = rng.randint(2, 9), rng.randint(2, high // 2)
        answer = str(a * b)
        working = f"{a} * {b} = {answer}"
    else:
        a = rng.randint(10, high)
        b = rng.randint(1, 19) if level == 1 else rng.randint(1, high)
        if op == "-" and b > a:
            a, b = b, a
        answer = str(a + b if op == "+" else a - b)
        working = column_steps(a, b, op)
    solution = f"<think>{working}. So {a} {op} {b} = {answer}.</think>\nAnswer: \\boxed{{{answer}}}"
    return Problem(f"math:{a}{op}{b}", f"{MATH_INSTRUCTION}\n\nWhat is {a} {op} {b}?", answer, solution, {})


# ---------------------------------------------------------------------------------------------
# science (gpqa): four-option multiple choice: states of matter and measurements compared, and facts
ELEMENTS = [
    ("Hydrogen", "H", 1),
    ("Helium", "He", 2),
    ("Lithium", "Li", 3),
    ("Beryllium", "Be", 4),
    ("Boron", "B", 5),
    ("Carbon", "C", 6),
    ("Nitrogen", "N", 7),
    ("Oxygen", "O", 8),
    ("Fluorine", "F", 9),
    ("Neon", "Ne", 10),
    ("Sodium", "Na", 11),
    ("Magnesium", "Mg", 12),
    ("Aluminium", "Al", 13),
    ("Silicon", "Si", 14),
    ("Phosphorus", "P", 15),
    ("Sulfur", "S", 16),
    ("Chlorine", "Cl", 17),
    ("Argon", "Ar", 18),
    ("Potassium", "K", 19),
    ("Calcium", "Ca", 20),
    ("Iron", "Fe", 26),
    ("Copper", "Cu", 29),
    ("Zinc", "Zn", 30),
    ("Silver", "Ag", 47),
    ("Tin", "Sn", 50),
    ("Iodine", "I", 53),
    ("Gold", "Au", 79),
    ("Mercury", "Hg", 80),
    ("Lead", "Pb", 82),
    ("Uranium", "U", 92),
]
UNITS = [
    ("force", "newton"),
    ("energy", "joule"),
    ("power", "watt"),
    ("pressure", "pascal"),
    ("charge", "coulomb"),
    ("voltage", "volt"),
    ("resistance", "ohm"),
    ("frequency", "hertz"),
    ("mass", "kilogram"),
    ("time", "second"),
    ("length", "metre"),
    ("temperature", "kelvin"),
    ("current", "ampere"),
    ("capacitance", "farad"),
    ("inductance", "henry"),
    ("magnetic flux", "weber"),
    ("luminous intensity", "candela"),
    ("amount of substance", "mole"),
]
LETTERS = "ABCD"


# Facts per science difficulty (elements, units) for the fact questions of difficulty 2 and 3.
FACT_BASE_SIZES = {1: (10, 6), 2: (20, 12), 3: (len(ELEMENTS), len(UNITS))}


def _fact_question(rng: random.Random, difficulty: int) -> tuple[str, str, list[str], str]:
    """(question, correct option, distractor pool, short reasoning) from the fact base."""
    element_count, unit_count = FACT_BASE_SIZES[max(1, min(3, difficulty))]
    elements, units = ELEMENTS[:element_count], UNITS[:unit_count]
    kind = rng.choice(["symbol", "element", "number", "unit"])
    if kind == "unit":
        quantity, unit = rng.choice(units)
        pool = [u for _, u in units if u != unit]
        return f"What is the SI unit of {quantity}?", unit, pool, f"{quantity} is measured in {unit}."
    name, symbol, number = rng.choice(elements)
    if kind == "symbol":
        pool = [s for _, s, _ in elements if s != symbol]
        return f"What is the chemical symbol of {name}?", symbol, pool, f"{name} has symbol {symbol}."
    if kind == "element":
        pool = [n for n, _, _ in elements if n != name]
        return f"Which element has the symbol {symbol}?", name, pool, f"{symbol} is {name}."
    pool = [str(z) for _, _, z in elements if z != number]
    return f"What is the atomic number of {name}?", str(number), pool, f"{name} has atomic number {number}."


STATES = ["solid", "liquid", "gas"]  # the answers a phase question can have
PHASES = [*STATES, "plasma"]  # plasma: a fourth option, never the answer
QUANTITIES = [("mass", "kg"), ("length", "m"), ("volume", "L"), ("temperature", "K"), ("speed", "m/s")]


def _phase_question(rng: random.Random, difficulty: int) -> tuple[str, str, list[str], str]:
    """The state of a substance at a temperature, from its melting and boiling points (two comparisons).

    The state is drawn first, uniformly, then a temperature strictly inside its range: with the
    temperature drawn uniformly, liquid was the most common answer (107 of 256 test items against 65
    solid), and an RL run could gain by answering "liquid" more often instead of comparing the numbers.
    """
    top = 99 if difficulty <= 2 else 999
    melt = rng.randint(5, top // 2)
    boil = rng.randint(melt + 5, top - 1)
    phase = rng.choice(STATES)
    if phase == "solid":
        temperature = rng.randint(1, melt - 1)
        why = f"{temperature} is below {melt}"
    elif phase == "liquid":
        temperature = rng.randint(melt + 1, boil - 1)
        why = f"{temperature} is above {melt} and below {boil}"
    else:
        temperature = rng.randint(boil + 1, top)
        why = f"{temperature} is above {boil}"
    question = f"A substance melts at {melt} K and boils at {boil} K. What is its state at {temperature} K?"
    reason = f"It melts at {melt} and boils at {boil}. {why}, so it is {phase}."
    return question, phase, [p for p in PHASES if p != phase], reason


def _extreme_question(rng: random.Random, difficulty: int) -> tuple[str, str, list[str], str]:
    """Which of four measured samples has the greatest or least quantity (comparisons of numbers)."""
    quantity, unit = rng.choice(QUANTITIES)
    top = 99 if difficulty <= 2 else 999
    values = rng.sample(range(2, top + 1), 4)
    word, pick = rng.choice([("greatest", max), ("least", min)])
    best = pick(values)
    question = f"Four samples were measured. Which has the {word} {quantity}?"
    others = [f"{v} {unit}" for v in values if v != best]
    reason = f"Compare {{values}}: the {word} is {best}."  # the values in the options' order, filled in later
    return question, f"{best} {unit}", others, reason


def science_problem(rng: random.Random, difficulty: int) -> Problem:
    """Four shuffled options. Difficulty 1: the state of a substance from its melting and boiling points,
    reasoned by two comparisons; 2 adds the greatest/least of four measurements and fact questions on a
    small fact base; 3: three-digit values and every fact.

    A fact the model has not memorised is a guess RL cannot improve; two comparisons of two-digit numbers
    are a skill it partly has after SFT, which RL sharpens, as column sums are for math. (Products such as
    F = m x a were tried: the model copied the formula and operands but multiplied and read the options at
    chance, 24.7% after SFT. Mixing in the greatest/least questions at difficulty 1 left SFT at chance on
    science, 27.7%, in one study: the two kinds competed for the same 800 SFT conversations.)
    """
    kinds = [_phase_question] + ([_extreme_question, _fact_question] if difficulty >= 2 else [])
    question, correct, pool, reason = rng.choice(kinds)(rng, difficulty)
    options = rng.sample(pool, 3) + [correct]
    rng.shuffle(options)
    reason = reason.replace("{values}", ", ".join(o.split()[0] for o in options))
    letter = LETTERS[options.index(correct)]
    body = "\n".join(f"{LETTERS[i]}) {opt}" for i, opt in enumerate(options))
    prompt = f"Answer the following multiple choice question step by step.\n\n{question}\n{body}"
    # The reasoning reads the options in order up to the match: copying the next option line is
    # easy for a small model, finding a letter behind a word in the prompt is not. A quantity's unit
    # is left out of the scan, which keeps the response within the RL completion budget.
    scan = ", ".join(
        f"{LETTERS[i]}) {opt.split(' ')[0] if opt[0].isdigit() else opt}"
        for i, opt in enumerate(options[: options.index(correct) + 1])
    )
    solution = f"<think>{reason} {scan}. That is option {letter}.</think>\nAnswer: {letter}"
    # a question and its set of options belong to one split, whatever their order (another order would
    # otherwise leak the answer into the test set)
    key = f"science:{question}|{'|'.join(sorted(options))}"
    return Problem(key, prompt, letter, solution, {"valid_letters": list(LETTERS), "options": options})


# ---------------------------------------------------------------------------------------------
# code (unit_test): tiny stdin/stdout programs with 3-5 tests
def _code_task(
    rng: random.Random, difficulty: int
) -> tuple[str, str, str, Callable[[random.Random], tuple[str, str]]]:
    """(key, statement, program, test maker) for one task family.

    Difficulty 3 (the default) is a branch on a property of n ("3*n if n is even, otherwise n-4") and
    sum-of-two and max-of-three with a three-digit offset: programs that follow from the statement by
    copying three or four choices, which the built-in model gets partly right after SFT (10-39% of the
    code items in three SFT models) and RL sharpens (code experts +3 to +13 points). It drops the
    one-line formulas the model always gets right after SFT (linear, square, mod: 100% in a study).
    Difficulty 4 adds filter-then-aggregate over a list ("the count of those less than 7"), whose
    aggregate word the built-in model either learns or guesses at chance depending on the SFT draw
    (21-32% after SFT in four of five SFT models, 87-98% with half again as many examples), so an
    expert gains on it in some draws and not at all in others.
    """
    if difficulty >= 3:
        families = ["sum2", "max3", "branch", "branch"] + (["filter", "filter"] if difficulty >= 4 else [])
    else:
        families = ["linear", "linear", "square", "sum2", "max3", "mod", "reverse", "repeat"]
    top = 999 if difficulty >= 3 else 99  # the offset of sum2 and max3
    family = rng.choice(families)
    if family == "filter":
        return _filter_task(rng)
    if family == "branch":
        return _branch_task(rng)
    if family == "linear":
        a, b = rng.randint(2, 15), rng.randint(-50, 50 * difficulty)
        return (
            f"linear:{a}:{b}",
            f"Read an integer n and print {a}*n+{b}.",
            f"n = int(input())\nprint({a} * n + {b})",
            lambda r: (lambda n: (f"{n}\n", f"{a * n + b}\n"))(r.randint(-50, 50)),
        )
    if family == "square":
        b = rng.randint(0, 60)
        return (
            f"square:{b}",
            f"Read an integer n and print n*n+{b}.",
            f"n = int(input())\nprint(n * n + {b})",
            lambda r: (lambda n: (f"{n}\n", f"{n * n + b}\n"))(r.randint(-30, 30)),
        )
    if family == "sum2":
        c = rng.randint(1, top)
        return (
            f"sum2:{c}",
            f"Read two integers a and b on one line and print a+b+{c}.",
            f"a, b = map(int, input().split())\nprint(a + b + {c})",
            lambda r: (lambda a, b: (f"{a} {b}\n", f"{a + b + c}\n"))(r.randint(-99, 99), r.randint(-99, 99)),
        )
    if family == "max3":
        c = rng.randint(1, top)
        return (
            f"max3:{c}",
            f"Read three integers on one line and print the largest minus {c}.",
            f"x = list(map(int, input().split()))\nprint(max(x) - {c})",
            lambda r: (lambda xs: (" ".join(map(str, xs)) + "\n", f"{max(xs) - c}\n"))(
                [r.randint(-99, 99) for _ in range(3)]
            ),
        )
    if family == "mod":
        m = rng.randint(2, 40)
        return (
            f"mod:{m}",
            f"Read a non-negative integer n and print n%{m}.",
            f"n = int(input())\nprint(n % {m})",
            lambda r: (lambda n: (f"{n}\n", f"{n % m}\n"))(r.randint(0, 999)),
        )
    if family == "reverse":
        k = rng.randint(1, 4)
        return (
            f"reverse:{k}",
            f"Read a word and print it reversed, {k} times on one line separated by spaces.",
            f"s = input().strip()\nprint(' '.join([s[::-1]] * {k}))",
            lambda r: (lambda w: (f"{w}\n", " ".join([w[::-1]] * k) + "\n"))(
                "".join(r.choice("abcdefgh") for _ in range(r.randint(2, 6)))
            ),
        )
    k = rng.randint(2, 6)
    return (
        f"repeat:{k}",
        f"Read a word and print it {k} times with no spaces.",
        f"s = input().strip()\nprint(s * {k})",
        lambda r: (lambda w: (f"{w}\n", w * k + "\n"))(
            "".join(r.choice("xyzuvw") for _ in range(r.randint(1, 4)))
        ),
    )


# Each choice a statement can make: its words, the code that implements it, and the same in Python.
FILTER_AGGREGATES = {"sum": ("sum(xs)", sum), "count": ("len(xs)", len), "largest": ("max(xs)", max), "smallest": ("min(xs)", min)}  # fmt: skip
FILTER_COMPARISONS = {"greater than": (">", operator.gt), "less than": ("<", operator.lt)}
BRANCH_CONDITIONS = {"even": ("n % 2 == 0", lambda n: n % 2 == 0), "positive": ("n > 0", lambda n: n > 0)}


def _filter_task(rng: random.Random) -> tuple[str, str, str, Callable[[random.Random], tuple[str, str]]]:
    """Aggregate the integers of a line that pass a comparison, e.g. the sum of those less than 7."""
    aggregate, words = rng.choice(list(FILTER_AGGREGATES)), rng.choice(list(FILTER_COMPARISONS))
    c, (op, compare) = rng.randint(-40, 40), FILTER_COMPARISONS[words]
    code, reduce = FILTER_AGGREGATES[aggregate]

    def make_test(r: random.Random) -> tuple[str, str]:
        while True:  # at least one value passes, so largest/smallest are defined
            xs = [r.randint(-50, 50) for _ in range(r.randint(3, 6))]
            kept = [v for v in xs if compare(v, c)]
            if kept:
                return " ".join(map(str, xs)) + "\n", f"{reduce(kept)}\n"

    return (
        f"filter:{aggregate}:{op}:{c}",
        f"Read integers on one line and print the {aggregate} of those {words} {c}.",
        f"xs = [v for v in map(int, input().split()) if v {op} {c}]\nprint({code})",
        make_test,
    )


def _branch_task(rng: random.Random) -> tuple[str, str, str, Callable[[random.Random], tuple[str, str]]]:
    """Two formulas chosen by a property of n, e.g. 3*n if n is even, otherwise n-4."""
    a, b, condition = rng.randint(2, 9), rng.randint(1, 99), rng.choice(list(BRANCH_CONDITIONS))
    code, holds = BRANCH_CONDITIONS[condition]
    return (
        f"branch:{condition}:{a}:{b}",
        f"Read an integer n and print {a}*n if n is {condition}, otherwise n-{b}.",
        f"n = int(input())\nprint({a} * n if {code} else n - {b})",
        lambda r: (lambda n: (f"{n}\n", f"{a * n if holds(n) else n - b}\n"))(r.randint(-30, 30)),
    )


def code_problem(rng: random.Random, difficulty: int) -> Problem:
    """A stdin/stdout task with 3-5 distinct tests and a reference program in a ```python block."""
    key, statement, program, make_test = _code_task(rng, difficulty)
    tests: dict[str, str] = {}
    for _ in range(50):
        stdin, stdout = make_test(rng)
        tests.setdefault(stdin, stdout)
        if len(tests) >= rng.randint(3, 5):
            break
    prompt = f"Write a Python program that reads from standard input.\n\n{statement}"
    solution = f"<think>{statement.split(' and ', 1)[-1]}</think>\n```python\n{program}\n```"
    unit_tests = {"inputs": list(tests), "outputs": list(tests.values())}
    return Problem(f"code:{key}", prompt, None, solution, {"unit_tests": unit_tests})


# ---------------------------------------------------------------------------------------------
# if (ifevalg): IFEval instruction ids with kwargs; responses built to satisfy them
SENTENCES = {
    "the sea": ["The sea is wide and blue", "Waves roll onto the sand", "Boats drift far from the shore"],
    "a garden": ["The garden is full of roses", "Bees visit every flower", "We water the plants at dawn"],
    "the moon": ["The moon shines at night", "Its light is soft and pale", "It changes shape each week"],
    "a river": ["The river runs to the sea", "Fish swim in the cold water", "Trees grow along the banks"],
    "winter": ["Winter brings snow and ice", "The days are short and cold", "We sit by the warm fire"],
    "a library": ["The library is quiet", "Books fill every shelf", "People read at long tables"],
    "the city": ["The city never sleeps", "Cars fill the busy streets", "Lights glow in tall towers"],
    "a forest": [
        "The forest is dark and green",
        "Birds sing in the tall trees",
        "A path winds between the pines",
    ],
    "music": ["Music fills the room", "A piano plays a slow song", "Drums keep a steady beat"],
    "bread": ["Fresh bread smells warm", "The crust is brown and crisp", "We bake it every morning"],
    "the desert": ["The desert is hot and dry", "Sand covers the ground", "Cactus plants store water"],
    "a train": ["The train leaves at noon", "It rolls along the tracks", "People wave from the windows"],
    "coffee": ["Coffee smells rich and dark", "We drink it in the morning", "It keeps us awake"],
    "the mountains": ["The mountains are tall", "Snow sits on the peaks", "Clouds drift past the rocks"],
    "a cat": ["The cat sleeps in the sun", "It chases a small ball", "Its fur is soft and grey"],
    "rain": ["Rain taps on the roof", "The streets shine when wet", "Plants drink the water"],
}
TOPICS = list(SENTENCES)
TASKS = [
    "Write two sentences about {topic}.",
    "Describe {topic} in two sentences.",
    "Write a short note about {topic}.",
    "Tell me about {topic} in two sentences.",
]
END_PHRASES = [
    "Is there anything else I can help with?",
    "That is all.",
    "Thank you for reading.",
    "See you soon.",
    "Any other questions?",
]
# Not "english_capital": IFEval's checker also runs language detection, which often fails on short
# all-caps English, so a correct reference response would score 0.
IF_FAMILIES = ("lowercase", "no_comma", "end_phrase", "bullets", "json", "quotation", "keyword")
# The keyword family joins at difficulty 3 only: the built-in model picks the keyword from the eight at
# random (items with one scored 10-13% after SFT in five SFT models, chance 12.5%, and 10% in one whose
# reasoning repeated the prompt's words "the keywords gentle"; no IF expert moved them): no room for RL.


@dataclass(frozen=True)
class Instruction:
    """One IFEval instruction and how a reference response satisfies it.

    `content` instructions rewrite the sentences (case, keywords); a `shape` instruction renders the
    final text from them (bullets, JSON, quotes, end phrase). A response has at most one shape.
    """

    id: str
    kwargs: dict[str, Any]
    text: str
    plan: str  # the rule restated in the reference reasoning, e.g. "end with That is all."
    content: Callable[[list[str]], list[str]] | None = None
    shape: Callable[[list[str]], str] | None = None


def _plain(sentences: list[str]) -> str:
    return ". ".join(sentences) + "."


def _if_instruction(rng: random.Random, difficulty: int) -> Instruction:
    """A random IFEval instruction of this difficulty's families, with its kwargs."""
    family = rng.choice(IF_FAMILIES if difficulty >= 3 else tuple(f for f in IF_FAMILIES if f != "keyword"))
    if family == "lowercase":
        return Instruction(
            "change_case:english_lowercase",
            {},
            "Your entire response should be in English, and in all lowercase letters.",
            "all lowercase",
            content=lambda s: [x.lower() for x in s],
        )
    if family == "no_comma":
        return Instruction(
            "punctuation:no_comma",
            {},
            "Do not use any commas in your response.",
            "no commas",
            content=lambda s: s,
        )
    if family == "end_phrase":
        phrase = rng.choice(END_PHRASES)
        return Instruction(
            "startend:end_checker",
            {"end_phrase": phrase},
            f"Finish your response with this exact phrase {phrase} No other words should follow this phrase.",
            f"end with {phrase}",
            shape=lambda s: _plain(s) + " " + phrase,
        )
    if family == "bullets":
        n = rng.randint(2, 4)
        return Instruction(
            "detectable_format:number_bullet_lists",
            {"num_bullets": n},
            f"Your answer must contain exactly {n} bullet points. Use the markdown bullet points such as:\n* This is point 1.",
            f"{n} bullet points",
            shape=lambda s: "\n".join(f"* {line}." for line in (s * n)[:n]),
        )
    if family == "json":
        return Instruction(
            "detectable_format:json_format",
            {},
            "Entire output should be wrapped in JSON format.",
            "wrap it in JSON",
            shape=lambda s: json.dumps({"text": _plain(s)}),
        )
    if family == "quotation":
        return Instruction(
            "startend:quotation",
            {},
            "Wrap your entire response with double quotation marks.",
            "wrap it in quotes",
            shape=lambda s: '"' + _plain(s) + '"',
        )
    word = rng.choice(["bright", "calm", "simple", "old", "quiet", "gentle", "happy", "strange"])
    return Instruction(
        "keywords:existence",
        {"keywords": [word]},
        f"Include the keywords {word} in the response.",
        f"use the word {word}",
        content=lambda s: [f"{s[0]} and it is {word}", *s[1:]],
    )


CASES = {"change_case:english_lowercase"}
# A case change would break these: the exact end phrase and the JSON key keep their own case.
CASE_CONFLICTS = {"startend:end_checker", "detectable_format:json_format"}


def _compatible(chosen: list[Instruction]) -> bool:
    ids = [c.id for c in chosen]
    if len(set(ids)) < len(ids) or sum(c.shape is not None for c in chosen) > 1:
        return False
    return not (CASES & set(ids) and CASE_CONFLICTS & set(ids))


def if_problem(rng: random.Random, difficulty: int) -> Problem:
    """A short writing task with IFEval instructions that do not conflict: one at difficulty 1, one or
    two at 2 and 3; 3 adds the keyword family."""
    topic = rng.choice(TOPICS)
    count = 1 if difficulty <= 1 else rng.randint(1, 2)
    chosen: list[Instruction] = []
    while len(chosen) < count:
        candidate = _if_instruction(rng, difficulty)
        if _compatible(chosen + [candidate]):
            chosen.append(candidate)
    chosen.sort(key=lambda c: c.id)
    sentences = rng.sample(SENTENCES[topic], 2)
    for instruction in sorted(chosen, key=lambda c: c.id in CASES):  # case last: it covers added text
        if instruction.content is not None:
            sentences = instruction.content(sentences)
    shapes = [c.shape for c in chosen if c.shape is not None]
    text = shapes[0](sentences) if shapes else _plain(sentences)
    prompt_text = rng.choice(TASKS).format(topic=topic) + " " + " ".join(c.text for c in chosen)
    # The reasoning restates each rule with its argument (the word, the phrase, the count) before the
    # answer: the built-in model copies from its own nearby plan far more reliably than from the prompt.
    plan = f"Write about {topic}: " + "; ".join(c.plan for c in chosen)
    solution = f"<think>{plan if plan[-1] in '.?!' else plan + '.'}</think>\n{text}"
    metadata = {
        "instruction_id_list": [c.id for c in chosen],
        "kwargs": [c.kwargs for c in chosen],
        "prompt_text": prompt_text,
    }
    return Problem(f"if:{prompt_text}", prompt_text, None, solution, metadata)


GENERATORS: dict[str, Callable[[random.Random, int], Problem]] = {
    "math": math_problem,
    "science": science_problem,
    "code": code_problem,
    "if": if_problem,
}


def generate(domain: str, split: str, count: int, seed: int = 0, difficulty: int = 2) -> list[dict[str, Any]]:
    """`count` distinct samples of one domain from one split, deterministic in (domain, split, seed)."""
    if domain not in GENERATORS:
        raise UserError(f"unknown built-in domain {domain!r}; choose from {', '.join(GENERATORS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    rng = random.Random(f"{seed}:{domain}:{split}:{difficulty}")
    samples: dict[str, dict[str, Any]] = {}
    attempts = 0
    while len(samples) < count:
        attempts += 1
        if attempts > 200 * count + 1000:
            raise RuntimeError(f"built-in {domain} problem space too small for {count} {split} samples")
        problem = GENERATORS[domain](rng, difficulty)
        if problem.key in samples or split_of(problem.key) != split:
            continue
        metadata = dict(problem.metadata, solution=problem.solution, key=problem.key)
        sample_id = f"builtin-{domain}-{split}-{hashlib.sha1(problem.key.encode()).hexdigest()[:10]}"
        samples[problem.key] = make_sample(
            sample_id, domain, problem.prompt, problem.label, metadata=metadata
        )
    return list(samples.values())
