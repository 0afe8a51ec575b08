"""Self-verification: a model as a generative judge of trajectories from its own domains.

The trajectories are the model's own eval responses, their ground truth the verifier's reward. Two
modes: `outcome` shows the judge the problem and the final answer only (the text after the last
`</think>`, what the verifier scores); `process` shows the whole response, reasoning included. The
verdict is the last `Verdict: correct` / `Verdict: incorrect` line of the judge's reply (after its
`</think>` when it thinks); a reply without one is unparsed and counts as a wrong judgement. Per
model, domain and mode: accuracy against the verifier, balanced accuracy (trajectories are picked half
correct, half not, where there are enough), the parse rate, and a Wilson 95% interval on accuracy.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

from m2rl.evaluate.generation import Messages

MODES = ("outcome", "process")
THINK_END = "</think>"
_STOP_TEXT = ("<|im_end|>", "<|endoftext|>")
_VERDICT = re.compile(r"verdict\s*[:=\-]?\s*[*_`\"'(\[]*\s*(correct|incorrect)\b", re.IGNORECASE)

JUDGE_PROMPTS = {
    "outcome": (
        "You are checking another model's answer.\n\n"
        "Problem:\n{problem}\n\n"
        "Final answer given:\n{answer}\n\n"
        "Is this final answer correct (for an instruction, does it follow every instruction)? "
        "End your reply with one line, exactly `Verdict: correct` or `Verdict: incorrect`."
    ),
    "process": (
        "You are checking another model's solution.\n\n"
        "Problem:\n{problem}\n\n"
        "Solution, reasoning and final answer:\n{solution}\n\n"
        "Is this solution correct, every step and the final answer (for an instruction, does it follow "
        "every instruction)? End your reply with one line, exactly `Verdict: correct` or `Verdict: incorrect`."
    ),
}


def final_answer(response: str) -> str:
    """What the verifier scores: the text after the last `</think>` (all of it without one), stop text removed."""
    text = response.rsplit(THINK_END, 1)[-1] if THINK_END in response else response
    text = text.strip()
    for stop in _STOP_TEXT:
        text = text.removesuffix(stop).strip()
    return text


def problem_text(prompt: Messages) -> str:
    """The task as the user stated it: the last user message."""
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else "\n\n".join(m["content"] for m in prompt)


def judge_prompt(prompt: Messages, response: str, mode: str) -> Messages:
    """The fixed judging prompt for one trajectory in `mode` (outcome or process)."""
    if mode == "outcome":
        content = JUDGE_PROMPTS[mode].format(problem=problem_text(prompt), answer=final_answer(response))
    elif mode == "process":
        content = JUDGE_PROMPTS[mode].format(problem=problem_text(prompt), solution=response.strip())
    else:
        raise ValueError(f"unknown judging mode {mode!r} (expected one of {', '.join(MODES)})")
    return [{"role": "user", "content": content}]


def parse_verdict(reply: str) -> bool | None:
    """True for `Verdict: correct`, False for `Verdict: incorrect` (the last one after any `</think>`), else None."""
    text = reply.rsplit(THINK_END, 1)[-1] if THINK_END in reply else reply
    found = _VERDICT.findall(text)
    return None if not found else found[-1].lower() == "correct"


@dataclass(frozen=True)
class Trajectory:
    """One response to judge, with the item's prompt and the verifier's verdict."""

    item: str
    prompt: Messages
    response: str
    correct: bool


def pick_trajectories(candidates: list[Trajectory], count: int, seed: int) -> list[Trajectory]:
    """Up to `count` trajectories, half verified correct and half not where there are enough, in a seeded order."""
    ordered = sorted(candidates, key=lambda t: zlib.crc32(f"{seed}|{t.item}".encode()))
    right = [t for t in ordered if t.correct]
    wrong = [t for t in ordered if not t.correct]
    half = count // 2
    take_right = min(len(right), max(half, count - len(wrong)))
    take_wrong = min(len(wrong), count - take_right)
    return right[:take_right] + wrong[:take_wrong]


@dataclass(frozen=True)
class JudgeScore:
    """A judge's agreement with the verifier on one set of trajectories."""

    n: int
    correct_judgements: int
    parsed: int
    positives: int  # trajectories the verifier scored correct
    true_positives: int
    true_negatives: int

    @property
    def accuracy(self) -> float:
        return self.correct_judgements / self.n if self.n else float("nan")

    @property
    def balanced_accuracy(self) -> float:
        """Mean of the accuracies on verified-correct and verified-wrong trajectories (those present)."""
        rates = []
        if self.positives:
            rates.append(self.true_positives / self.positives)
        if self.n - self.positives:
            rates.append(self.true_negatives / (self.n - self.positives))
        return sum(rates) / len(rates) if rates else float("nan")

    @property
    def ci95(self) -> tuple[float, float] | None:
        """Wilson 95% interval of the accuracy."""
        if not self.n:
            return None
        # lazy: scipy, only for the binomial test
        from scipy.stats import binomtest

        interval = binomtest(self.correct_judgements, self.n).proportion_ci(0.95, method="wilson")
        return float(interval.low), float(interval.high)

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "ci95": list(self.ci95) if self.ci95 else None,
            "balanced_accuracy": self.balanced_accuracy,
            "parse_rate": self.parsed / self.n if self.n else None,
            "verified_correct": self.positives,
        }


def judge_score(truths: list[bool], verdicts: list[bool | None]) -> JudgeScore:
    """Agreement of parsed verdicts with the verifier (an unparsed verdict is a wrong judgement)."""
    pairs = list(zip(truths, verdicts, strict=True))
    return JudgeScore(
        n=len(pairs),
        correct_judgements=sum(v is not None and v == t for t, v in pairs),
        parsed=sum(v is not None for _, v in pairs),
        positives=sum(t for t, _ in pairs),
        true_positives=sum(t and v is True for t, v in pairs),
        true_negatives=sum((not t) and v is False for t, v in pairs),
    )
