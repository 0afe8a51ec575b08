"""Pre-warmed fork server that runs untrusted Python programs, one isolated child per run.

Why hand-written: starting a fresh interpreter per unit test costs ~20-40 ms, most of it interpreter
start-up; forking a small, already-initialised interpreter costs ~1 ms. No library offers a
Python-only fork server with these limits, and container sandboxes need a daemon we cannot assume.

A request is one program and its test inputs. The server's runner (its child, with the server's
uid, never running a program itself) compiles the program once and forks one isolated child per
test, stopping at the first failed test when the expected outputs are given, so a test pays only
for its fork, the program and its exit. A runner that dies or overruns is replaced, and a fresh
one takes over every RUNNER_PROGRAMS programs.

This file is run as a script (`python -I forkserver.py`) by `m2rl.verifiers.sandbox`, uses the
standard library only and never imports m2rl, so the zygote stays small and the address-space
limit measures the program, not the trainer. It speaks length-prefixed pickle frames on its
stdin/stdout (it is only ever spawned by our own client, which is trusted).

Isolation of every child (what is kernel-enforced and what is not, honestly):
- Kernel, always: own session and process group, killed as a whole on the wall-clock limit;
  rlimits on CPU seconds, address space, file size (this caps stdout/stderr: they go to files),
  process/thread count, open files and core dumps; a fresh working directory removed afterwards;
  stdin from a file; all inherited descriptors closed; an environment holding only PATH, HOME,
  TMPDIR and LANG (the server itself is started with that environment, so /proc/self/environ
  holds nothing either); parent-death signal, so a program never outlives its runner, nor a
  runner its server.
- Kernel, when the server runs as root: the child switches to a uid/gid that belongs to this
  server alone (100000 + server pid). It then cannot write anything it does not own (only its
  working directory, and world-writable places such as /tmp: see the audit hook), cannot read
  other processes' /proc/PID/environ, cannot signal or trace its runner or any other process,
  and RLIMIT_NPROC (ignored for root) applies.
- The runner (and above it the server) is a child subreaper: whatever a program forked is
  re-parented to it even after setsid or a double fork, and after each test every remaining
  descendant is killed and reaped.
- Kernel, as root: a private mount namespace with fresh tmpfs on /tmp, /dev/shm and /var/tmp, so
  even world-writable places are private to the server and vanish with it; where a private
  ancestor such as /root (0700) hides the Python installation from the sandbox uid, a tmpfs over
  that ancestor holds read-only bind mounts of only the directories Python needs.
  `ISOLATION` (sent to the client at start) reports which of these layers are active.
- Kernel, network: at start the server moves itself into a new network namespace (as root, or
  inside a new unprivileged user namespace where the kernel allows it). Children inherit it: no
  interface but a loopback that is down, so no connection to anything, local or remote.
  `ISOLATION["network"]` says whether this succeeded ("namespace") or not ("audit-hook").
- Python audit hook, always (defence in depth; the only barrier for a check above that the kernel
  could not give, e.g. no root and no user namespaces): refuses socket creation, process
  creation (fork, exec, spawn, subprocess, system), sending signals, importing ctypes or
  _posixsubprocess, writes and deletions outside the working directory, and reading any
  /proc/*/environ or another process's /proc entries. An audit hook is not a security boundary against native code; refusing ctypes
  closes the obvious bypass, and the kernel mechanisms above are the real boundary when active.
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import signal
import struct
import sys
import tempfile
import time

HEADER = struct.Struct(">Q")
MAX_FRAME = 1 << 31
# Programs one runner serves before a fresh one replaces it (compiling leaves memory behind, and
# the runner's size is what every test's fork copies).
RUNNER_PROGRAMS = 200
INTERNAL_ERROR_EXIT = 120
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Light modules imported once in the zygote so programs do not pay for them on every run. Kept
# small on purpose: fork time grows with the zygote's memory (heavy modules cost more than they save).
PRELOAD = (
    "array", "bisect", "collections", "functools", "heapq", "io", "itertools", "math", "operator",
    "random", "re", "resource", "string", "traceback", "types",
)  # fmt: skip
BLOCKED_EVENTS = frozenset(
    {
        "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.fork_exec",
        "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "sys.remote_exec",
    }
)  # fmt: skip
BLOCKED_IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_testcapi"})
PATH_WRITE_EVENTS = frozenset(
    {
        "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
        "os.symlink", "os.link", "os.utime", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod",
        "os.setxattr", "os.removexattr", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    }
)  # fmt: skip
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

ISOLATION: dict[str, str] = {"user": "same-uid", "network": "audit-hook"}
_SANDBOX_UID: int | None = None
_PRCTL = None  # libc prctl, kept after ctypes leaves sys.modules
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2


# ---------------------------------------------------------------------------------------------
# framing (shared with the client and the verifier workers)
def encode_frame(obj: object) -> bytes:
    """One length-prefixed pickle frame."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def send_frame(fd: int, obj: object) -> None:
    """Write one length-prefixed pickle frame to a file descriptor."""
    write_frame(fd, encode_frame(obj))


