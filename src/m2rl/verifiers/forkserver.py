"""Pre-warmed fork server that runs untrusted Python programs, isolated by the kernel, one child per test.

Why hand-written: starting a fresh interpreter per unit test costs ~20-40 ms, most of it interpreter
start-up; forking a small, already-initialised interpreter costs ~1 ms. No library offers a
Python-only fork server with these limits, and container sandboxes need a daemon we cannot assume.

Why our own namespaces rather than bubblewrap (`bwrap`): bwrap is a system package (Debian's
`bubblewrap`), so a pip install of m2rl cannot rely on it, and it isolates one exec'd command:
wrapping each test in it would pay interpreter start-up again (what this server exists to avoid),
and wrapping the whole server in it would still leave the per-test PID, mount and IPC namespaces
to code of our own. The calls bwrap makes (unshare, setns, mount, pivot_root, capset, prctl) are
made here through libc with ctypes, the same way, at fork speed and with no dependency.

Processes, and what each holds (a program can read whatever the process it was forked from held):
- server (the judge): holds each request (program, inputs, expected outputs). It sends the runner
  one test at a time as descriptors (the program, stdin, stdout and stderr as memfds, the first two
  sealed read-only), reads the output through its own copy, compares it, and stops at the first
  failed test. Nothing is forked from it after it has read a request.
- runner: forked from the server after set-up and before the first request, so its memory holds
  the standard library and the warmed compiler only; it never reads a program, an input or an
  output, it only forks a test child with the descriptors it is sent and reports how it ended. It
  makes each test's mount namespace and releases it once it has answered (see _fork_test).
- test child: PID 1 of a new PID namespace, in its own mount and IPC namespaces with a fresh /proc
  and a fresh /tmp. It drops every capability, switches to the sandbox uid (as root), sets
  no_new_privs, rlimits and the audit hook, then compiles and runs its program as __main__. When
  it ends the kernel kills whatever it started (setsid, double forks and daemons included).

Isolation (kernel-enforced unless said otherwise):
- The server enters new mount and network namespaces (as root; otherwise inside a new user
  namespace that maps only the server's own uid, so nothing gains a privilege outside it), forks
  its runner as PID 1 of a new PID namespace, and pivots into a new root: read-only, nosuid binds
  of /usr (and /bin, /lib... or their symlinks), a few /etc files, the standard library, the
  packages a config allows (`verifiers.code.packages`, none by default) and
  /dev/{null,zero,full,random,urandom}. No site directory is in it (an empty read-only tmpfs
  covers one that a bound directory contains): not m2rl, its data generators, the virtualenv's
  other packages, the runs folder, home directories or caches. The network namespace has a
  loopback that is down: no connection to anything.
- Per test: a PID namespace (no process outside it is visible, so none can be signalled, traced or
  read through /proc), a fresh /proc of its processes only (`subset=pid`; before Linux 5.8 a full
  one with the host's keys, symbols and load and memory figures masked; an empty one where the
  kernel refuses a /proc), an IPC namespace (no SysV or POSIX IPC object outlives the test) and a
  fresh, empty, size-capped tmpfs on /tmp (also /var/tmp and /dev/shm), the working directory.
- Kernel state that namespaces do not cover: a seccomp filter (DENIED_SYSCALLS, compiled once with
  libseccomp, the library Docker, systemd and podman build theirs with) refuses the keyrings
  (`add_key`, `keyctl`, `request_key`: not namespaced, so a key would outlive the test), io_uring,
  tracing, BPF, perf, userfaultfd, new namespaces and mounts, module loading and kexec; the server
  first joins a new anonymous session keyring, so no key its caller holds is possessed by it.
- Memory per test as a whole: a cgroup (v2 where the server's cgroup has the memory and pids
  controllers and its parent is writable, else v1's, as root) that the runner joins, so every test
  child is born in it with its memory and process limits; where the kernel gives none, rlimits
  sized so that address space x processes stays within the server's budget
  (`verifiers.code.host_memory_share` of the host's RAM over the workers). Test processes have
  oom_score_adj 1000: under memory pressure the OOM killer takes them, not the trainer.
- The server and the runner are not dumpable (PR_SET_DUMPABLE=0): no process of the same uid can
  read their memory, environment or descriptors through /proc.
- Test child: no capabilities (effective, permitted, inheritable), no_new_privs (a setuid binary
  gives nothing), as root a uid of this server's own (100000 + server pid); rlimits on CPU seconds,
  address space, file size (caps stdout/stderr), processes, open files and core dumps; only its
  three standard descriptors; no blocked signal; umask 077; environment PATH, HOME, TMPDIR, LANG;
  the wall-clock limit kills it. It tells the runner through a pipe once every layer is in place,
  so a failure of the sandbox itself is never confused with the program's own exit status.
- Channels: the client and the server speak length-prefixed JSON frames, validated on both ends;
  the server and the runner speak fixed-size structs over a SOCK_SEQPACKET pair. Nothing a program
  could reach is unpickled.
- Python audit hook (defence in depth only; a program can remove it, the kernel layers hold
  without it): refuses sockets, process creation, signals, ctypes, writes outside the working
  directory and other processes' /proc entries.
Where the kernel refuses any namespace (some containers), the server says why in its hello and
ends, and the client refuses to run programs unless `verifiers.code.allow_unsandboxed` accepts the
risk; it then starts `forkserver.py --unsandboxed`: rlimits, the audit hook, a fresh directory per
test under a directory of this server's (`m2rl-sandbox-PID-*` in the temporary directory; those of
dead servers are removed when a server starts), a subreaper that kills what a test left behind and,
as root, the sandbox uid.

This file is run as a script (`python -I forkserver.py`) by `m2rl.verifiers.sandbox`, uses the
standard library only and never imports m2rl, so the runner stays small and the address-space
limit measures the program, not the trainer.
"""

from __future__ import annotations

import _signal
import argparse
import atexit
import fcntl
import gc
import importlib
import importlib.util
import io
import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import sysconfig
import tempfile
import time
import traceback
import types
from typing import NamedTuple

