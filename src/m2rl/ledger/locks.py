"""flock locks: an attempt owns its run through an exclusive lock the kernel drops when the process dies.

A reader probes a lock with a shared lock (`while_free`), held only while it re-reads the manifest.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from m2rl.errors import UserError

_HELD: dict[Path, int] = {}  # lock files this process holds -> their descriptors


def _forget_inherited_locks() -> None:
    """In a forked child: drop the inherited descriptors, so a lock lives no longer than its owner."""
    for fd in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_inherited_locks)


def try_lock(path: Path) -> bool:
    """Take the exclusive flock on `path` (created if missing) without waiting; False if another holds it."""
    path = path.resolve()
    if path in _HELD:
        return True
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
            raise UserError(
                f"{path}: this filesystem does not support file locks; put the runs root on one that does "
                "(a local disk, NFSv4, Lustre mounted with -o flock)"
            ) from None
        raise
    except BaseException:
        os.close(fd)
        raise
    _HELD[path] = fd
    return True


def unlock(path: Path) -> None:
    """Release a lock this process took with `try_lock` (nothing if it holds none)."""
    fd = _HELD.pop(path.resolve(), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def while_free(path: Path) -> Iterator[bool]:
    """Yield whether nobody holds the lock on `path`; a shared lock meanwhile keeps anyone from taking it."""
    if path.resolve() in _HELD:
        yield False
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # never locked: nobody holds it
        yield True
        return
    except OSError:  # cannot tell: a reader does not declare a run dead on a guess
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def lock_held(path: Path) -> bool:
    """Whether some process (this one included) holds the lock on `path`."""
    with while_free(path) as free:
        return not free
