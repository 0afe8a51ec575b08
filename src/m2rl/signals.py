"""Signals in a process that owns runs: SIGTERM raised as an exception where an attempt can close its
run as failed, a handler's exception that a finalizer swallowed raised again, and which signal an
exception unwound from. They belong to the processes (the CLI, a study's stages, training ranks),
not to the ledger."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so the run is closed as failed."""


# The exceptions SIGTERM handlers raised inside `sigterm_raises` contexts still open (innermost last).
_raised_by_signal: list[BaseException] = []


@contextlib.contextmanager
def sigterm_raises(error: Callable[[int], BaseException]) -> Iterator[None]:
    """SIGTERM raises `error(signum)` in the main thread while inside (elsewhere it is left as it is).

    Python runs a signal handler between any two bytecodes, also inside a finalizer (`__del__`, a
    weakref callback), where an exception is printed as "ignored" and lost: the process would go on
    as if never signalled. So the raised exception is also kept until the context ends, and
    `raise_lost_signal` (called where long work reports progress) raises it again.
    """

    def handler(signum, frame):  # noqa: ARG001
        exc = error(signum)
        _raised_by_signal.append(exc)
        raise exc

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    depth = len(_raised_by_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        del _raised_by_signal[depth:]


def raise_lost_signal() -> None:
    """Raise again the exception a SIGTERM handler raised in this still-open `sigterm_raises`
    context, if a finalizer swallowed it (a no-op when no signal came)."""
    if _raised_by_signal:
        raise _raised_by_signal[-1]


def signal_behind(exc: BaseException) -> int | None:
    """SIGINT or SIGTERM if `exc` is Ctrl-C or SIGTERM, or was raised while unwinding from one; else None.

    A signal can land in a library's bookkeeping (rich's live display pushing its render hook), whose
    cleanup then fails on the half-done state (IndexError: pop from empty list) and would mask it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return signal.SIGINT
        if isinstance(current, Terminated):
            return signal.SIGTERM
        seen.add(id(current))
        current = current.__context__
    return None
