"""Write the `sort` domain's data in m2rl's canonical schema: train (RL prompts), test (held-out
eval items) and sft (prompts with a worked solution), disjoint by the list of numbers.

    python examples/sort_domain/make_data.py            # -> examples/sort_domain/data/{train,test,sft}.jsonl
    python examples/sort_domain/make_data.py --out DIR --sft 800 --train 400 --test 256
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

INSTRUCTION = (
    "Sort the numbers in ascending order. The last line must be Answer: followed by the sorted numbers."
)


def row(split: str, index: int, numbers: list[int]) -> dict:
    ordered = sorted(numbers)
    steps = ", ".join(str(n) for n in ordered)
    return {
        "id": f"sort-{split}-{index}",
        "domain": "sort",
        "rm_type": "sort",
        "prompt": [{"role": "user", "content": f"{INSTRUCTION}\n\nNumbers: {' '.join(map(str, numbers))}"}],
        "label": " ".join(map(str, ordered)),
        "metadata": {
            "numbers": numbers,
            "solution": f"<think>Smallest first: {steps}.</think>\nAnswer: {' '.join(map(str, ordered))}",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--sft", type=int, default=800)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--test", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seen: set[tuple[int, ...]] = set()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, count in (("test", args.test), ("train", args.train), ("sft", args.sft)):
        rows = []
        while len(rows) < count:
            numbers = [rng.randrange(10) for _ in range(rng.choice((3, 4)))]
            if tuple(numbers) in seen:
                continue
            seen.add(tuple(numbers))
            rows.append(row(split, len(rows), numbers))
        path = args.out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{path}: {len(rows)} rows")


if __name__ == "__main__":
    main()