def write_frame(fd: int, frame: bytes) -> None:
    """Write an encoded frame in full."""
    data = memoryview(frame)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frames(fd: int, buffer: bytearray) -> list[object] | None:
    """The frames complete after one read of what `fd` holds (the rest stays in `buffer`); None at end of file.

    One read takes every reply a worker has written since the last one, so a caller woken once
    handles many (each wake-up of a sleeping process costs tens of microseconds on a VM).
    """
    chunk = os.read(fd, 1 << 20)
    if not chunk:
        return None
    buffer += chunk
    frames, offset = [], 0
    while len(buffer) - offset >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer, offset)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes is too large")
        if len(buffer) - offset - HEADER.size < size:
            break
        start = offset + HEADER.size
        frames.append(pickle.loads(buffer[start : start + size]))
        offset = start + size
    del buffer[:offset]
    return frames


def recv_frame(fd: int) -> object | None:
    """Read one frame; None on end of file (the other side is gone)."""
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is too large")
    payload = _read_exact(fd, size)
    if payload is None:
        return None
    return pickle.loads(payload)


# ---------------------------------------------------------------------------------------------
# server set-up
def _setup_isolation() -> None:
    """Pick the sandbox uid, enter network (and, as root, mount) namespaces where the kernel allows."""
    global _SANDBOX_UID, _PRCTL
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    _PRCTL = libc.prctl
    _PRCTL.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if os.geteuid() == 0:
        if libc.unshare(CLONE_NEWNET) == 0:
            ISOLATION["network"] = "namespace"
        if libc.unshare(CLONE_NEWNS) == 0 and _private_mounts(libc):
            ISOLATION["filesystem"] = "private /tmp and /dev/shm"
        uid = 100000 + os.getpid()
        if _uid_can_run_python(uid):
            _SANDBOX_UID = uid
            ISOLATION["user"] = f"uid {uid}"
        else:
            ISOLATION["user"] = "same-uid (the Python installation is not readable by an unprivileged uid)"
    else:
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
            ISOLATION["network"] = "namespace"
            ISOLATION["user"] = "same-uid, user namespace"
            try:
                with open("/proc/self/setgroups", "w") as f:
                    f.write("deny")
                with open("/proc/self/uid_map", "w") as f:
                    f.write(f"{uid} {uid} 1")
                with open("/proc/self/gid_map", "w") as f:
                    f.write(f"{gid} {gid} 1")
            except OSError:
                pass
    # Programs must not reach ctypes through sys.modules; the hook refuses a fresh import.
    del libc
    for name in ("ctypes", "_ctypes", "ctypes._endian"):
        sys.modules.pop(name, None)


