"""A batch-scoring worker process: reads (config, [(index, pickled (sample, response)), ...]) frames
and answers one verdict frame per item as soon as it is scored (the caller's per-item deadline runs
from the previous answer).

Started by `m2rl.verifiers.batch` as `python -m m2rl.verifiers.worker` (a fresh interpreter, never
a fork of the caller, so it is safe next to torch/CUDA). It scores in its main thread, where the
math timeout's SIGALRM works; code runs through this worker's own fork-server sandbox.
"""

from __future__ import annotations

import os
import pickle
import signal
import time

from m2rl.verifiers.frames import recv_frame, send_frame


def main() -> None:
    """Serve scoring requests on stdin/stdout until stdin closes."""
    # Ctrl-C reaches the whole process group: the caller handles it and closes this worker's stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    in_fd, out_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    # lazy: after stdout points at stderr: a library that prints while it imports cannot corrupt the protocol
    from m2rl.verifiers.instruction_following.text import load_language_profiles
    from m2rl.verifiers.math_answer import load_math_verify
    from m2rl.verifiers.registry import score

    load_math_verify()  # pay the sympy import and the language profiles before the first deadline starts
    load_language_profiles()
    send_frame(out_fd, {"ready": os.getpid()})
    while True:
        request = recv_frame(in_fd)
        if request is None:
            break
        config, items = request  # type: ignore[misc]
        for index, payload in items:
            start = time.perf_counter()
            try:
                sample, response = pickle.loads(payload)
                result = score(sample, response, config)
                reply = (index, result.reward, result.reason, time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - reported to the caller, which decides
                reply = (
                    index,
                    0.0,
                    f"verifier error {type(exc).__name__}: {exc}",
                    time.perf_counter() - start,
                )
            send_frame(out_fd, reply)


if __name__ == "__main__":
    main()
