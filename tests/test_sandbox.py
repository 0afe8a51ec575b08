"""The code sandbox: normal semantics, and hostile programs that must get 0 and leave the host alone."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from m2rl.verifiers.sandbox import Limits, LocalSandbox

LIMITS = Limits(time_limit_s=1.0, memory_mb=256, output_limit_bytes=1 << 20, max_processes=8)
IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def sandbox():
    box = LocalSandbox()
    yield box
    box.close()


def run(sandbox: LocalSandbox, code: str, stdin: str = ""):
    return sandbox.run(textwrap.dedent(code), stdin, LIMITS)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return children + [d for child in children for d in descendants(child)]


def server_descendants(sandbox: LocalSandbox) -> list[int]:
    """After a run only the server's runner may be left below it."""
    return descendants(sandbox.server_pid)


def assert_still_healthy(sandbox: LocalSandbox) -> None:
    start = time.monotonic()
    result = run(sandbox, "print(int(input()) + 1)", "41\n")
    assert (result.status, result.stdout) == ("ok", "42\n")
    assert time.monotonic() - start < 2.0


# ---------------------------------------------------------------------------------------------
# normal programs
def test_program_reads_stdin_and_writes_stdout(sandbox):
    result = run(
        sandbox, "import sys\ndata = sys.stdin.read().split()\nprint(sum(map(int, data)))", "1 2 3\n" * 1000
    )
    assert result.status == "ok" and result.stdout == "6000\n" and result.exit_code == 0


def test_exit_status_decides_success_and_stderr_is_kept_apart(sandbox):
    assert run(sandbox, "import sys\nprint(1)\nsys.exit(0)").status == "ok"
    assert run(sandbox, "import sys\nsys.exit(3)").exit_code == 3
    failed = run(sandbox, "print('out')\nraise ValueError('boom')")
    assert failed.status == "error" and failed.stdout == "out\n" and "ValueError: boom" in failed.stderr