# ---------------------------------------------------------------------------------------------
# constants
HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 31
INTERNAL_ERROR_EXIT = 120
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
SANDBOX_DIR_PREFIX = "m2rl-sandbox-"
LEGACY_PREFIXES = ("m2rl-sandbox-", "m2rl-stage-")  # untagged directories of servers before pid tags
LEGACY_STALE_S = 3600.0
TMP_OPTIONS = "size=64m,nr_inodes=4096,mode=1777"  # each test's /tmp
RUNNER_MARGIN_S = 5.0  # what the runner may take beyond a test's wall limit to answer
# Light modules imported once in the server (so in the runner and every test child) so programs do
# not pay for them on every run. Kept small on purpose: fork time grows with the runner's memory.
PRELOAD = (
    "array", "bisect", "collections", "functools", "heapq", "io", "itertools", "math", "operator",
    "random", "re", "resource", "string", "traceback", "types",
)  # fmt: skip
# The new root: system directories (bound, or their symlinks copied), /etc files and devices.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("passwd", "group", "hosts", "nsswitch.conf", "localtime", "ld.so.cache")
DEVICES = ("null", "zero", "full", "random", "urandom")
ROLES = ("m2rl-sandbox", "m2rl-runner", "m2rl-test")  # process names
PACKAGES_DIR = "/packages"  # where the new root holds the packages programs may import
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

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_NOATIME, MS_NODIRATIME, MS_REC, MS_PRIVATE, MS_STRICTATIME = 1024, 2048, 16384, 1 << 18, 1 << 24
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NAME = 1, 4, 15
PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 22, 36, 38
SECCOMP_MODE_FILTER = 2
CAPABILITY_VERSION_3 = 0x20080522
KEYCTL_JOIN_SESSION_KEYRING = 1
SECCOMP_LIBRARY = "libseccomp.so.2"
SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_CMP_MASKED_EQ, SCMP_FLTATR_CTL_OPTIMIZE = 0x7FFF0000, 0x00050000, 7, 8
CLONE_NEWTIME, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00000080, 0x02000000, 0x04000000
NAMESPACE_FLAGS = (
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
)  # fmt: skip
# System calls a judged program never needs, refused (EPERM) by a seccomp filter in every test child:
DENIED_SYSCALLS = (
    # kernel keyrings: not namespaced, so a key would outlive the test (and the caller's could be read)
    "add_key", "keyctl", "request_key",
    # io_uring: a large kernel surface that hardened sandboxes deny
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # tracing, other processes' memory and descriptors, kernel programs
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "perf_event_open", "bpf",
    "userfaultfd",
    # namespaces and mounts (the test's own were made before the filter)
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at", "open_by_handle_at",
    # the machine: kernel code, modules, clocks, swap, accounting, the kernel log
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
    "swapoff", "acct", "quotactl", "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "iopl", "ioperm", "fanotify_init", "vhangup", "lookup_dcookie",
)  # fmt: skip
# clone3 passes its flags in memory a filter cannot read: it answers ENOSYS, and the C library falls
# back to clone, whose namespace flags the filter refuses.
ENOSYS_SYSCALLS = ("clone3",)
# /proc entries a test child sees as empty where its kernel cannot mount a /proc of processes only
# (`subset=pid`): the host's keys, kernel symbols, and load- and memory-dependent figures (a
# program's answer must not depend on what else the machine is doing).
MASKED_PROC = (
    "keys", "key-users", "kallsyms", "kcore", "timer_list", "sched_debug", "loadavg", "meminfo", "stat",
    "uptime", "vmstat", "zoneinfo", "pressure",
)  # fmt: skip
OOM_SCORE_ADJ = b"1000"  # test processes are the OOM killer's first choice, never the trainer

# What the server found it could do (sent to the client in the hello), set once before the runner.
ISOLATION: dict[str, str] = {}
_SANDBOX_UID: int | None = None  # as root: the uid programs run as
_NAMESPACES = False  # per-test PID/mount/IPC namespaces inside a read-only new root
_WORK = ""  # the test child's working directory (HOME and TMPDIR)
_WORK_REAL = ""  # its real path, resolved once by the runner for the audit hook
_CGROUP: TestCgroup | None = None  # bounds each test's memory and processes as a whole, if any
_BUDGET_MB: int | None = None  # what one test may hold at most (this server's share of the host)
KERNEL: Kernel  # made by serve()


# ---------------------------------------------------------------------------------------------
# client <-> server frames: length-prefixed JSON (shared with the client in m2rl.verifiers.sandbox)
def encode_frame(obj: object) -> bytes:
    """One length-prefixed JSON frame (lone surrogates survive as escapes)."""
    payload = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    if len(payload) > MAX_FRAME:
        raise ValueError(f"frame of {len(payload)} bytes is too large")
    return HEADER.pack(len(payload)) + payload


def send_frame(fd: int, obj: object) -> None:
    """Write one frame to a file descriptor in full."""
    data = memoryview(encode_frame(obj))
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_frame(fd: int) -> object | None:
    """Read one frame; None on end of file (the other side is gone); ValueError if it is not JSON."""
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is too large")
    payload = _read_exact(fd, size)
    if payload is None:
        return None
    return json.loads(payload)


def unit_test_passed(status: str, stdout: bytes | str, expected: str) -> bool:
    """The unit-test rule: the program ended normally ("ok") and its stripped stdout is the
    stripped expected output."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    return status == "ok" and stdout.strip() == expected.strip()


def _checked_request(req: object) -> dict:
    """The request if it has the expected shape; ValueError naming the first bad field."""
    numbers = ("time_limit", "wall_limit", "memory_mb", "output_limit", "max_processes")
    if not isinstance(req, dict):
        raise ValueError("a request must be an object")
    if not isinstance(req.get("code"), str):
        raise ValueError("code must be a string")
    stdins, expected = req.get("stdins"), req.get("expected")
    if not isinstance(stdins, list) or not all(isinstance(s, str) for s in stdins):
        raise ValueError("stdins must be a list of strings")
    if expected is not None and (
        not isinstance(expected, list)
        or len(expected) != len(stdins)
        or not all(isinstance(s, str) for s in expected)
    ):
        raise ValueError("expected must be null or one string per input")
    for name in numbers:
        value = req.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1 << 62:
            raise ValueError(f"{name} must be a positive number")
    if not isinstance(req.get("audit_hook"), bool):
        raise ValueError("audit_hook must be a boolean")
    return req


# ---------------------------------------------------------------------------------------------
# server <-> runner messages: fixed-size structs with descriptors, over a SOCK_SEQPACKET pair
class RunLimits(NamedTuple):
    """A test's limits, as the TEST message carries them after its kind."""

    time_limit: float
    wall_limit: float
    memory_mb: int
    output_limit: int
    max_processes: int
    audit_hook: int

    @classmethod
    def of(cls, req: dict) -> RunLimits:
        """The limits a (checked) request gives its tests."""
        sizes = (int(req[name]) for name in ("memory_mb", "output_limit", "max_processes", "audit_hook"))
        return cls(float(req["time_limit"]), float(req["wall_limit"]), *sizes)


TEST = struct.Struct("<BddQQQB")  # kind, RunLimits; descriptors: program, stdin, stdout, stderr
# kind, exit code (negative: signal), timed out, wall seconds, program started, OOM-killed, CPU seconds
RESULT = struct.Struct("<BiBdBBd")
KIND_TEST, KIND_RESULT = 1, 2
LAYOUT_OF = {KIND_TEST: (TEST.size, 4), KIND_RESULT: (RESULT.size, 0)}  # kind: (bytes, descriptors)


def _send(sock: socket.socket, layout: struct.Struct, values: tuple, fds: list[int] | None = None) -> None:
    socket.send_fds(sock, [layout.pack(*values)], fds or [])


def _receive(sock: socket.socket) -> tuple[int, bytes, list[int]] | None:
    """(kind, message, descriptors) of the next message; None at end of file; ValueError if malformed."""
    message, fds, flags, _ = socket.recv_fds(sock, 64, 4)
    if not message and not fds:
        return None
    kind = message[0] if message else 0
    if flags & socket.MSG_CTRUNC or LAYOUT_OF.get(kind) != (len(message), len(fds)):
        for fd in fds:
            os.close(fd)
        raise ValueError(f"malformed message (kind {kind}, {len(message)} bytes, {len(fds)} descriptors)")
    return kind, message, fds


