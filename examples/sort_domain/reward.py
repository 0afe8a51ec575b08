"""The `sort` domain's reward: 1 if the last `Answer:` line lists the prompt's numbers in ascending
order, else 0. A user's own file, registered without touching m2rl:

    m2rl ... verifiers.custom.sort=examples/sort_domain/reward.py:score_sort

m2rl calls `score_sort(sample, text)` with the text after the last `</think>` (the think gate is
m2rl's, as for its built-in domains). `check_sort` runs when the data is loaded: a row it rejects
stops the run with the file and line named. `budget_s` and `queue_depth` tell the worker pool how
long one item may take (past it, the item scores 0) and how many to queue per worker.
"""

from __future__ import annotations

import re

ANSWER = re.compile(r"^\s*Answer:\s*(.*?)\s*$", re.MULTILINE)


def check_sort(sample: dict) -> str | None:
    """None if the sample can be scored, else the problem."""
    numbers = (sample.get("metadata") or {}).get("numbers")
    if not isinstance(numbers, list) or not numbers or not all(isinstance(n, int) for n in numbers):
        return "sort sample needs metadata.numbers (a non-empty list of integers)"
    return None


def score_sort(sample: dict, text: str) -> tuple[float, str]:
    """(reward, reason): the last `Answer:` line must hold exactly the sorted numbers."""
    answers = ANSWER.findall(text)
    if not answers:
        return 0.0, "no Answer: line"
    try:
        given = [int(token) for token in answers[-1].replace(",", " ").split()]
    except ValueError:
        return 0.0, f"not a list of integers: {answers[-1][:40]!r}"
    expected = sorted(sample["metadata"]["numbers"])
    return (1.0, "sorted") if given == expected else (0.0, f"expected {expected}, got {given}")


score_sort.check = check_sort
score_sort.budget_s = 5.0
score_sort.queue_depth = 16
