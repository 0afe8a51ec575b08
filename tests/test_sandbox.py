"""The code sandbox: normal semantics, limits, and hostile programs that get nothing and leave the host alone.

The attacks run in both modes: as root (the sandbox uid) and unprivileged (a server started as
`nobody`, in a user namespace). Each hostile program first switches the audit hook off from inside,
so what holds is the kernel's isolation alone.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import platform
import shutil
import socket
import struct
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from m2rl.errors import UserError
from m2rl.verifiers import forkserver
from m2rl.verifiers.sandbox import Limits, LocalSandbox, passed

from sandbox_helpers import (
    HOOK_OFF,
    IS_ROOT,
    LIMITS,
    NOBODY,
    assert_still_healthy,
    descendants,
    hostile,
    processes_named,
    program_uid,
    run,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# normal programs
def test_program_reads_stdin_and_writes_stdout(sandbox):
    result = run(
        sandbox, "import sys\ndata = sys.stdin.read().split()\nprint(sum(map(int, data)))", "1 2 3\n" * 1000
    )
    assert result.status == "ok" and result.stdout == "6000\n" and result.exit_code == 0


def test_stdin_is_also_reachable_by_name_and_devices_work(sandbox):
    code = """
        print(open("/dev/stdin").read().strip(), open(0).read().strip())
        open("/dev/null", "w").write("x")
        print(len(open("/dev/urandom", "rb").read(8)))
    """
    assert run(sandbox, code, "hello\n").stdout == "hello hello\n8\n"


def test_exit_status_decides_success_and_stderr_is_kept_apart(sandbox):
    assert run(sandbox, "import sys\nprint(1)\nsys.exit(0)").status == "ok"
    assert run(sandbox, "import sys\nsys.exit(3)").exit_code == 3
    failed = run(sandbox, "print('out')\nraise ValueError('boom')")
    assert failed.status == "error" and failed.stdout == "out\n" and "ValueError: boom" in failed.stderr


def test_program_runs_as_main_with_threads_and_a_writable_working_directory(sandbox):
    code = """
        import tempfile, threading
        def main():
            open("scratch.txt", "w").write("kept")
            with tempfile.NamedTemporaryFile("w") as f:
                f.write("x")
            print(open("scratch.txt").read(), __name__)
        if __name__ == "__main__":
            t = threading.Thread(target=main)
            t.start()
    """
    assert run(sandbox, code).stdout == "kept __main__\n"


def test_environment_is_scrubbed(sandbox, monkeypatch):
    monkeypatch.setenv("M2RL_TEST_SECRET", "hunter2")
    result = run(sandbox, "import os\nprint(sorted(os.environ))")
    assert result.stdout.strip() == "['HOME', 'LANG', 'PATH', 'TMPDIR']"


def test_each_test_gets_a_fresh_empty_working_directory(sandbox):
    first = run(
        sandbox, "import os\nprint(os.getcwd(), os.listdir('.'))\nopen('left-behind', 'w').write('x')"
    )
    second = run(sandbox, "import os\nprint(os.getcwd(), os.listdir('.'))")
    assert first.stdout == second.stdout == "/tmp []\n"


def test_isolation_report_says_what_is_active(sandbox):
    assert set(sandbox.isolation) >= {"user", "network", "filesystem", "processes"}
    assert sandbox.problem is None
    assert sandbox.isolation["network"] == "namespace"
    assert sandbox.isolation["processes"] == "PID and IPC namespaces per test"


def test_run_tests_stops_at_the_first_failed_test_and_compiles_errors_as_python_does(sandbox):
    doubler = "print(int(input()) * 2)"
    runs = sandbox.run_tests(doubler, ["1\n", "2\n", "3\n"], LIMITS, ["2", "5", "6"])
    assert [r.stdout.strip() for r in runs] == ["2", "4"]  # the third test is not run
    assert len(sandbox.run_tests(doubler, ["1\n", "2\n", "3\n"], LIMITS)) == 3  # no expected: all
    broken = sandbox.run_tests("print(", ["1\n"], LIMITS, ["1"])
    assert broken[0].status == "error" and "SyntaxError" in broken[0].stderr


def test_concurrent_clients_are_serialised_safely(sandbox):
    results: list[str] = []

    def worker(n: int) -> None:
        results.append(run(sandbox, "print(int(input()) * 3)", f"{n}\n").stdout.strip())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=int) == [str(3 * n) for n in range(6)]


def test_processes_are_named_after_their_role(sandbox):
    assert Path(f"/proc/{sandbox.server_pid}/comm").read_text().strip() == "m2rl-sandbox"
    (runner,) = descendants(sandbox.server_pid)
    assert Path(f"/proc/{runner}/comm").read_text().strip() == "m2rl-runner"
    assert run(sandbox, "print(open('/proc/self/comm').read().strip())").stdout == "m2rl-test\n"


# ---------------------------------------------------------------------------------------------
# limits
def test_infinite_loop_is_stopped_at_the_time_limit(sandbox):
    start = time.monotonic()
    result = run(sandbox, "while True:\n    pass")
    assert result.status == "timeout"
    assert time.monotonic() - start < LIMITS.wall_limit_s + 2
    assert_still_healthy(sandbox)


def test_sleeping_program_is_stopped_by_the_wall_clock(sandbox):
    result = run(sandbox, "import time\ntime.sleep(60)")
    assert result.status == "timeout" and result.wall_s < LIMITS.wall_limit_s + 1


def test_memory_hog_fails_without_hurting_the_host(sandbox):
    result = run(sandbox, "blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))")
    assert result.status == "error" and "MemoryError" in result.stderr
    assert_still_healthy(sandbox)


def test_huge_output_is_capped(sandbox):
    result = run(sandbox, "import sys\nsys.stdout.write('x' * 50_000_000)")
    assert result.status == "output_limit"
    assert len(result.stdout) <= LIMITS.output_limit_bytes
    assert_still_healthy(sandbox)


def test_tmp_is_size_capped(sandbox):
    code = """
        import os
        written = 0
        try:
            for n in range(200):
                with open(f"/tmp/fill{n}", "wb") as f:
                    f.write(b"x" * (1 << 20))
                written += 1
        except OSError as exc:
            print(written, exc.errno)
    """
    big = Limits(time_limit_s=5.0, memory_mb=256, output_limit_bytes=2 << 20, max_processes=8)
    written, errno = map(int, run(sandbox, code, limits=big).stdout.split())
    assert written < 70 and errno == 28  # ENOSPC at the tmpfs' 64 MB


def test_fork_storm_is_contained_by_the_process_limit(box):
    code = """
        import os
        started = 0
        for _ in range(1000):
            try:
                if os.fork() == 0:
                    __import__("time").sleep(30)
                started += 1
            except OSError:
                pass
        print(started)
    """
    result = hostile(box, code)
    assert 0 < int(result.stdout.split()[-1]) < LIMITS.max_processes, result
    assert_still_healthy(box)
    assert len(descendants(box.server_pid)) == 1  # the runner, none of the storm's processes


# ---------------------------------------------------------------------------------------------
# attacks, in both modes, with the audit hook switched off from inside
def test_the_audit_hook_can_be_switched_off_from_inside_and_isolation_still_holds(box):
    code = """
        import ctypes, os, socket
        libc = ctypes.CDLL(None)
        print("getpid", libc.getpid(), os.getpid())
        try:
            socket.create_connection(("127.0.0.1", 22), timeout=1)
            print("connected")
        except OSError:
            print("no network")
        print(open("/proc/self/net/dev").read().count(":"))  # interfaces: the loopback only
    """
    lines = hostile(box, code).stdout.split("\n")
    assert lines[1] == "getpid 1 1"  # PID 1 of its own namespace
    assert lines[2:4] == ["no network", "1"]


def test_programs_run_as_the_sandbox_uid_without_any_capability(box):
    code = """
        import os
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        keys = ("CapEff", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs")
        print(os.getuid(), *(status[key].strip() for key in keys))
    """
    uid, *capabilities = hostile(box, code).stdout.split()[1:]
    assert int(uid) == program_uid(box) and (int(uid) != 0 or not IS_ROOT)
    assert capabilities == ["0000000000000000"] * 4 + ["1"]


def test_expected_outputs_and_other_inputs_are_nowhere_a_program_can_read(box, monkeypatch):
    secret = f"M2RLSECRET-{uuid.uuid4().hex}"  # an expected output no program could guess
    other_input = f"M2RLINPUT-{uuid.uuid4().hex}"
    monkeypatch.setenv("M2RL_TEST_SECRET", secret)  # in this process's environment too
    code = """
        import gc, os, re, sys
        pattern = re.compile(rb"M2RL(?:SECRET|INPUT)-[0-9a-f]{32}")
        found, seen = set(), set()
        def scan(data):
            if isinstance(data, str):
                data = data.encode("utf-8", "replace")
            if isinstance(data, (bytes, bytearray)):
                found.update(m.decode() for m in pattern.findall(data))
        frame = sys._getframe()
        while frame is not None:  # every frame's locals and globals
            for space in (frame.f_locals, frame.f_globals):
                for value in list(space.values()):
                    scan(value if isinstance(value, (str, bytes)) else repr(value)[:10000])
            frame = frame.f_back
        for obj in gc.get_objects():  # every object the collector knows, and what they hold
            if isinstance(obj, (dict, list, tuple)):
                for item in obj.values() if isinstance(obj, dict) else obj:
                    scan(item)
        def scan_memory(pid):
            try:
                maps = open(f"/proc/{pid}/maps").read().splitlines()
                mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
            except OSError:
                return
            for line in maps:
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                if line.split()[1].startswith("r") and end - start < 1 << 30:
                    try:
                        scan(os.pread(mem, end - start, start))
                    except OSError:
                        pass
            os.close(mem)
        pids = [p for p in os.listdir("/proc") if p.isdigit()] + ["self", str(os.getppid())]
        for pid in pids:
            scan_memory(pid)
            for name in ("environ", "cmdline"):
                try:
                    scan(open(f"/proc/{pid}/{name}", "rb").read())
                except OSError:
                    pass
        print("pids", sorted(pids))
        print(" ".join(sorted(found)) or "nothing")
    """
    runs = box.run_tests(HOOK_OFF + textwrap.dedent(code), ["1\n", other_input], LIMITS, [secret, secret])
    assert runs[0].stdout.startswith("HOOK-OFF"), runs[0]
    assert runs[0].stdout.splitlines()[1] == "pids ['0', '1', 'self']"  # alone in its namespace
    assert runs[0].stdout.splitlines()[-1] == "nothing"
    assert not passed(runs[0], secret) and len(runs) == 1


def test_a_program_cannot_kill_a_sibling_the_server_or_the_runner(box):
    sibling = subprocess.Popen(
        ["sleep", "60"], preexec_fn=lambda: os.setuid(program_uid(box)) if IS_ROOT else None
    )
    (runner,) = descendants(box.server_pid)
    try:
        code = f"""
            import os, signal
            targets = [{sibling.pid}, {box.server_pid}, {runner}, {os.getpid()}, 1, -1]
            targets += [int(p) for p in os.listdir("/proc") if p.isdigit()]
            for pid in targets:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            print("survived")
        """
        hostile(box, code)
        time.sleep(0.2)
        assert sibling.poll() is None  # still running
        assert descendants(box.server_pid) == [runner]
        assert_still_healthy(box)
    finally:
        sibling.kill()
        sibling.wait()


def test_a_program_cannot_write_outside_its_tmp(box):
    target_dir = Path(tempfile.mkdtemp(dir=REPO, prefix=".sandbox-target-"))
    host_tmp = Path(tempfile.gettempdir()) / f"m2rl-pwned-{uuid.uuid4().hex}"
    try:
        target_dir.chmod(0o777)  # writable by anyone: only the sandbox can stop this write
        code = f"""
            import os, sys
            open({str(host_tmp)!r}, "w").write("x")  # its own /tmp: allowed, and not the host's
            for path in [{str(target_dir / "pwned")!r}, os.__file__, sys.executable, "/etc/passwd",
                         "/usr/pwned", "/pwned", "/proc/self/pwned", "/dev/pwned"]:
                try:
                    with open(path, "a") as f:
                        f.write("x")
                    print("wrote", path)
                except OSError:
                    pass
            print("done")
        """
        result = hostile(box, code)
        assert "wrote" not in result.stdout and result.stdout.endswith("done\n")
        assert not (target_dir / "pwned").exists() and not host_tmp.exists()
    finally:
        shutil.rmtree(target_dir, ignore_errors=True)


def test_a_program_cannot_inject_frames_into_any_pipe_or_socket(box, tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    forged_pickle = pickle.dumps(Payload())
    forged_json = json.dumps(
        {"runs": [{"status": "ok", "exit_code": 0, "stdout": "42\n", "stderr": "", "wall_s": 0.0}]}
    )
    code = f"""
        import os, socket, struct
        frames = [struct.pack(">Q", {len(forged_pickle)}) + {forged_pickle!r},
                  struct.pack(">I", {len(forged_json)}) + {forged_json.encode()!r}]
        opened = []
        pids = [p for p in os.listdir("/proc") if p.isdigit()] + ["{box.server_pid}", str(os.getppid())]
        for pid in [p for p in pids if p != str(os.getpid())]:
            try:
                fds = os.listdir(f"/proc/{{pid}}/fd")
            except OSError:
                continue
            for fd in fds:
                path = f"/proc/{{pid}}/fd/{{fd}}"
                try:
                    out = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                opened.append(os.readlink(path))
                for frame in frames:
                    try:
                        os.write(out, frame)
                    except OSError:
                        pass
                os.close(out)
        for family in (socket.AF_UNIX,):
            for name in ("\\0m2rl", "/tmp/m2rl.sock"):
                try:
                    socket.socket(family, socket.SOCK_STREAM).connect(name)
                    opened.append(name)
                except OSError:
                    pass
        print(sorted(opened))
    """
    assert hostile(box, code).stdout.splitlines()[-1] == "[]"  # nothing it could open
    assert not marker.exists()
    runs = box.run_tests("print(int(input()) * 2)", ["3\n"], LIMITS, ["7"])  # a forged "42" cannot pass
    assert [r.stdout for r in runs] == ["6\n"] and not passed(runs[0], "7")


def test_no_process_a_program_starts_outlives_its_test(box):
    code = """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:  # a daemon: double fork, new session
                open("/proc/self/comm", "w").write("m2rl-daemon")
                time.sleep(30)
            os._exit(0)
        if os.fork() == 0:
            time.sleep(30)  # a plain child left running
        time.sleep(0.2)
        print("started")
    """
    assert hostile(box, code).stdout.endswith("started\n")
    assert len(descendants(box.server_pid)) == 1  # the runner only
    assert processes_named("m2rl-daemon") == [] and processes_named("m2rl-test") == []
    assert_still_healthy(box)


def test_nothing_persists_between_tests_or_items(box):
    code = """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        print(os.listdir("/tmp"), os.listdir("."), libc.shmget(0x5EC, 4096, 0))  # what an earlier test left
        for path in ["/tmp/x", "/dev/shm/y", "/var/tmp/z", "w", os.path.expanduser("~/v")]:
            open(path, "w").write("left")
        print(libc.shmget(0x5EC, 4096, 0o1666) >= 0)  # IPC_CREAT, readable by anyone
    """
    runs = box.run_tests(HOOK_OFF + textwrap.dedent(code), ["", ""], LIMITS)
    assert [r.stdout.splitlines()[1:] for r in runs] == [["[] [] -1", "True"]] * 2
    assert hostile(box, code).stdout.splitlines()[1] == "[] [] -1"  # nor between items


def test_server_and_runner_are_not_readable_by_a_process_of_the_same_uid(unprivileged):
    (runner,) = descendants(unprivileged.server_pid)
    for pid in (unprivileged.server_pid, runner):
        for command in (
            ["cat", f"/proc/{pid}/environ"],
            ["cat", f"/proc/{pid}/mem"],
            ["ls", f"/proc/{pid}/fd"],
        ):
            done = subprocess.run(
                command, preexec_fn=lambda: os.setuid(NOBODY), capture_output=True, timeout=30
            )
            assert done.returncode != 0 and b"denied" in done.stderr, (command, done)


# ---------------------------------------------------------------------------------------------
# the server's life
def test_dead_server_is_restarted(sandbox):
    old = sandbox.server_pid
    os.kill(old, 9)
    time.sleep(0.1)
    result = run(sandbox, "print('back')")
    assert result.stdout == "back\n" or result.status == "sandbox_error"
    assert_still_healthy(sandbox)
    assert sandbox.server_pid != old


def test_a_runner_killed_from_outside_ends_its_server_and_the_next_program_gets_a_new_one(sandbox):
    old = sandbox.server_pid
    (runner,) = descendants(old)
    os.kill(runner, 9)
    time.sleep(0.1)
    assert run(sandbox, "print(1)").status == "sandbox_error"  # a new runner could see old requests
    assert_still_healthy(sandbox)
    assert sandbox.server_pid != old


def test_stale_sandbox_directories_are_removed_when_a_server_starts():
    base = Path(tempfile.gettempdir())
    dead = base / f"m2rl-sandbox-{2**22 + 12345}-{uuid.uuid4().hex[:8]}"  # above pid_max: never alive
    live = base / f"m2rl-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    legacy = base / f"m2rl-sandbox-{uuid.uuid4().hex[:8]}"  # a server from before pid tags
    for path in (dead, live, legacy):
        (path / "work").mkdir(parents=True)
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    box = LocalSandbox()
    try:
        box.start()
        assert not dead.exists() and not legacy.exists() and live.exists()
    finally:
        box.close()
        for path in (dead, live, legacy):
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# where the kernel gives no namespaces (a container's seccomp filter, simulated)
def _deny_unshare() -> None:
    """preexec_fn: a seccomp filter that fails unshare(2) with EPERM, as some container runtimes do."""
    libc = ctypes.CDLL(None, use_errno=True)
    ret_allow, ret_eperm = 0x7FFF0000, 0x00050000 | 1
    program = [
        (0x20, 0, 0, 4),  # load the architecture
        (0x15, 1, 0, 0xC000003E),  # x86_64: go on
        (0x06, 0, 0, ret_allow),
        (0x20, 0, 0, 0),  # load the syscall number
        (0x15, 0, 1, 272),  # unshare
        (0x06, 0, 0, ret_eperm),
        (0x06, 0, 0, ret_allow),
    ]
    filters = b"".join(struct.pack("=HBBI", *rule) for rule in program)
    buffer = ctypes.create_string_buffer(filters)
    fprog = struct.pack("=HxxxxxxQ", len(program), ctypes.addressof(buffer))
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) != 0:
        os._exit(3)


@pytest.fixture(scope="module")
def no_namespaces():
    """Starts servers, for the duration of a `with`, where unshare(2) fails."""
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp filter here is written for x86_64")
    real_popen = subprocess.Popen

    class Denied:
        def __enter__(self):
            denied = {"preexec_fn": _deny_unshare}
            subprocess.Popen = lambda *a, **k: real_popen(*a, **(k | denied))  # type: ignore[misc]

        def __exit__(self, *exc):
            subprocess.Popen = real_popen  # type: ignore[misc]

    return Denied()


def test_without_namespaces_programs_are_refused_with_the_setting_that_accepts_the_risk(no_namespaces):
    box = LocalSandbox()
    with no_namespaces, pytest.raises(UserError) as refused:
        box.start()
    message = str(refused.value)
    assert "\n" not in message and "verifiers.code.allow_unsandboxed=true" in message
    assert "Operation not permitted" in message


def test_with_the_risk_accepted_programs_run_without_namespaces(no_namespaces):
    box = LocalSandbox(allow_unsandboxed=True)
    unhooked = LocalSandbox(audit_hook=False, allow_unsandboxed=True)
    try:
        with no_namespaces:
            box.start()
            unhooked.start()
        assert "Operation not permitted" in box.problem and box.isolation["processes"] == "subreaper"
        first = run(box, "import os\nopen('left', 'w').write('x')\nprint(os.listdir('.'))")
        assert first.stdout == "['left']\n"
        assert run(box, "import os\nprint(os.listdir('.'))").stdout == "[]\n"
        daemon = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\nprint('ok')"
        assert run(unhooked, daemon).stdout == "ok\n"
        assert len(descendants(unhooked.server_pid)) == 1  # the subreaper killed the daemon
    finally:
        box.close()
        unhooked.close()


# ---------------------------------------------------------------------------------------------
# frames
def test_frames_are_json_and_a_pickle_is_rejected_not_loaded(tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    reader, writer = os.pipe()
    try:
        forkserver.send_frame(writer, {"runs": [], "text": "\udc80"})
        assert forkserver.recv_frame(reader) == {"runs": [], "text": "\udc80"}
        payload = pickle.dumps(Payload())
        os.write(writer, forkserver.HEADER.pack(len(payload)) + payload)
        with pytest.raises(ValueError):
            forkserver.recv_frame(reader)
        assert not marker.exists()
    finally:
        os.close(reader)
        os.close(writer)


def test_a_malformed_reply_is_a_sandbox_error_not_a_verdict():
    from m2rl.verifiers.sandbox import _executions

    with pytest.raises(ValueError):
        _executions({"runs": [{"status": "ok", "exit_code": 0, "stdout": 42, "stderr": "", "wall_s": 0}]})
    with pytest.raises(ValueError):
        _executions({"runs": [{"status": "passed", "exit_code": 0, "stdout": "", "stderr": "", "wall_s": 0}]})
    assert _executions({"error": "boom"})[0].status == "sandbox_error"


def test_the_server_rejects_a_malformed_request():
    good = {"code": "", "stdins": ["1"], "expected": None, "time_limit": 1, "wall_limit": 2, "memory_mb": 64}
    good |= {"output_limit": 10, "max_processes": 1, "audit_hook": True}
    assert forkserver._checked_request(good) == good
    for bad in ({"code": 1}, {"stdins": "1"}, {"expected": ["1", "2"]}, {"memory_mb": -1}, {"audit_hook": 1}):
        with pytest.raises(ValueError):
            forkserver._checked_request(good | bad)


def test_the_runner_protocol_rejects_unexpected_messages():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        ours.send(b"\x02short")
        with pytest.raises(ValueError):
            forkserver._receive(theirs)
        ours.close()
        assert forkserver._receive(theirs) is None
    finally:
        theirs.close()