# ---------------------------------------------------------------------------------------------
# the kernel calls the standard library lacks
class Kernel:
    """unshare, setns, mount, umount, pivot_root, capset and prctl through libc (ctypes); OSError on failure.

    Made once in the server before ctypes leaves sys.modules; what the test child passes to capset
    and prctl is built here too.
    """

    def __init__(self) -> None:
        # lazy: no module global holds ctypes, which leaves sys.modules before the runner forks
        import ctypes

        self._errno = ctypes.get_errno
        self._libc = libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._no_capabilities = ((ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0), (ctypes.c_uint32 * 6)())
        self._names = [ctypes.create_string_buffer(role.encode()) for role in ROLES]
        self._name_of = {role: ctypes.addressof(b) for role, b in zip(ROLES, self._names, strict=True)}
        libc.syscall.restype = ctypes.c_long
        self._filter_address = 0  # none compiled yet
        try:  # libseccomp (Debian's libseccomp2, as Docker, systemd and podman use) compiles the filter
            self._seccomp = seccomp = ctypes.CDLL(SECCOMP_LIBRARY, use_errno=True)
        except OSError:
            self._seccomp = None
            return
        seccomp.seccomp_init.restype = ctypes.c_void_p
        seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
        seccomp.seccomp_release.argtypes = [ctypes.c_void_p]
        seccomp.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        seccomp.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p,
        ]  # fmt: skip
        seccomp.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            errno = self._errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    def prctl(self, option: int, value: int) -> None:
        self._check(self._libc.prctl(option, value, 0, 0, 0), f"prctl({option})")

    def set_name(self, role: str) -> None:
        """The process name `ps` and `top` show: its role in the sandbox."""
        self.prctl(PR_SET_NAME, self._name_of[role])

    def unshare(self, flags: int) -> None:
        self._check(self._libc.unshare(flags), "unshare")

    def setns(self, fd: int, flags: int) -> None:
        self._check(self._libc.setns(fd, flags), "setns")

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
    ) -> None:
        def encoded(text: str | None) -> bytes | None:
            return None if text is None else text.encode()

        result = self._libc.mount(encoded(source), encoded(target), encoded(fstype), flags, encoded(data))
        self._check(result, f"mount {target}")

    def umount(self, target: str) -> None:
        """Detach the mount at `target` (lazily, as `umount -l`)."""
        self._check(self._libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")

    def pivot_root(self, new: str, old: str) -> None:
        self._check(self._libc.pivot_root(new.encode(), old.encode()), "pivot_root")

    def drop_capabilities(self) -> None:
        """No effective, permitted or inheritable capability left (the ambient set goes with them)."""
        self._check(self._libc.capset(*self._no_capabilities), "capset")

    def join_session_keyring(self) -> None:
        """Leave the caller's session keyring for a new anonymous one: no key the caller holds is
        possessed from here on (and test children, forked later, inherit the new one)."""
        if self._libc.syscall(self.syscall_number("keyctl"), KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
            errno = self._errno()
            raise OSError(errno, f"keyctl(KEYCTL_JOIN_SESSION_KEYRING): {os.strerror(errno)}")

    def syscall_number(self, name: str) -> int:
        """The system call's number on this machine (libseccomp's table); OSError if it has none."""
        number = self._seccomp.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            raise OSError(f"no system call {name} here")
        return number

    def build_filter(self) -> None:
        """Compile the deny list (DENIED_SYSCALLS, namespace flags of clone, ENOSYS_SYSCALLS) into a
        classic BPF program once; `install_filter` loads it in each test child with one prctl."""
        # lazy: no module global holds ctypes, which leaves sys.modules before the runner forks
        import ctypes

        lib = self._seccomp
        context = lib.seccomp_init(SCMP_ACT_ALLOW)
        if not context:
            raise OSError("seccomp_init failed")
        try:
            lib.seccomp_attr_set(context, SCMP_FLTATR_CTL_OPTIMIZE, 2)  # a binary tree (libseccomp 2.5)
            deny = SCMP_ACT_ERRNO | 1  # EPERM
            for name in DENIED_SYSCALLS:
                number = lib.seccomp_syscall_resolve_name(name.encode())
                if number >= 0:  # not every call exists on every architecture
                    self._rule(context, deny, number, [])
            for name in ENOSYS_SYSCALLS:
                number = lib.seccomp_syscall_resolve_name(name.encode())
                if number >= 0:
                    self._rule(context, SCMP_ACT_ERRNO | 38, number, [])  # ENOSYS
            clone = self.syscall_number("clone")
            for flag in NAMESPACE_FLAGS:  # refused when (flags & flag) == flag
                self._rule(context, deny, clone, [(0, SCMP_CMP_MASKED_EQ, flag, flag)])
            program = os.memfd_create("seccomp-bpf")
            try:
                if lib.seccomp_export_bpf(context, program) != 0:
                    raise OSError("seccomp_export_bpf failed")
                code = os.pread(program, 1 << 20, 0)
            finally:
                os.close(program)
        finally:
            lib.seccomp_release(context)

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self._filter_code = ctypes.create_string_buffer(code, len(code))
        self._filter = SockFprog(len(code) // 8, ctypes.addressof(self._filter_code))
        self._filter_address = ctypes.addressof(self._filter)

    def _rule(
        self, context: int, action: int, number: int, comparisons: list[tuple[int, int, int, int]]
    ) -> None:
        # lazy: no module global holds ctypes, which leaves sys.modules before the runner forks
        import ctypes

        class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
            _fields_ = [
                ("arg", ctypes.c_uint),
                ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64),
            ]

        array = (ArgCmp * max(1, len(comparisons)))(*(ArgCmp(*c) for c in comparisons))
        result = self._seccomp.seccomp_rule_add_array(context, action, number, len(comparisons), array)
        if result != 0:
            raise OSError(-result, f"seccomp_rule_add: {os.strerror(-result)}")

    def install_filter(self) -> None:
        """Load the compiled filter into this process (after no_new_privs); it holds for its children."""
        self._check(
            self._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self._filter_address, 0, 0), "seccomp"
        )


# ---------------------------------------------------------------------------------------------
# memory and processes per test: a cgroup the runner lives in, so every test child is born in it
class TestCgroup:
    """A cgroup (v2, or v1's memory and pids hierarchies) that bounds each test as a whole.

    The runner joins it once; every test child is then born in it, so its memory limit and process
    limit bound the test's processes together (one test cannot hold 16 x the per-process limit).
    The runner's own pages stay charged where they were made (the kernel does not move charges), it
    counts as one process, and test processes are the OOM killer's first choice (OOM_SCORE_ADJ).
    An OOM kill in the cgroup is told from other deaths by its counter. Descriptors are opened before
    the server pivots into its new root, which has no cgroup file system.
    """

    def __init__(self, version: str, dirs: list[str]) -> None:
        self.version, self.dirs = version, dirs
        self._fds = [os.open(d, os.O_RDONLY | os.O_DIRECTORY) for d in dirs]
        self._written: tuple[int, int] | None = None
        self._kills = self.oom_kills()

    @classmethod
    def create(cls) -> TestCgroup:
        """This server's test cgroup; OSError saying why there is none (not delegated, no controllers)."""
        mounts = _cgroup_mounts()
        own = _own_cgroups()
        name = f"{SANDBOX_DIR_PREFIX}{os.getpid()}"
        v2 = mounts.get("cgroup2")
        if v2 and "" in own:
            # a sibling of the server's own cgroup, which must have both controllers (v2 lets a cgroup
            # with processes, as the server's is, hold no child with controllers)
            here = os.path.join(v2, own[""].lstrip("/"))
            controllers = _read(os.path.join(here, "cgroup.controllers")).split()
            if {"memory", "pids"} <= set(controllers) and own[""] != "/":
                parent = os.path.dirname(here)
                _remove_stale_cgroups(parent)
                return cls._made("v2", [os.path.join(parent, name)])
        if "memory" in mounts and "pids" in mounts and "memory" in own and "pids" in own:
            dirs = []
            for controller in ("memory", "pids"):
                parent = os.path.join(mounts[controller], own[controller].lstrip("/"))
                _remove_stale_cgroups(parent)
                dirs.append(os.path.join(parent, name))
            return cls._made("v1", dirs)
        raise OSError("no cgroup with the memory and pids controllers")

    @classmethod
    def _made(cls, version: str, dirs: list[str]) -> TestCgroup:
        made = []
        try:
            for d in dirs:
                os.mkdir(d, 0o755)
                made.append(d)
            return cls(version, dirs)
        except OSError as exc:
            for d in made:
                _remove_cgroup(d)
            raise OSError(exc.errno, f"cannot create a test cgroup ({version}): {exc.strerror}") from None

    @property
    def fds(self) -> list[int]:
        return list(self._fds)

    def _write(self, index: int, name: str, value: str) -> None:
        fd = os.open(name, os.O_WRONLY, dir_fd=self._fds[index])
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def join(self) -> None:
        """Move the calling process (the runner) into the test cgroup."""
        for index in range(len(self._fds)):
            self._write(index, "cgroup.procs", "0")

    def limit(self, memory_bytes: int, processes: int) -> None:
        """Bound what a test's processes hold together (written only when it changes)."""
        if self._written == (memory_bytes, processes):
            return
        if self.version == "v2":
            self._write(0, "memory.max", str(memory_bytes))
            self._write_if_present(0, "memory.swap.max", "0")
            self._write(0, "pids.max", str(processes + 1))  # the runner is one of them
        else:
            self._v1_memory(memory_bytes)
            self._write(1, "pids.max", str(processes + 1))
        self._written = (memory_bytes, processes)

    def _write_if_present(self, index: int, name: str, value: str) -> None:
        try:
            self._write(index, name, value)
        except FileNotFoundError:  # no swap accounting in this kernel
            pass

    def _v1_memory(self, memory_bytes: int) -> None:
        # memory+swap may never be below memory alone: raise the larger first
        order = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        if self._written is not None and memory_bytes > self._written[0]:
            order.reverse()
        for name in order:
            self._write_if_present(0, name, str(memory_bytes))

    def oom_killed_since_last_look(self) -> bool:
        """Whether the OOM killer killed a process in the cgroup since the last call (or creation)."""
        kills = self.oom_kills()
        killed, self._kills = kills > self._kills, kills
        return killed

    def oom_kills(self) -> int:
        """How many processes the OOM killer has killed in the cgroup so far."""
        name = "memory.events" if self.version == "v2" else "memory.oom_control"
        fd = os.open(name, os.O_RDONLY, dir_fd=self._fds[0])
        try:
            text = os.read(fd, 4096).decode()
        finally:
            os.close(fd)
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        for fd in self._fds:
            os.close(fd)
        for d in self.dirs:
            _remove_cgroup(d)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _cgroup_mounts() -> dict[str, str]:
    """Mount points: "cgroup2" for the unified hierarchy, a v1 controller's name for its own."""
    found: dict[str, str] = {}
    for line in _read("/proc/self/mountinfo").splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        tail = fields[fields.index("-") + 1 :]
        if tail[0] == "cgroup2":
            found.setdefault("cgroup2", fields[4])
        elif tail[0] == "cgroup" and len(tail) > 2:
            for option in tail[2].split(","):
                found.setdefault(option, fields[4])
    return found


def _own_cgroups() -> dict[str, str]:
    """The server's cgroup per v1 controller, and under "" its v2 one (/proc/self/cgroup)."""
    own: dict[str, str] = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    return own


def _remove_cgroup(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def _remove_stale_cgroups(parent: str) -> None:
    """Remove the test cgroups of servers that are gone (named m2rl-sandbox-PID)."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(SANDBOX_DIR_PREFIX) :]
        if entry.name.startswith(SANDBOX_DIR_PREFIX) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _remove_cgroup(entry.path)


# ---------------------------------------------------------------------------------------------
# server set-up
def _remove_stale_dirs() -> None:
    """Remove fallback working directories of servers that are gone (named m2rl-sandbox-PID-...)."""
    base = tempfile.gettempdir()
    for entry in os.scandir(base):
        if not entry.name.startswith(LEGACY_PREFIXES) or not entry.is_dir(follow_symlinks=False):
            continue
        pid = entry.name[len(SANDBOX_DIR_PREFIX) :].split("-")[0]
        if pid.isdigit() and entry.name.startswith(SANDBOX_DIR_PREFIX):
            stale = not os.path.exists(f"/proc/{pid}")
        else:
            stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_STALE_S
        if stale:
            shutil.rmtree(entry.path, ignore_errors=True)


def _python_dirs() -> list[str]:
    """Directories this server's interpreter reads: the installation and the import path."""
    dirs = {sys.base_prefix, sys.prefix, *sysconfig.get_paths().values(), *(p for p in sys.path if p)}
    return sorted({os.path.normpath(d) for d in dirs if os.path.isdir(d)})


def _stdlib_dirs() -> list[str]:
    """The standard library: its directory and the import-path entries inside it (lib-dynload)."""
    stdlib = os.path.normpath(sysconfig.get_paths()["stdlib"])
    inside = [p for p in map(os.path.normpath, filter(None, sys.path)) if p.startswith(stdlib + "/")]
    return sorted({d for d in [stdlib, *inside] if os.path.isdir(d) and not _is_site_dir(d)})


def _is_site_dir(path: str) -> bool:
    return os.path.basename(path) in ("site-packages", "dist-packages")


def _site_dirs() -> list[str]:
    """Every directory packages are installed in that this interpreter can see: the import path's
    entries outside the standard library (site-packages, an editable project's source) and the
    standard library's own site-packages."""
    stdlib = _stdlib_dirs()
    found = {os.path.normpath(p) for p in sys.path if p and os.path.isdir(p)}
    found = {p for p in found if not any(p == d or p.startswith(d + "/") for d in stdlib) or _is_site_dir(p)}
    for d in stdlib:
        found |= {os.path.join(d, name) for name in ("site-packages", "dist-packages")}
    return sorted(d for d in found if os.path.isdir(d))


def _package_paths(names: list[str]) -> list[str]:
    """The files and directories of the packages programs may import (and their bundled libraries,
    `numpy.libs`); OSError naming a package that is not installed."""
    paths: list[str] = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None and not spec.submodule_search_locations:
            raise OSError(f"verifiers.code.packages: no installed package {name!r}")
        locations = list(spec.submodule_search_locations or [spec.origin])
        for location in locations:
            location = os.path.normpath(location)
            paths.append(location)
            parent, base = os.path.split(location)
            paths += [
                os.path.join(parent, entry)
                for entry in os.listdir(parent)
                if entry.startswith(base.split(".")[0] + ".libs") and entry != base
            ]
    return sorted(set(paths))


def _enter_namespaces() -> None:
    """New mount and network namespaces (inside a new user namespace when not root)."""
    uid, gid = os.getuid(), os.getgid()
    if os.geteuid() == 0:
        KERNEL.unshare(CLONE_NEWNS | CLONE_NEWNET)
        return
    KERNEL.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _locked_flags(path: str) -> int:
    """The flags a read-only remount of `path` must keep (a user namespace may not clear them)."""
    flags = os.statvfs(path).f_flag
    kept = MS_NOSUID | MS_NODEV * bool(flags & os.ST_NODEV) | MS_NOEXEC * bool(flags & os.ST_NOEXEC)
    kept |= MS_NOATIME * bool(flags & os.ST_NOATIME) | MS_NODIRATIME * bool(flags & os.ST_NODIRATIME)
    if not flags & (os.ST_RELATIME | os.ST_NOATIME):
        kept |= MS_STRICTATIME
    return kept


def _bind_read_only(source: str, target: str) -> None:
    KERNEL.mount(source, target, None, MS_BIND | MS_REC)
    KERNEL.mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _locked_flags(target))


def _visible(path: str, covered: list[str]) -> bool:
    return any(path == c or path.startswith(c + "/") for c in covered)


def _build_root(new: str, packages: list[str]) -> None:
    """Fill the tmpfs at `new` with the read-only view programs get, and pivot into it.

    It holds the system directories, the standard library and the packages programs may import
    (`packages`), nothing else of the Python installation: every site directory (site-packages, an
    editable project's source) is left out or, where a bound directory contains it, covered by an
    empty read-only tmpfs. So m2rl itself, its data generators, the virtualenv's other packages, the
    runs folder and the caches are not there to import or read.
    """
    covered: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            os.symlink(os.readlink(path), new + path)
            covered.append(path)
        elif os.path.isdir(path):
            os.mkdir(new + path)
            _bind_read_only(path, new + path)
            covered.append(path)
    for path in _stdlib_dirs():
        if not _visible(path, covered):
            os.makedirs(new + path, 0o755, exist_ok=True)
            _bind_read_only(path, new + path)
            covered.append(path)
    package_paths = _package_paths(packages)
    for site in _site_dirs():  # a site directory a bound directory contains: covered, empty
        if _visible(site, covered):
            KERNEL.mount("tmpfs", new + site, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
    # The allowed packages in a site directory of the sandbox's own (beside each other, as a wheel
    # installs them, so a package finds its bundled `<name>.libs`), whatever their host path.
    os.mkdir(new + PACKAGES_DIR, 0o755)
    for path in package_paths:
        target = f"{new}{PACKAGES_DIR}/{os.path.basename(path)}"
        if os.path.isdir(path):
            os.mkdir(target)
        else:
            open(target, "w").close()
        _bind_read_only(path, target)
    os.makedirs(new + "/etc", 0o755, exist_ok=True)
    for name in ETC_FILES:
        path = "/etc/" + name
        if os.path.islink(path):
            os.symlink(os.readlink(path), new + path)
        elif os.path.isfile(path):
            open(new + path, "w").close()
            _bind_read_only(path, new + path)
    os.mkdir(new + "/dev")
    for name in DEVICES:
        open(new + "/dev/" + name, "w").close()
        KERNEL.mount("/dev/" + name, new + "/dev/" + name, None, MS_BIND)
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{number}", f"{new}/dev/{name}")
    os.symlink("/proc/self/fd", new + "/dev/fd")
    os.mkdir(new + "/tmp", 0o1777)
    os.symlink("/tmp", new + "/dev/shm")
    os.makedirs(new + "/var", 0o755, exist_ok=True)
    os.symlink("/tmp", new + "/var/tmp")
    # Each test child mounts its own /proc over this one; the kernel allows that in a user namespace
    # only while a full /proc is mounted somewhere in the namespace.
    os.mkdir(new + "/proc")
    KERNEL.mount("/proc", new + "/proc", None, MS_BIND | MS_REC)
    os.mkdir(new + "/.old")
    KERNEL.pivot_root(new, new + "/.old")
    os.chdir("/")
    KERNEL.umount("/.old")
    os.rmdir("/.old")
    KERNEL.mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _import_path_of_programs([PACKAGES_DIR] if package_paths else [])
    ISOLATION["bound"] = ", ".join(
        [*(c for c in covered if os.path.isdir(c) and not os.path.islink(c)), *package_paths]
    )


def _import_path_of_programs(sites: list[str]) -> None:
    """What programs import from: the standard library and the site directories of their packages;
    finders an installation added (an editable project's) are gone with the paths they served."""
    sys.path[:] = [*_stdlib_dirs(), *sites]
    sys.meta_path[:] = [
        f for f in sys.meta_path if getattr(f, "__module__", "").startswith("_frozen_importlib")
    ]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()


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
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _setup_isolated(packages: list[str]) -> None:
    """Enter new user (when not root), mount and network namespaces and the read-only new root."""
    global _NAMESPACES, _WORK
    _enter_namespaces()
    KERNEL.mount(None, "/", None, MS_REC | MS_PRIVATE)  # first: no mount below may reach the host
    # An empty directory of its own to build the new root in: a tmpfs over the temporary directory
    # itself would hide whatever lives below it (a project or virtualenv under /tmp, whose allowed
    # packages are bound in). Left empty on the host; removed by the next server that starts.
    new = tempfile.mkdtemp(prefix=f"{SANDBOX_DIR_PREFIX}{os.getpid()}-root-")
    KERNEL.mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    _build_root(new, packages)
    _NAMESPACES, _WORK = True, "/tmp"
    ISOLATION["network"] = "namespace"
    ISOLATION["filesystem"] = "read-only new root, fresh tmpfs per test"
    ISOLATION["processes"] = "PID and IPC namespaces per test"


def _setup_unsandboxed() -> None:
    """No namespaces: each test gets a fresh directory, below this server's own in the temporary directory."""
    global _WORK
    base = tempfile.mkdtemp(prefix=f"{SANDBOX_DIR_PREFIX}{os.getpid()}-")
    os.chmod(base, 0o711)  # the sandbox uid reaches its working directory, and nothing else here
    _WORK = os.path.join(base, "work")
    ISOLATION["network"] = "audit-hook"
    ISOLATION["filesystem"] = "fresh directory per test"
    ISOLATION["processes"] = "subreaper"
    ISOLATION["bound"] = "the whole file system (no new root)"


def _setup_uid(required: bool) -> None:
    """As root, the uid programs run as: this server's own; OSError if it cannot run Python and `required`."""
    global _SANDBOX_UID
    if os.geteuid() != 0:
        ISOLATION["user"] = "same uid, no capabilities"
    elif _uid_can_run_python(100000 + os.getpid()):
        _SANDBOX_UID = 100000 + os.getpid()
        ISOLATION["user"] = f"uid {_SANDBOX_UID}, no capabilities"
    elif required:
        raise OSError("the Python installation is not readable by an unprivileged uid")
    else:
        ISOLATION["user"] = "root without capabilities"


def _setup_kernel_state(required: bool) -> None:
    """The seccomp deny list and a fresh session keyring; OSError if either is refused and `required`.

    Without the filter a program could keep state in the kernel keyrings across tests (they are not
    namespaced) or open io_uring; without a new session keyring it would possess the caller's keys.
    """
    try:
        if KERNEL._seccomp is None:
            raise OSError(f"seccomp: {SECCOMP_LIBRARY} (Debian's libseccomp2) is not installed")
        KERNEL.build_filter()
        _check_filter()
        ISOLATION["seccomp"] = f"{len(DENIED_SYSCALLS)} system calls refused, namespace flags of clone too"
    except OSError as exc:
        if required:
            raise
        ISOLATION["seccomp"] = f"none ({exc.strerror or exc})"
    try:
        KERNEL.join_session_keyring()
        ISOLATION["keyrings"] = "new anonymous session keyring; keyctl, add_key, request_key refused"
    except OSError as exc:  # the host refuses keyctl (a container's own seccomp profile): none reachable
        ISOLATION["keyrings"] = f"unreachable ({exc.strerror or exc})"


def _check_filter() -> None:
    """Load the filter in a child and see keyctl refused there; OSError if the kernel will not."""
    pid = os.fork()
    if pid == 0:
        try:
            KERNEL.prctl(PR_SET_NO_NEW_PRIVS, 1)
            KERNEL.install_filter()
            refused = KERNEL._libc.syscall(KERNEL.syscall_number("keyctl"), 0, -3, 0) < 0
            os._exit(0 if refused and KERNEL._errno() == 1 else 2)
        except OSError as exc:
            os._exit(min(exc.errno or 1, 255))
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status != 0:
        raise OSError(
            status, "the kernel refused the seccomp filter" if status != 2 else "seccomp filter ineffective"
        )


def _setup_memory(budget_mb: int | None) -> None:
    """Bound each test's memory and processes as a whole: a cgroup where the kernel gives one (as
    root, or delegated), else rlimits sized so that a test stays within `budget_mb`."""
    global _CGROUP, _BUDGET_MB
    _BUDGET_MB = budget_mb
    try:
        _CGROUP = TestCgroup.create()
        ISOLATION["memory"] = f"cgroup {_CGROUP.version} per test (memory and processes as a whole)"
    except OSError as exc:
        budget = f", at most {budget_mb} MB per test" if budget_mb else ""
        ISOLATION["memory"] = f"rlimits per process x processes{budget} (no cgroup: {exc.strerror or exc})"


def _preload() -> None:
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    # The first compile() in a process sets up the parser (~2 ms); done here, no child pays it.
    compile("pass", "<warm-up>", "exec")


# ---------------------------------------------------------------------------------------------
# the test child
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


def memory_per_test(memory_mb: int, max_processes: int) -> tuple[int, int]:
    """(MB of address space per process, processes) a test gets, so that it holds at most this
    server's budget in all: with a test cgroup the cgroup bounds the sum, without one the product of
    the two rlimits does (fewer processes first, then less memory)."""
    if _BUDGET_MB is None:
        return memory_mb, max_processes
    if _CGROUP is not None:
        return min(memory_mb, _BUDGET_MB), max_processes
    memory = min(memory_mb, _BUDGET_MB)
    return memory, max(1, min(max_processes, _BUDGET_MB // memory))


def _set_limits(limits: RunLimits) -> None:
    cpu = max(1, int(limits.time_limit + 0.999))
    memory_mb, processes = memory_per_test(limits.memory_mb, limits.max_processes)
    memory = memory_mb << 20
    values = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_AS: (memory, memory),
        resource.RLIMIT_FSIZE: (limits.output_limit, limits.output_limit),
        resource.RLIMIT_NPROC: (processes, processes),
        resource.RLIMIT_NOFILE: (64, 64),
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in values.items():
        resource.setrlimit(which, value)


def _drop_privileges() -> None:
    """The sandbox uid (as root), no capabilities, and no way to gain any through exec."""
    if _SANDBOX_UID is not None:
        os.setgroups([])
        os.setgid(_SANDBOX_UID)
        os.setuid(_SANDBOX_UID)
    KERNEL.drop_capabilities()
    KERNEL.prctl(PR_SET_NO_NEW_PRIVS, 1)


def _enter_test_namespaces() -> None:
    """In a new test child (PID 1 of a new PID namespace, in the new mount namespace the runner made
    for it): its own IPC namespace, /proc and /tmp."""
    KERNEL.unshare(CLONE_NEWIPC)
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    try:  # the processes' entries only (Linux 5.8): no host-wide file at all
        KERNEL.mount("proc", "/proc", "proc", flags, "subset=pid")
    except OSError:
        try:
            KERNEL.mount("proc", "/proc", "proc", flags)
        except OSError:  # the kernel refuses a fresh /proc here (some containers): none at all, then
            KERNEL.mount("tmpfs", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
        else:
            for name in MASKED_PROC:
                path = "/proc/" + name
                if os.path.isdir(path):
                    KERNEL.mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
                elif os.path.exists(path):
                    KERNEL.mount("/dev/null", path, None, MS_BIND)
    KERNEL.mount("tmpfs", _WORK, "tmpfs", MS_NOSUID | MS_NODEV, TMP_OPTIONS)


def _raise_oom_score() -> None:
    """Make this process (the runner) and every test child it forks, which inherit the setting, the
    OOM killer's first choice; among them it takes the largest, a test's. The /proc entries of a
    process that is not dumpable (as the server made it) belong to root: dumpable just for the write."""
    KERNEL.prctl(PR_SET_DUMPABLE, 1)
    try:
        with open("/proc/self/oom_score_adj", "wb", buffering=0) as f:
            f.write(OOM_SCORE_ADJ)
    finally:
        KERNEL.prctl(PR_SET_DUMPABLE, 0)


def _read_program(fd: int) -> str:
    """The program in the memfd `fd` (read from offset 0: the server sends the same one to every test)."""
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("utf-8", "surrogatepass")


STARTED_FD = 3  # the test child's end of the pipe that tells the runner its program has started


def _test_child(limits: RunLimits, fds: list[int], started: int) -> None:
    """The child of one test, never returns: isolate itself, compile its program, run it as __main__.

    Once every layer is in place it writes one byte to `started` (closed before the program runs), so
    the runner tells the sandbox's own failures from the program's, whatever status it exits with.
    """
    status = INTERNAL_ERROR_EXIT
    try:
        KERNEL.set_name("m2rl-test")
        os.setpgid(0, 0)  # its own group, killed as one (not setsid: a new session costs ~3 ms here)
        program = _read_program(fds[0])
        for number, fd in enumerate(fds[1:]):
            os.dup2(fd, number)
        os.dup2(started, STARTED_FD)
        os.closerange(STARTED_FD + 1, 1 << 20)  # the runner's socket and the descriptors' originals
        if _NAMESPACES:
            _enter_test_namespaces()
        os.chdir(_WORK)
        os.umask(0o077)
        _drop_privileges()
        if not _NAMESPACES:  # with them, the runner's death (the server's) ends its PID namespace
            KERNEL.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # _signal's functions, not signal's wrappers: those convert to and from enums, and converting
        # default_int_handler raises (and builds) an exception in every test
        _signal.pthread_sigmask(signal.SIG_SETMASK, ())  # nothing blocked that the runner blocked
        _signal.signal(signal.SIGINT, signal.default_int_handler)
        if KERNEL._filter_address:
            KERNEL.install_filter()
        # no random.seed() here: random (preloaded) reseeds itself in every forked child (at-fork hook)
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = __builtins__
        main.__file__ = _WORK + "/solution.py"
        _set_limits(limits)
        sys.modules["__main__"] = main
        if limits.audit_hook:
            sys.addaudithook(_make_audit_hook(_WORK_REAL))
        os.write(STARTED_FD, b"1")
        os.close(STARTED_FD)
        status = 0
        try:
            exec(compile(program, "solution.py", "exec"), main.__dict__)
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except BaseException:
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
# the runner: forked before the first request, it never holds a program, an input or an output
def _kill_leftovers() -> None:
    """Without namespaces (a subreaper): kill and reap whatever the test left behind."""
    me = os.getpid()
    while True:
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
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        time.sleep(0.0005)


def _fork_test(namespaces: tuple[int, int] | None) -> tuple[int, int | None]:
    """Fork a test child: PID 1 of a new PID namespace below the runner's own, in a new mount namespace
    (`namespaces`: descriptors of the runner's own PID and mount namespaces); (its pid, in the runner, a
    descriptor of the test's mount namespace).

    The runner holds the test's mount namespace so that it is torn down when the runner closes that
    descriptor, after it has answered, and not when the test child exits: tearing mounts down waits
    for an RCU grace period, which would delay every answer.
    """
    if namespaces is None:
        return os.fork(), None
    pid_namespace, mount_namespace = namespaces
    KERNEL.setns(pid_namespace, CLONE_NEWPID)  # undo the last test's unshare
    KERNEL.unshare(CLONE_NEWPID | CLONE_NEWNS)
    pid = -1
    try:
        test_mounts = os.open("/proc/self/ns/mnt", os.O_RDONLY)
        pid = os.fork()
    finally:
        if pid:  # the runner (or a failed fork) goes back to its own mount namespace
            KERNEL.setns(mount_namespace, CLONE_NEWNS)
    return pid, test_mounts


def _run_test(
    sock: socket.socket, limits: RunLimits, fds: list[int], namespaces: tuple[int, int] | None
) -> tuple[tuple, int | None]:
    """Run the test child on these descriptors; (exit code, timed out, wall seconds, started,
    OOM-killed, CPU seconds), and the descriptor of its mount namespace (None without namespaces)."""
    if namespaces is None:
        os.mkdir(_WORK, 0o700)
        if _SANDBOX_UID is not None:
            os.chown(_WORK, _SANDBOX_UID, _SANDBOX_UID)
    if _CGROUP is not None:
        memory_mb, processes = memory_per_test(limits.memory_mb, limits.max_processes)
        _CGROUP.limit(memory_mb << 20, processes)
    started_read, started_write = os.pipe()
    start = time.monotonic()
    pid, test_mounts = _fork_test(namespaces)
    if pid == 0:
        os.close(started_read)
        _test_child(limits, fds, started_write)
    os.close(started_write)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(sock, select.POLLIN)  # the server never writes during a test: it is gone
    events = dict(poller.poll(limits.wall_limit * 1000))
    os.close(pidfd)
    # With namespaces the child is PID 1 of its own: when it dies the kernel kills (and reaps)
    # everything it started before the wait below returns. Its group goes before reaping it: the
    # zombie keeps the group id from being reused.
    for kill in (os.kill, os.killpg):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _, wait_status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - start
    os.set_blocking(started_read, False)
    try:
        started = os.read(started_read, 1) == b"1"
    except BlockingIOError:
        started = False
    os.close(started_read)
    # read only after a failure: the counter serves the reason, and a passing test's output decides
    failed = wait_status != 0 or pidfd not in events
    oom_killed = _CGROUP is not None and failed and _CGROUP.oom_killed_since_last_look()
    if namespaces is None:
        _kill_leftovers()
        shutil.rmtree(_WORK, ignore_errors=True)
    if sock.fileno() in events:
        raise ConnectionError("the server is gone")
    cpu = usage.ru_utime + usage.ru_stime
    exit_code = os.waitstatus_to_exitcode(wait_status)
    return (exit_code, pidfd not in events, wall, started, oom_killed, cpu), test_mounts


def _probe(namespaces: tuple[int, int] | None) -> bytes:
    """b"ok" if a test child can get its namespaces here, else why not."""
    if namespaces is None:
        return b"ok"
    try:
        pid, test_mounts = _fork_test(namespaces)
        if pid == 0:
            try:
                _enter_test_namespaces()
                os._exit(0)
            except OSError as exc:
                os._exit(exc.errno or 1)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os.close(test_mounts)
    except OSError as exc:
        status = exc.errno or 1
    return b"ok" if status == 0 else f"no namespaces per test ({os.strerror(status)})".encode()


def _runner(sock: socket.socket) -> None:
    """The runner, never returns: fork a test child for each test it is sent, answer how it ended.

    It first tells the server whether a test child can get its namespaces (b"ok", or why not).
    """
    global _WORK_REAL
    try:
        KERNEL.set_name("m2rl-runner")
        KERNEL.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.signal(
            signal.SIGINT, signal.SIG_IGN
        )  # not interruptible by a program (same uid, unprivileged)
        os.environ.clear()
        os.environ.update({"PATH": SAFE_PATH, "HOME": _WORK, "TMPDIR": _WORK, "LANG": "C.UTF-8"})
        tempfile.tempdir = _WORK
        _WORK_REAL = os.path.realpath(_WORK)
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
        if _CGROUP is not None:
            _CGROUP.join()
        _raise_oom_score()
        if _NAMESPACES:
            namespaces = (
                os.open("/proc/self/ns/pid", os.O_RDONLY),
                os.open("/proc/self/ns/mnt", os.O_RDONLY),
            )
        else:
            namespaces = None
            KERNEL.prctl(PR_SET_CHILD_SUBREAPER, 1)  # whatever a program forks is re-parented here
        sock.send(_probe(namespaces))
        while (message := _receive(sock)) is not None:
            limits = RunLimits(*TEST.unpack(message[1])[1:])
            result, test_mounts = _run_test(sock, limits, message[2], namespaces)
            _send(sock, RESULT, (KIND_RESULT, *result))
            if test_mounts is not None:
                os.close(test_mounts)  # the test's mounts go now, while the server reads the answer
    except BaseException:
        pass
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# the server: the judge
class RunnerFailed(Exception):
    """The runner died, overran or broke the protocol: the server must end (a new runner would be
    forked from a server that has read requests)."""


class Runner:
    """The server's runner, seen from the server."""

    def __init__(self) -> None:
        """Fork it (PID 1 of a new PID namespace when isolated); OSError if its test children cannot start."""
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if _NAMESPACES:
            KERNEL.unshare(CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            self.sock.close()
            # nothing else of the server's (its pipes to the client least of all) but the test cgroup
            keep = sorted([theirs.fileno(), *(_CGROUP.fds if _CGROUP is not None else [])])
            for low, high in zip([2, *keep], [*keep, 1 << 20], strict=True):
                os.closerange(low + 1, high)
            _runner(theirs)
        theirs.close()
        self.pid = pid
        ready = self.sock.recv(256) if select.select([self.sock], [], [], 30.0)[0] else b""
        if ready != b"ok":
            self.sock.close()
            raise OSError(ready.decode(errors="replace") or "the sandbox runner did not start")

    def run_test(self, limits: RunLimits, program: int, stdin: str) -> dict:
        """Run the program (a sealed memfd) on one input; the run's status and output."""
        fds = [_memfd("stdin", stdin.encode("utf-8", "surrogatepass"), seal=True), _memfd("stdout")]
        fds.append(_memfd("stderr"))
        try:
            _send(self.sock, TEST, (KIND_TEST, *limits), [program, *fds])
            exit_code, timed_out, wall, started, oom_killed, cpu = self._result(
                limits.wall_limit + RUNNER_MARGIN_S
            )
            size = os.fstat(fds[1]).st_size
            stdout = os.pread(fds[1], min(size, limits.output_limit), 0)
            stderr_size = os.fstat(fds[2]).st_size
            stderr = os.pread(fds[2], 4096, max(0, stderr_size - 4096))
        except OSError as exc:
            raise RunnerFailed(f"the sandbox runner failed: {exc}") from None
        finally:
            for fd in fds:
                os.close(fd)
        status = run_status(
            limits, exit_code, timed_out, size >= limits.output_limit, started, oom_killed, cpu
        )
        return {
            "status": status,
            "exit_code": exit_code,
            "stdout": stdout.decode("utf-8", "replace"),
            "stderr": stderr.decode("utf-8", "replace")[-1000:],
            "wall_s": wall,
        }

    def _result(self, within_s: float) -> tuple[int, bool, float, bool, bool, float]:
        if not select.select([self.sock], [], [], within_s)[0]:
            raise RunnerFailed(f"the sandbox runner gave no result within {within_s:g}s")
        try:
            message = _receive(self.sock)
        except (OSError, ValueError) as exc:
            raise RunnerFailed(f"the sandbox runner broke the protocol: {exc}") from None
        if message is None or message[0] != KIND_RESULT:
            raise RunnerFailed("the sandbox runner died")
        _, exit_code, timed_out, wall, started, oom_killed, cpu = RESULT.unpack(message[1])
        return exit_code, bool(timed_out), wall, bool(started), bool(oom_killed), cpu


def run_status(
    limits: RunLimits,
    exit_code: int,
    timed_out: bool,
    output_full: bool,
    started: bool,
    oom_killed: bool,
    cpu: float,
) -> str:
    """How a test ended, by what stopped it: the sandbox's own failure ("sandbox_error") only when the
    program never started; a kill is "timeout" when its CPU or wall time ran out, "memory_limit" when
    the OOM killer took it, else the signal ("signal"); any other exit status is the program's."""
    if timed_out:
        return "timeout"
    if output_full:
        return "output_limit"
    if not started:
        return "sandbox_error"
    if oom_killed:
        return "memory_limit"
    if exit_code < 0:
        cpu_out = -exit_code == signal.SIGXCPU or (-exit_code == signal.SIGKILL and cpu >= limits.time_limit)
        return "timeout" if cpu_out else "signal"
    return "error" if exit_code else "ok"


def _memfd(name: str, data: bytes = b"", seal: bool = False) -> int:
    """An anonymous in-memory file holding `data`, at offset 0; sealed read-only when asked."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    if seal:
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def run_item(runner: Runner, req: dict) -> dict:
    """Run a program's tests in order, stopping at the first failed test when expected outputs are given."""
    limits = RunLimits.of(req)
    program = _memfd("program", req["code"].encode("utf-8", "surrogatepass"), seal=True)
    try:
        runs = []
        for number, stdin in enumerate(req["stdins"]):
            runs.append(runner.run_test(limits, program, stdin))
            expected = req["expected"]
            if expected is not None and not unit_test_passed(
                runs[-1]["status"], runs[-1]["stdout"], expected[number]
            ):
                break  # the program failed: its remaining tests cannot change the verdict
        return {"runs": runs}
    finally:
        os.close(program)


def serve(isolated: bool, packages: list[str], memory_budget_mb: int | None) -> None:
    """Answer program requests on stdin/stdout until the client closes the pipe.

    A server that cannot set up what was asked (isolated: a layer the kernel refuses) says why in
    its hello and ends; so does one whose runner fails. `packages` are what programs may import
    besides the standard library; `memory_budget_mb` is what one test may hold at most.
    """
    global KERNEL
    in_fd, out_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    KERNEL = Kernel()
    KERNEL.set_name("m2rl-sandbox")
    _remove_stale_dirs()
    hello = {"pid": os.getpid(), "isolation": ISOLATION, "sandboxed": isolated, "problem": None}
    try:
        _setup_kernel_state(required=isolated)
        _setup_memory(memory_budget_mb)  # before the new root: the cgroup file system is not in it
        _setup_isolated(packages) if isolated else _setup_unsandboxed()
        _setup_uid(required=isolated)
        KERNEL.prctl(PR_SET_DUMPABLE, 0)
        KERNEL.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # Programs must not reach ctypes through sys.modules; the hook refuses a fresh import.
        for name in ("ctypes", "_ctypes", "ctypes._endian"):
            sys.modules.pop(name, None)
        _preload()
        gc.collect()
        gc.freeze()  # keep the collector from touching (and copying) the runner's pages in every child
        runner = Runner()  # before the first request: nothing of any request is ever in its memory
    except OSError as exc:  # a server that cannot run programs as asked says why and ends
        if _CGROUP is not None:
            _CGROUP.remove()
        send_frame(out_fd, hello | {"sandboxed": False, "problem": exc.strerror or str(exc)})
        return
    try:
        send_frame(out_fd, hello)
        while (req := recv_frame(in_fd)) is not None:
            try:
                reply = run_item(runner, _checked_request(req))
            except ValueError as exc:
                reply = {"error": f"malformed request: {exc}"}
            send_frame(out_fd, reply)
    except (RunnerFailed, ValueError) as exc:
        send_frame(out_fd, {"error": str(exc), "ended": True})
    finally:
        runner.sock.close()
        if not _NAMESPACES:
            shutil.rmtree(os.path.dirname(_WORK), ignore_errors=True)
        if _CGROUP is not None:  # empty once the runner is gone (PR_SET_PDEATHSIG or its socket closed)
            _remove_cgroup_after(runner_pid=runner.pid)


def _remove_cgroup_after(runner_pid: int) -> None:
    try:
        os.waitpid(runner_pid, 0)
    except ChildProcessError:
        pass
    assert _CGROUP is not None
    _CGROUP.remove()


def main(argv: list[str]) -> None:
    """`forkserver.py [--unsandboxed] [--package NAME]... [--memory-budget-mb N]`."""
    parser = argparse.ArgumentParser(prog="forkserver.py")
    parser.add_argument("--unsandboxed", action="store_true")
    parser.add_argument("--package", action="append", default=[])
    parser.add_argument("--memory-budget-mb", type=int, default=None)
    args = parser.parse_args(argv)
    serve(not args.unsandboxed, args.package, args.memory_budget_mb)


if __name__ == "__main__":
    main(sys.argv[1:])
