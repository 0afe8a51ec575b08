"""Atomic writes: a file or a whole folder replaced in one step, so a reader sees the old or the new."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def temp_sibling(path: Path) -> Path:
    """A hidden temp name beside `path`, unique per host and process (pids repeat across nodes)."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[IO[str]]:
    """A text handle on a temp sibling that replaces `path` once the block ends without error."""
    tmp = temp_sibling(path)
    try:
        with open(tmp, "w") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON through a temp file in the same directory and rename it into place."""
    with _replacing(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=False, default=str)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text through a temp file in the same directory and rename it into place."""
    with _replacing(path) as handle:
        handle.write(text)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_cwd = -100
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(ctypes.get_errno(), f"cannot swap {a} and {b}")


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the finished folder `tmp` at its sibling `target`, so readers see the old folder or the new one."""
    try:
        os.rename(tmp, target)  # nothing there yet
        return
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    if _exchange(tmp, target):  # one step where the filesystem can
        shutil.rmtree(tmp)  # now the previous output
        return
    old = temp_sibling(target)  # else two renames, the old folder moving aside first
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old)