def _mount(
    libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> bool:
    def encoded(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    return libc.mount(encoded(source), encoded(target), encoded(fstype), flags, encoded(data)) == 0


def _python_dirs() -> list[str]:
    """Directories a program needs to read: the installation and the import path."""
    import sysconfig

    dirs = {sys.base_prefix, sys.prefix, *sysconfig.get_paths().values()}
    dirs.update(p for p in sys.path if p)
    return sorted(d for d in {os.path.realpath(d) for d in dirs} if os.path.isdir(d))


def _blocking_ancestor(path: str) -> str | None:
    """The first proper ancestor of `path` that other users cannot traverse, if any."""
    parts = path.strip("/").split("/")
    for i in range(len(parts) - 1):
        ancestor = "/" + "/".join(parts[: i + 1])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _private_mounts(libc) -> bool:
    """In this server's mount namespace: the Python installation reachable by the sandbox uid, and
    fresh tmpfs on /tmp, /dev/shm and /var/tmp."""
    if not _expose_python(libc):
        return False
    ok = True
    for shared in ("/tmp", "/dev/shm", "/var/tmp"):
        if os.path.isdir(shared):
            ok = _mount(libc, "tmpfs", shared, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=512m") and ok
    return ok


def _expose_python(libc) -> bool:
    """Make mounts private, then where a private ancestor (e.g. /root 0700) hides the Python
    installation, put a tmpfs over that ancestor holding read-only bind mounts of just the
    directories Python needs."""
    if not _mount(libc, None, "/", None, MS_REC | MS_PRIVATE):
        return False
    staging = tempfile.mkdtemp(prefix="m2rl-stage-")
    try:
        exposed: dict[str, list[tuple[str, str]]] = {}
        for d in _python_dirs():
            ancestor = _blocking_ancestor(d)
            if ancestor is None or any(d.startswith(t + "/") for t, _ in exposed.get(ancestor, [])):
                continue
            stage = os.path.join(staging, str(sum(len(v) for v in exposed.values())))
            os.mkdir(stage)
            if not _mount(libc, d, stage, None, MS_BIND | MS_REC):
                return False
            exposed.setdefault(ancestor, []).append((d, stage))
        for ancestor, binds in exposed.items():
            if not _mount(libc, "tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m"):
                return False
            for target, stage in binds:
                os.makedirs(target, 0o755, exist_ok=True)
                if not _mount(libc, stage, target, None, MS_BIND | MS_REC):
                    return False
                _mount(libc, None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
                libc.umount2(stage.encode(), MNT_DETACH)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _uid_can_run_python(uid: int) -> bool:
    """Whether `uid` can read the standard library and the import path (probed in a child)."""
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            ok = all(os.access(d, os.R_OK | os.X_OK) for d in _python_dirs())
        except BaseException:
            pass
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _preload() -> None:
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    # The first compile() in a process sets up the parser (~2 ms); done here, no child pays it.
    compile("pass", "<warm-up>", "exec")


# ---------------------------------------------------------------------------------------------
# the child
def _inside(path: object, root: str) -> bool:
    try:
        if isinstance(path, int):
            return True
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real == root or real.startswith(root + os.sep) or real == "/dev/null"


def _make_audit_hook(root: str):
    own_pid = str(os.getpid())

    def hook(event: str, args: tuple) -> None:
        if event in BLOCKED_EVENTS:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import":
            if args and args[0] in BLOCKED_IMPORTS:
                raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        elif event == "open":
            path, mode, flags = (tuple(args) + (None, None, 0))[:3]
            writing = bool((flags or 0) & WRITE_FLAGS) or any(c in (mode or "") for c in "wax+")
            if writing and not _inside(path, root):
                raise PermissionError(
                    f"sandbox: writing {path!r} outside the working directory is not allowed"
                )
            text = os.fsdecode(path) if isinstance(path, (str, bytes)) else ""
            if "proc" in text:
                real = os.path.realpath(text)
                part = real.split("/")[2] if real.startswith("/proc/") else ""
                if real.endswith("/environ") or (part.isdigit() and part != own_pid):
                    raise PermissionError("sandbox: reading other processes' /proc entries is not allowed")
        elif event in PATH_WRITE_EVENTS:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)) and not _inside(arg, root):
                    raise PermissionError(f"sandbox: {event} outside the working directory is not allowed")

    return hook


def _set_limits(req: dict) -> None:
    import resource

    cpu = max(1, int(req["time_limit"] + 0.999))
    memory = int(req["memory_mb"]) << 20
    output = int(req["output_limit"])
    limits = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_AS: (memory, memory),
        resource.RLIMIT_FSIZE: (output, output),
        resource.RLIMIT_NPROC: (int(req["max_processes"]), int(req["max_processes"])),
        resource.RLIMIT_NOFILE: (64, 64),
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in limits.items():
        resource.setrlimit(which, value)


def _test_child(req: dict, code: object, workdir: str, in_fd: int, out_fd: int, err_fd: int) -> None:
    """The child that runs one test, never returns: isolate itself, run the program as __main__.

    `code` is the program compiled by the runner, or None when that failed: the child compiles
    it again to fail as the program would (a traceback and exit status 1).
    """
    status = INTERNAL_ERROR_EXIT
    try:
        os.setsid()
        os.dup2(in_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.closerange(3, 1 << 20)  # the runner's pipes and files, and whatever the server held
        os.chdir(workdir)
        os.umask(0o077)
        if _SANDBOX_UID is not None:
            os.setgroups([])
            os.setgid(_SANDBOX_UID)
            os.setuid(_SANDBOX_UID)
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        import random
        import types

        random.seed()
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = __builtins__
        main.__file__ = os.path.join(workdir, "solution.py")
        _set_limits(req)
        sys.modules["__main__"] = main
        if req.get("audit_hook", True):
            sys.addaudithook(_make_audit_hook(os.path.realpath(workdir)))
        status = 0
        try:
            exec(code or compile(req["code"], "solution.py", "exec"), main.__dict__)
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except BaseException:
            import traceback

            traceback.print_exc()
            status = 1
        status = _finish(status)
    except BaseException:
        pass
    os._exit(status)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except BaseException:
        pass
    return 1


def _finish(status: int) -> int:
    """Wait for non-daemon threads, run atexit handlers and flush, as a normal interpreter exit does."""
    import atexit

    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException:
        status = status or 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            status = status or 1
    return status


# ---------------------------------------------------------------------------------------------
# one run in the server
def _kill_descendants() -> None:
    """Kill and reap every remaining child of this process.

    The server and the runner are child subreapers, so anything a program forked (and that outlived
    it, even after setsid or a double fork) is re-parented to them; an empty child list and nothing
    left to wait for prove that nothing survived.
    """
    me = os.getpid()
    while True:
        try:
            os.waitpid(-1, os.WNOHANG)  # the common case, no child at all, without reading /proc
        except ChildProcessError:
            return
        try:
            with open(f"/proc/{me}/task/{me}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        if not pids:
            time.sleep(0.001)


def _read_output(fd: int, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of an output file, read through the runner's own descriptor; and
    whether it reached the limit (RLIMIT_FSIZE stops it there)."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, min(size, limit), 0)
    return data, size >= limit


def unit_test_passed(status: str, stdout: bytes | str, expected: str) -> bool:
    """The unit-test rule: the program ended normally ("ok") and its stripped stdout is the
    stripped expected output."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    return status == "ok" and stdout.strip() == expected.strip()


def run_test(req: dict, code: object, run_dir: str, stdin: str) -> dict:
    """In the runner: run the program on one input in a fresh child and working directory."""
    workdir = os.path.join(run_dir, "work")  # the same path each time (HOME and TMPDIR point to it)
    os.mkdir(workdir, 0o700)
    if _SANDBOX_UID is not None:
        os.chown(workdir, _SANDBOX_UID, _SANDBOX_UID)
    paths = [os.path.join(run_dir, name) for name in ("stdin", "stdout", "stderr")]
    with open(paths[0], "wb") as f:
        f.write(stdin.encode("utf-8", "surrogatepass"))
    fds = [os.open(paths[0], os.O_RDONLY)]
    fds += [os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600) for path in paths[1:]]
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _test_child(req, code, workdir, *fds)
    os.close(fds[0])
    timed_out = False
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(float(req["wall_limit"]) * 1000):
            timed_out = True
    finally:
        os.close(pidfd)
    _kill_group(pid)  # before reaping: the zombie keeps the group id from being reused
    _, wait_status = os.waitpid(pid, 0)
    wall = time.monotonic() - start
    _kill_descendants()
    stdout, over = _read_output(fds[1], int(req["output_limit"]))
    stderr = os.pread(fds[2], 4096, max(0, os.fstat(fds[2]).st_size - 4096))
    for fd in fds[1:]:
        os.close(fd)
    try:
        os.rmdir(workdir)  # most programs write nothing
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)
    exit_code = os.waitstatus_to_exitcode(wait_status)
    if timed_out:
        status = "timeout"
    elif over:
        status = "output_limit"
    elif exit_code < 0:
        status = "timeout" if -exit_code in (signal.SIGXCPU, signal.SIGKILL) else "signal"
    elif exit_code == INTERNAL_ERROR_EXIT:
        status = "sandbox_error"
    elif exit_code != 0:
        status = "error"
    else:
        status = "ok"
    return {
        "status": status,
        "exit_code": exit_code,
        "stdout": stdout,
        "stderr": stderr[-1000:].decode("utf-8", "replace"),
        "wall_s": wall,
    }


def _runner(control_fd: int, result_fd: int, run_dir: str) -> None:
    """The runner, never returns: for each program it is sent, run its tests and send the results.

    It stays with the server's uid and never runs a program itself: it compiles each program once
    and forks a fresh child per test, which switches to the sandbox uid (so a program cannot signal
    or trace the runner that judges it). As their subreaper it kills whatever a test left behind
    before the next one starts.
    """
    try:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        workdir = os.path.join(run_dir, "work")
        os.environ.clear()
        os.environ.update({"PATH": SAFE_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"})
        tempfile.tempdir = workdir
        import io
        import resource

        # Made once here and inherited: the test child's fds 0-2 are its own files by then.
        sys.stdin = io.TextIOWrapper(
            io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8", errors="replace"
        )
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8", errors="replace"
        )
        sys.stderr = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="replace", write_through=True
        )
        sys.argv = ["solution.py"]
        sys.dont_write_bytecode = True
        while True:
            req = recv_frame(control_fd)
            if not isinstance(req, dict):
                break  # the server is gone or retired this runner
            # What compiling a program may take (the soft limit, so a later, larger one can raise it).
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            resource.setrlimit(resource.RLIMIT_AS, (int(req["memory_mb"]) << 20, hard))
            try:
                code = compile(req["code"], "solution.py", "exec")  # once for all its tests
            except BaseException:
                code = None
            runs = []
            expected = req.get("expected")
            for number, stdin in enumerate(req["stdins"]):
                run = run_test(req, code, run_dir, stdin)
                runs.append(run)
                if expected is not None and not unit_test_passed(
                    run["status"], run["stdout"], expected[number]
                ):
                    break  # the program failed: its remaining tests cannot change the verdict
            del code
            send_frame(result_fd, {"runs": runs})
    except BaseException:
        pass
    os._exit(0)


class Runner:
    """The server's runner process and its pipes; replaced when it fails or has served its share."""

    def __init__(self, base: str) -> None:
        self.run_dir = tempfile.mkdtemp(dir=base)
        os.chmod(self.run_dir, 0o711)
        control_read, self.control = os.pipe()
        self.results, result_write = os.pipe()
        self.served = 0
        self.failed = False  # died, overran or sent garbage: replace it
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.control)
            os.close(self.results)
            _runner(control_read, result_write, self.run_dir)
        for fd in (control_read, result_write):
            os.close(fd)

    def alive(self) -> bool:
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def run(self, req: dict) -> dict:
        """The program's results; the runner must answer within every test's wall limit and a margin."""
        self.served += 1
        send_frame(self.control, req)
        deadline_s = len(req["stdins"]) * (float(req["wall_limit"]) + 1.0) + 5.0
        if select.select([self.results], [], [], deadline_s)[0]:
            reply = recv_frame(self.results)
            if isinstance(reply, dict):
                return reply
        self.failed = True
        return {"error": f"the program's runner gave no result within {deadline_s:g}s"}

    @property
    def spent(self) -> bool:
        return self.failed or self.served >= RUNNER_PROGRAMS

    def close(self) -> None:
        """Stop the runner, kill whatever is left below the server, remove the run directory."""
        for fd in (self.control, self.results):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _kill_descendants()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def serve() -> None:
    """Answer program requests on stdin/stdout until the client closes the pipe."""
    in_fd, out_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    _setup_isolation()
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    _preload()
    import gc

    gc.collect()
    gc.freeze()  # keep the collector from touching (and copying) the zygote's pages in every child
    base = tempfile.mkdtemp(prefix="m2rl-sandbox-")
    os.chmod(base, 0o711)
    runner = Runner(base)
    try:
        send_frame(out_fd, {"isolation": dict(ISOLATION), "pid": os.getpid()})
        while True:
            req = recv_frame(in_fd)
            if req is None:
                break
            if not runner.alive():  # e.g. killed from outside: a program cannot (other uid, or the hook)
                runner.close()
                runner = Runner(base)
            try:
                reply = runner.run(req)  # type: ignore[arg-type]
            except Exception as exc:  # a broken request or a dead runner must not take the server down
                reply = {"error": repr(exc)}
                runner.failed = True
            send_frame(out_fd, reply)
            if runner.spent:  # replaced after replying: the client is busy meanwhile
                runner.close()
                runner = Runner(base)
    finally:
        runner.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    serve()