def test_program_runs_as_main_with_threads_and_a_writable_working_directory(sandbox):
    code = """
        import threading
        def main():
            open("scratch.txt", "w").write("kept")
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


def test_working_directory_is_fresh_and_removed_afterwards(sandbox):
    first = run(
        sandbox, "import os\nprint(os.getcwd(), os.listdir('.'))\nopen('left-behind', 'w').write('x')"
    )
    second = run(sandbox, "import os\nprint(os.getcwd(), os.listdir('.'))")
    cwd_first, listing = first.stdout.split(" ", 1)
    # the same path each time (HOME and TMPDIR point to it), but made anew: the file is gone
    assert listing.strip() == "[]" and second.stdout.split(" ", 1)[1].strip() == "[]"
    root = f"/proc/{sandbox.server_pid}/root" if IS_ROOT else ""
    assert not os.path.exists(root + cwd_first)


def test_isolation_report_says_what_is_active(sandbox):
    run(sandbox, "pass")
    assert set(sandbox.isolation) >= {"user", "network"}
    if IS_ROOT:
        assert sandbox.isolation["network"] == "namespace"


# ---------------------------------------------------------------------------------------------
# hostile programs
def test_infinite_loop_is_stopped_at_the_time_limit(sandbox):
    start = time.monotonic()
    result = run(sandbox, "while True:\n    pass")
    assert result.status == "timeout"
    assert time.monotonic() - start < LIMITS.wall_limit_s + 2
    assert_still_healthy(sandbox)


def test_sleeping_program_is_stopped_by_the_wall_clock(sandbox):
    result = run(sandbox, "import time\ntime.sleep(60)")
    assert result.status == "timeout" and result.wall_s < LIMITS.wall_limit_s + 1


def test_fork_storm_is_contained_and_leaves_no_process_behind(sandbox):
    code = """
        import os
        started = 0
        for _ in range(10_000):
            try:
                if os.fork() == 0:
                    while True:
                        pass
                started += 1
            except Exception:
                pass
        print(started)
    """
    result = run(sandbox, code)
    assert int(result.stdout.strip() or 0) < LIMITS.max_processes
    assert_still_healthy(sandbox)  # served after the clean-up of the storm's run
    assert len(server_descendants(sandbox)) <= 1  # the runner, none of the storm's processes


def test_fork_storm_without_error_handling_scores_as_failure(sandbox):
    result = run(sandbox, "import os\nwhile True:\n    os.fork()")
    assert result.status != "ok"
    assert_still_healthy(sandbox)


def test_memory_hog_fails_without_hurting_the_host(sandbox):
    result = run(sandbox, "blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))")
    assert result.status == "error" and "MemoryError" in result.stderr
    assert_still_healthy(sandbox)


def test_huge_output_is_capped(sandbox):
    result = run(sandbox, "import sys\nsys.stdout.write('x' * 50_000_000)")
    assert result.status == "output_limit"
    assert len(result.stdout) <= LIMITS.output_limit_bytes
    assert_still_healthy(sandbox)


def test_network_connections_fail(sandbox):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = f"""
        import socket
        s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
        s.sendall(b"leak")
        print("connected")
    """
    try:
        result = run(sandbox, code)
        assert result.status != "ok" and "connected" not in result.stdout
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


def test_writing_outside_the_working_directory_fails(sandbox, tmp_path):
    target_dir = tmp_path / "open"
    target_dir.mkdir()
    target_dir.chmod(0o777)  # writable by anyone: only the sandbox can stop this write
    target = target_dir / "pwned"
    code = f"""
        import os
        for path in [{str(target)!r}, "/tmp/m2rl-pwned", os.path.expanduser("~/../pwned")]:
            try:
                with open(path, "w") as f:
                    f.write("x")
                print("wrote", path)
            except OSError as exc:
                print("refused", path)
    """
    result = run(sandbox, code)
    assert "wrote" not in result.stdout
    assert not target.exists() and not os.path.exists("/tmp/m2rl-pwned")


def test_program_cannot_read_the_parents_environment(sandbox, monkeypatch):
    monkeypatch.setenv("M2RL_TEST_SECRET", "hunter2-secret")
    code = f"""
        import os
        found = [v for v in os.environ.values()]
        for pid in ["self", str(os.getppid()), "{os.getpid()}", "1"]:
            try:
                found.append(open(f"/proc/{{pid}}/environ", "rb").read().decode(errors="replace"))
            except OSError:
                pass
        print(" ".join(found))
    """
    result = run(sandbox, code)
    assert "hunter2-secret" not in result.stdout


def test_program_cannot_kill_its_parent_or_the_host(sandbox):
    server_pid = sandbox.server_pid
    code = f"""
        import os, signal
        for pid in [os.getppid(), {os.getpid()}, {server_pid}]:
            try:
                os.kill(pid, signal.SIGKILL)
            except Exception:
                pass
        try:
            os.killpg(os.getpgid({os.getpid()}), signal.SIGKILL)
        except Exception:
            pass
        print("done")
    """
    run(sandbox, code)
    assert sandbox.server_pid == server_pid and os.path.exists(f"/proc/{server_pid}")
    assert_still_healthy(sandbox)


def test_native_escape_hatches_are_refused(sandbox):
    for code in [
        "import ctypes",
        "import _posixsubprocess",
        "import subprocess\nsubprocess.run(['true'])",
        "import os\nos.system('true')",
    ]:
        assert run(sandbox, code).status == "error", code


@pytest.mark.skipif(not IS_ROOT, reason="uid separation needs root")
def test_programs_run_as_an_unprivileged_uid_when_the_server_is_root(sandbox):
    result = run(sandbox, "import os\nprint(os.getuid(), os.getgid())")
    uid, gid = map(int, result.stdout.split())
    if sandbox.isolation["user"].startswith("uid"):
        assert uid != 0 and gid != 0


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


def test_dead_server_is_restarted(sandbox):
    old = sandbox.server_pid
    os.kill(old, 9)
    time.sleep(0.1)
    result = run(sandbox, "print('back')")
    assert result.stdout == "back\n" or result.status == "sandbox_error"
    assert_still_healthy(sandbox)
    assert sandbox.server_pid != old


# ---------------------------------------------------------------------------------------------
# the kernel layer alone (audit hook off): what holds even against native code
@pytest.fixture(scope="module")
def kernel_only():
    if not IS_ROOT:
        pytest.skip("uid separation and namespaces as tested here need root")
    box = LocalSandbox(audit_hook=False)
    box.run("pass", "", LIMITS)
    if not box.isolation["user"].startswith("uid"):
        pytest.skip(f"no uid separation here: {box.isolation['user']}")
    yield box
    box.close()


def test_kernel_limits_fork_storm_by_process_count(kernel_only):
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
    result = run(kernel_only, code)
    assert 0 < int(result.stdout.strip().splitlines()[0]) < LIMITS.max_processes, result
    assert_still_healthy(kernel_only)
    assert len(server_descendants(kernel_only)) <= 1


def test_kernel_blocks_network_even_with_sockets_allowed(kernel_only):
    code = """
        import socket
        try:
            socket.create_connection(("127.0.0.1", 22), timeout=1)
            print("connected")
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
        print(open("/proc/net/dev").read().count(":"))
    """
    result = run(kernel_only, code)
    assert "connected" not in result.stdout
    assert result.stdout.split()[-1] == "1"  # only the loopback interface exists


def test_kernel_blocks_writes_kills_and_environ_reads(kernel_only, tmp_path, monkeypatch):
    monkeypatch.setenv("M2RL_TEST_SECRET", "hunter2-secret")
    target = tmp_path / "pwned"
    code = f"""
        import os, signal
        out = []
        for path in [{str(target)!r}, "/work/pwned", "/root/pwned", "/etc/pwned"]:
            try:
                open(path, "w").write("x")
                out.append("wrote " + path)
            except OSError:
                pass
        for pid in [os.getppid(), {os.getpid()}]:
            try:
                os.kill(pid, signal.SIGKILL)
                out.append("killed")
            except OSError:
                pass
            try:
                out.append(open(f"/proc/{{pid}}/environ").read())
            except OSError:
                pass
        print(out)
    """
    result = run(kernel_only, code)
    assert result.stdout.strip() == "[]"
    assert not target.exists() and not os.path.exists("/work/pwned")


# ---------------------------------------------------------------------------------------------
# The server started by a user who is not root (the usual case off a container), simulated as
# root: in a private mount namespace that exposes the Python installation (as the server does
# for its sandbox uid; /tmp stays shared, the repository may live there), the server is started
# as `nobody` and takes its unprivileged branch.
NOBODY = 65534
REPO = Path(__file__).resolve().parents[1]


def _start_as_nobody() -> None:
    """preexec_fn: a private mount namespace where `nobody` can run Python, then become `nobody`."""
    import ctypes

    from m2rl.verifiers import forkserver

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(forkserver.CLONE_NEWNS) != 0 or not forkserver._expose_python(libc):
        os._exit(3)
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.fixture(scope="module")
def unprivileged():
    if not IS_ROOT:
        pytest.skip("simulating a non-root server needs root; as non-root every test above is that case")
    real_popen = subprocess.Popen

    def popen_as_nobody(*args, **kwargs):
        return real_popen(*args, **{**kwargs, "preexec_fn": _start_as_nobody})

    box = LocalSandbox()
    subprocess.Popen = popen_as_nobody  # type: ignore[misc] - only for this server's start
    try:
        started = box.run("pass", "", LIMITS)
    finally:
        subprocess.Popen = real_popen  # type: ignore[misc]
    assert started.status == "ok", started.stderr
    with open(f"/proc/{box.server_pid}/status") as f:
        assert any(line.split()[:2] == ["Uid:", str(NOBODY)] for line in f)
    yield box
    box.close()


def test_unprivileged_server_reports_its_isolation_and_runs_programs(unprivileged):
    assert unprivileged.isolation["user"].startswith("same-uid")
    assert unprivileged.isolation["network"] in ("namespace", "audit-hook")
    assert run(unprivileged, "import os\nprint(os.getuid())").stdout.strip() == str(NOBODY)
    assert_still_healthy(unprivileged)


def test_unprivileged_server_contains_hostile_programs(unprivileged, monkeypatch):
    monkeypatch.setenv("M2RL_TEST_SECRET", "hunter2-secret")  # in this process, not the server's
    target_dir = Path(tempfile.mkdtemp(dir=REPO, prefix=".sandbox-target-"))
    try:
        target_dir.chmod(0o777)  # writable by nobody: only the sandbox can stop this write
        code = f"""
            import os, signal, socket
            print("visible", os.path.isdir({str(target_dir)!r}))
            try:
                open({str(target_dir / "pwned")!r}, "w").write("x")
                print("wrote")
            except OSError:
                pass
            try:
                socket.create_connection(("127.0.0.1", 9), timeout=1)
                print("connected")
            except OSError:
                pass
            for pid in (os.getppid(), {unprivileged.server_pid}, {os.getpid()}):
                try:
                    os.kill(pid, signal.SIGKILL)
                    print("killed", pid)
                except Exception:
                    pass
            print(" ".join(os.environ.values()))
        """
        result = run(unprivileged, code)
        assert "visible True" in result.stdout  # the write below was possible but refused
        assert "wrote" not in result.stdout and not (target_dir / "pwned").exists()
        assert "connected" not in result.stdout and "killed" not in result.stdout
        assert "hunter2-secret" not in result.stdout
        storm = run(unprivileged, "import os\nwhile True:\n    os.fork()")
        assert storm.status != "ok"
        assert_still_healthy(unprivileged)
        assert len(server_descendants(unprivileged)) <= 1
    finally:
        shutil.rmtree(target_dir, ignore_errors=True)


def test_run_tests_stops_at_the_first_failed_test_and_compiles_errors_as_python_does(sandbox):
    doubler = "print(int(input()) * 2)"
    runs = sandbox.run_tests(doubler, ["1\n", "2\n", "3\n"], LIMITS, ["2", "5", "6"])
    assert [r.stdout.strip() for r in runs] == ["2", "4"]  # the third test is not run
    assert len(sandbox.run_tests(doubler, ["1\n", "2\n", "3\n"], LIMITS)) == 3  # no expected: all
    broken = sandbox.run_tests("print(", ["1\n"], LIMITS, ["1"])
    assert broken[0].status == "error" and "SyntaxError" in broken[0].stderr


def test_a_runner_killed_from_outside_is_replaced_before_the_next_program(sandbox):
    (runner,) = descendants(sandbox.server_pid)
    os.kill(runner, 9)
    time.sleep(0.1)
    assert_still_healthy(sandbox)
    assert descendants(sandbox.server_pid) != [runner]
