"""Batch scoring: a persistent worker pool, input order, hard per-item deadlines, hostile neighbours."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from m2rl.data.builtin import generate
from m2rl.data.schema import make_sample
from m2rl.errors import UserError
from m2rl.verifiers import RM_TYPES, VerifierConfig, score, score_batch
from m2rl.verifiers import batch as batch_module

CONFIG = VerifierConfig(workers=2, code_time_limit_s=1.0)


def code_item(body: str, sample_id: str = "c") -> tuple[dict, str]:
    sample = make_sample(
        sample_id, "code", "Double.", None, metadata={"unit_tests": {"inputs": ["3"], "outputs": ["6"]}}
    )
    return sample, f"<think>t</think>```python\n{body}\n```"


def test_batch_matches_single_scoring_in_input_order():
    samples = (
        generate("math", "test", 6, seed=9)
        + generate("science", "test", 6, seed=9)
        + generate("code", "test", 3, seed=9)
    )
    responses = [
        s["metadata"]["solution"] if i % 2 else "<think>t</think>Answer: \\boxed{nope} (Z)"
        for i, s in enumerate(samples)
    ]
    expected = [
        score(s, r, dataclasses.replace(CONFIG, workers=0)) for s, r in zip(samples, responses, strict=True)
    ]
    assert score_batch(samples, responses, CONFIG) == expected


def test_pool_is_kept_alive_between_calls():
    samples = generate("math", "test", 4, seed=1)
    responses = [s["metadata"]["solution"] for s in samples]
    score_batch(samples, responses, CONFIG)
    pids = sorted(w.proc.pid for w in batch_module.shared_pool(2)._workers)
    start = time.monotonic()
    assert [v.reward for v in score_batch(samples, responses, CONFIG)] == [1.0] * 4
    assert sorted(w.proc.pid for w in batch_module.shared_pool(2)._workers) == pids
    assert time.monotonic() - start < 2.0


def test_item_past_its_deadline_scores_zero_and_the_rest_of_the_batch_is_unaffected(monkeypatch):
    slow_type = dataclasses.replace(RM_TYPES["unit_test"], budget_s=lambda sample, config: 1.5)
    monkeypatch.setitem(RM_TYPES, "unit_test", slow_type)
    config = dataclasses.replace(CONFIG, code_time_limit_s=10.0)
    slow = code_item("import time\ntime.sleep(30)", "slow")
    good = code_item("print(int(input()) * 2)", "good")
    math = generate("math", "test", 1, seed=2)[0]
    start = time.monotonic()
    verdicts = score_batch([slow[0], good[0], math], [slow[1], good[1], math["metadata"]["solution"]], config)
    assert verdicts[0].reward == 0.0 and "timeout" in verdicts[0].reason
    assert [v.reward for v in verdicts[1:]] == [1.0, 1.0]
    assert time.monotonic() - start < 8.0
    again = score_batch([good[0]], [good[1]], config)  # the killed worker was replaced
    assert again[0].reward == 1.0


def test_hostile_programs_score_zero_without_disturbing_their_neighbours():
    hostile = [
        "while True:\n    pass",
        "import os\nwhile True:\n    os.fork()",
        "x = bytearray(4 << 30)",
        "print('x' * 50_000_000)",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint(6)",
    ]
    items = [code_item(body, f"h{i}") for i, body in enumerate(hostile)]
    items += [code_item("print(int(input()) * 2)", f"g{i}") for i in range(4)]
    verdicts = score_batch([s for s, _ in items], [r for _, r in items], CONFIG)
    assert [v.reward for v in verdicts] == [0.0] * len(hostile) + [1.0] * 4


def test_bad_sample_in_a_batch_is_a_user_error_naming_its_index():
    good = generate("math", "test", 1, seed=3)[0]
    bad = {**good, "rm_type": "mystery"}
    with pytest.raises(UserError, match="batch item 1"):
        score_batch([good, bad], ["", ""], CONFIG)


def test_non_string_responses_score_zero_instead_of_raising():
    sample = generate("math", "test", 1, seed=4)[0]
    assert score_batch([sample], [None], CONFIG)[0].reward == 0.0  # type: ignore[list-item]


@pytest.mark.parametrize("workers", [0, 2])
def test_identical_pairs_are_scored_once_and_share_the_verdict(workers):
    from m2rl.verifiers import score_batch_timed

    right = code_item("print(int(input()) * 2)")
    wrong = code_item("print(int(input()) * 3)")
    other_sample = code_item("print(int(input()) * 2)", sample_id="other")
    pairs = [right, wrong, right, right, other_sample, wrong]
    config = dataclasses.replace(CONFIG, workers=workers)
    verdicts, seconds = score_batch_timed([p[0] for p in pairs], [p[1] for p in pairs], config)
    assert [v.reward for v in verdicts] == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    assert verdicts[2] == verdicts[0] and verdicts[5] == verdicts[1]
    # first sightings did work; copies cost nothing
    assert all(s > 0 for s in (seconds[0], seconds[1], seconds[4]))
    assert seconds[2] == seconds[3] == seconds[5] == 0.0


def test_fast_items_are_pipelined_and_a_timeout_requeues_the_items_behind_it(monkeypatch):
    slow_type = dataclasses.replace(RM_TYPES["unit_test"], budget_s=lambda sample, config: 1.5)
    monkeypatch.setitem(RM_TYPES, "unit_test", slow_type)
    in_flight = []
    accepts = batch_module._Worker.accepts

    def recording_accepts(worker, size, depth):
        ok = accepts(worker, size, depth)
        if ok:
            in_flight.append((len(worker.jobs) + 1, any(job.index == 3 for job in worker.jobs)))
        return ok

    monkeypatch.setattr(batch_module._Worker, "accepts", recording_accepts)
    samples = generate("math", "test", 40, seed=5)
    responses = [s["metadata"]["solution"] for s in samples]
    slow = code_item("import time\ntime.sleep(30)", "slow")
    samples.insert(3, slow[0])
    responses.insert(3, slow[1])
    config = dataclasses.replace(CONFIG, code_time_limit_s=10.0)
    verdicts = score_batch(samples, responses, config)
    assert verdicts[3].reward == 0.0 and "timeout" in verdicts[3].reason
    assert [v.reward for i, v in enumerate(verdicts) if i != 3] == [1.0] * 40
    assert max(n for n, _ in in_flight) >= 8  # many fast items wait in a worker's pipe
    assert in_flight[3][0] <= 4  # the code item (index 3) joins a queue of at most code's depth, 4,
    assert max(n for n, behind_code in in_flight if behind_code) == 4  # which stays at most 4 while it waits
    assert in_flight[-1][0] == 1  # the end of a batch is not queued behind a possibly slow item


def test_a_worker_that_dies_scores_its_item_zero_and_hands_its_queue_on():
    import os
    import signal
    import threading

    slow = code_item("import time\ntime.sleep(30)", "doomed")
    samples = [slow[0]] + generate("math", "test", 30, seed=6)
    responses = [slow[1]] + [s["metadata"]["solution"] for s in samples[1:]]
    pool = batch_module.shared_pool(2)

    def kill_the_worker_scoring_item_0():
        for _ in range(200):
            time.sleep(0.05)
            for worker in list(pool._workers):
                if worker.jobs and worker.jobs[0].index == 0:
                    os.kill(worker.proc.pid, signal.SIGKILL)
                    return

    killer = threading.Thread(target=kill_the_worker_scoring_item_0)
    killer.start()
    verdicts = score_batch(samples, responses, dataclasses.replace(CONFIG, code_time_limit_s=20.0))
    killer.join()
    assert verdicts[0].reward == 0.0 and verdicts[0].reason == "verifier worker died"
    assert [v.reward for v in verdicts[1:]] == [1.0] * 30


def test_a_batch_with_code_stops_where_the_sandbox_cannot_isolate_programs(monkeypatch):
    from m2rl.verifiers import sandbox

    monkeypatch.setitem(sandbox._PROBLEMS, (os.getpid(), CONFIG.sandbox), "unshare: Operation not permitted")
    math = generate("math", "test", 1, seed=9)
    assert score_batch(math, [math[0]["metadata"]["solution"]], CONFIG)[0].reward == 1.0  # no code: runs
    code = code_item("print(int(input()) * 2)")
    with pytest.raises(UserError, match="verifiers.code.allow_unsandboxed=true"):
        score_batch([code[0]], [code[1]], CONFIG)
    allowed = dataclasses.replace(CONFIG, code_allow_unsandboxed=True)  # the workers' sandboxes isolate here
    assert score_batch([code[0]], [code[1]], allowed)[0].reward == 1.0
