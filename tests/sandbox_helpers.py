"""What the sandbox tests share: limits, hostile-program helpers and the sandbox in each mode (as
root, and unprivileged: a server started as `nobody` in a user namespace)."""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

from m2rl.verifiers import forkserver
from m2rl.verifiers.sandbox import Limits, LocalSandbox

LIMITS = Limits(time_limit_s=1.0, memory_mb=256, output_limit_bytes=1 << 20, max_processes=8)
IS_ROOT = os.geteuid() == 0
NOBODY = 65534
REPO = Path(__file__).resolve().parents[1]

# Switches the audit hook off from inside the program: its code is replaced by a no-op (found
# through the garbage collector), then prints whether ctypes imports, proof that the hook is gone.
HOOK_OFF = """
import gc, sys
for _f in gc.get_objects():
    if getattr(_f, "__name__", None) == "hook" and "BLOCKED_EVENTS" in getattr(_f, "__globals__", {}):
        def _make():
            own_pid = root = None
            def hook(event, args):
                return own_pid, root
            return hook
        _f.__code__ = _make().__code__
try:
    import ctypes
    print("HOOK-OFF")
except Exception:
    print("HOOK-ON")
"""


def run(box: LocalSandbox, code: str, stdin: str = "", limits: Limits = LIMITS):
    return box.run(textwrap.dedent(code), stdin, limits)


def hostile(box: LocalSandbox, code: str, stdin: str = "", limits: Limits = LIMITS):
    """Run `code` after switching the audit hook off; assert that the hook is indeed off."""
    result = box.run(HOOK_OFF + textwrap.dedent(code), stdin, limits)
    assert result.stdout.startswith("HOOK-OFF"), result
    return result


def descendants(pid: int) -> list[int]:
    """Every process below `pid`."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return children + [d for child in children for d in descendants(child)]


def processes_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == name:
                found.append(int(entry))
        except OSError:
            pass
    return found


def assert_still_healthy(box: LocalSandbox) -> None:
    start = time.monotonic()
    result = run(box, "print(int(input()) + 1)", "41\n")
    assert (result.status, result.stdout) == ("ok", "42\n"), result
    assert time.monotonic() - start < 5.0


def program_uid(box: LocalSandbox) -> int:
    """The uid programs of this sandbox run as (seen from the host)."""
    user = box.isolation["user"]
    return (
        int(user.split()[1].rstrip(","))
        if user.startswith("uid ")
        else os.getuid()
        if not IS_ROOT
        else NOBODY
    )


def run_as_nobody() -> None:
    """preexec_fn: a private mount namespace where `nobody` can run Python (a tmpfs over each private
    ancestor of the installation, holding read-only binds of its directories), then become `nobody`."""
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source, target, fstype, flags, data=None) -> None:
        args = [None if x is None else x.encode() for x in (source, target, fstype)]
        if libc.mount(*args, ctypes.c_ulong(flags), None if data is None else data.encode()) != 0:
            os._exit(3)

    if libc.unshare(forkserver.CLONE_NEWNS) != 0:
        os._exit(3)
    mount(None, "/", None, forkserver.MS_REC | forkserver.MS_PRIVATE)
    dirs = forkserver._python_dirs()
    hidden = {a for a in ("/root", str(Path.home())) if any(d.startswith(a + "/") for d in dirs)}
    stage = tempfile.mkdtemp(prefix="m2rl-test-stage-")
    for number, d in enumerate(dirs):
        os.mkdir(f"{stage}/{number}")
        mount(d, f"{stage}/{number}", None, forkserver.MS_BIND | forkserver.MS_REC)
    for ancestor in hidden:
        mount("tmpfs", ancestor, "tmpfs", forkserver.MS_NOSUID | forkserver.MS_NODEV, "mode=0755,size=1m")
    for number, d in enumerate(dirs):
        if any(d.startswith(a + "/") for a in hidden):
            os.makedirs(d, exist_ok=True)
            mount(f"{stage}/{number}", d, None, forkserver.MS_BIND | forkserver.MS_REC)
        libc.umount2(f"{stage}/{number}".encode(), forkserver.MNT_DETACH)
    shutil.rmtree(stage)
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def syscall_numbers(*names: str) -> dict[str, int]:
    """This machine's numbers of these system calls (libseccomp's table), for hostile programs."""
    resolve = ctypes.CDLL("libseccomp.so.2").seccomp_syscall_resolve_name
    resolve.argtypes = [ctypes.c_char_p]
    return {name: resolve(name.encode()) for name in names}


def start_sandbox(mode: str, preexec=None, **options) -> LocalSandbox:
    """A started sandbox in `mode` ("root" or "unprivileged", as the `box` fixture's modes), its
    server's start preceded by `preexec` (in the child, before it runs the server; after it became
    `nobody` in the unprivileged mode)."""
    import subprocess

    if mode == "root" and not IS_ROOT:
        import pytest

        pytest.skip("the root mode needs root")

    def before_server() -> None:
        if mode == "unprivileged" and IS_ROOT:
            run_as_nobody()
        if preexec is not None:
            preexec()

    real_popen = subprocess.Popen
    box = LocalSandbox(**options)
    subprocess.Popen = lambda *a, **k: real_popen(*a, **{**k, "preexec_fn": before_server})  # type: ignore[misc]
    try:
        box.start()
    finally:
        subprocess.Popen = real_popen  # type: ignore[misc]
    return box
