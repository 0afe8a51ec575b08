"""Where untrusted programs run: the local fork-server sandbox, or a SandboxFusion service.

`LocalSandbox` talks to `forkserver.py`, a small pre-warmed interpreter started with a scrubbed
environment (see that module for exactly which isolation is kernel-enforced), in validated JSON
frames. Starting it with `subprocess` (fork+exec) keeps it safe to use from a process that has
torch or CUDA loaded. Where the kernel gives the server no isolation it refuses to run programs
unless `verifiers.code.allow_unsandboxed` accepts the risk.
`FusionSandbox` posts to a SandboxFusion `/run_code` endpoint over plain HTTP (stdlib urllib, so no
client dependency). Both return an `Execution` per run; `run_tests` runs a program's unit tests in
order and stops after the first failure (the local server does this in one round trip).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from m2rl.errors import UserError
from m2rl.verifiers.forkserver import recv_frame, send_frame, unit_test_passed

FORKSERVER = Path(__file__).with_name("forkserver.py")
# LD_BIND_NOW: the dynamic linker resolves every symbol when the server starts, so a test child
# does not write (and so copy) the pages of the symbol tables the first time it calls a function
# the runner never called. The runner clears its environment: it is not in a program's os.environ.
SERVER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LD_BIND_NOW": "1"}
STATUSES = ("ok", "error", "timeout", "memory_limit", "output_limit", "signal", "sandbox_error")


@dataclass(frozen=True)
class Limits:
    """Per-run limits: CPU seconds (wall clock is twice that), address space, output, processes."""

    time_limit_s: float = 10.0
    memory_mb: int = 1024
    output_limit_bytes: int = 16 << 20
    max_processes: int = 16

    @property
    def wall_limit_s(self) -> float:
        """Wall-clock limit of one run."""
        return 2.0 * self.time_limit_s


@dataclass(frozen=True)
class Execution:
    """What one run did: status (one of STATUSES), exit code, stdout, the tail of stderr, seconds."""

    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float


def passed(run: Execution, expected: str) -> bool:
    """A unit test passes iff the program ended normally and its stripped stdout is the expected one."""
    return unit_test_passed(run.status, run.stdout, expected)


class Sandbox(Protocol):
    """Runs a Python program on one stdin, or on several in order."""

    def run(self, code: str, stdin: str, limits: Limits) -> Execution: ...

    def run_tests(
        self, code: str, stdins: list[str], limits: Limits, expected: list[str] | None = None
    ) -> list[Execution]:
        """One Execution per input, in order; with `expected`, none after the first failed test."""
        ...


def refusal(problem: str) -> str:
    """The one line that refuses to run model-written code without isolation."""
    return (
        f"the code sandbox cannot isolate model-written programs on this machine ({problem}); "
        "set verifiers.code.allow_unsandboxed=true to run them anyway, at your own risk"
    )


def _hello(frame: object) -> tuple[int, dict[str, str], str | None]:
    """(server pid, isolation report, problem) of the server's first frame; ValueError if malformed.

    A problem means the server could not set up what it was asked for and has ended.
    """
    if not isinstance(frame, dict) or not isinstance(frame.get("pid"), int):
        raise ValueError("the sandbox fork server sent no valid hello")
    isolation, problem = frame.get("isolation"), frame.get("problem")
    if not isinstance(isolation, dict) or not all(isinstance(v, str) for v in isolation.values()):
        raise ValueError("the sandbox fork server sent no valid isolation report")
    if not isinstance(frame.get("sandboxed"), bool) or not isinstance(problem, (str, type(None))):
        raise ValueError("the sandbox fork server sent no valid isolation verdict")
    return frame["pid"], isolation, problem


def _execution(run: object) -> Execution:
    """One run of a reply frame; ValueError if it is not exactly what the server sends."""
    if not isinstance(run, dict):
        raise ValueError("malformed run in the sandbox server's reply")
    status, exit_code, stdout, stderr, wall_s = (
        run.get(key) for key in ("status", "exit_code", "stdout", "stderr", "wall_s")
    )
    if (
        status not in STATUSES
        or not isinstance(exit_code, (int, type(None)))
        or not isinstance(stdout, str)
        or not isinstance(stderr, str)
        or not isinstance(wall_s, (int, float))
    ):
        raise ValueError("malformed run in the sandbox server's reply")
    return Execution(status, exit_code, stdout, stderr, float(wall_s))


def _executions(reply: object) -> list[Execution]:
    """The runs of a reply frame (one sandbox_error run for a reported error); ValueError if malformed."""
    if isinstance(reply, dict) and isinstance(reply.get("error"), str):
        return [Execution("sandbox_error", None, "", reply["error"], 0.0)]
    runs = reply.get("runs") if isinstance(reply, dict) else None
    if not isinstance(runs, list):
        raise ValueError("malformed reply from the sandbox server")
    return [_execution(run) for run in runs]


class LocalSandbox:
    """A client of one fork server, started on first use and restarted if it dies; thread-safe.

    `audit_hook=False` leaves only the kernel-enforced isolation (used by tests to prove it holds).
    Where the server reports no kernel isolation, starting it raises UserError unless
    `allow_unsandboxed`. `packages` are what programs may import besides the standard library;
    `memory_budget_mb` is what one test may hold in all (this server's share of the host's memory).
    """

    def __init__(
        self,
        audit_hook: bool = True,
        allow_unsandboxed: bool = False,
        packages: tuple[str, ...] = (),
        memory_budget_mb: int | None = None,
    ) -> None:
        self.audit_hook = audit_hook
        self.allow_unsandboxed = allow_unsandboxed
        self.packages = tuple(packages)
        self.memory_budget_mb = memory_budget_mb
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.isolation: dict[str, str] = {}
        self.problem: str | None = None  # why programs are not isolated here, if they are not
        self.server_pid: int | None = None

    def start(self) -> None:
        """Start the fork server now (UserError if it cannot isolate programs and that is not allowed)."""
        with self._lock:
            self._server()

    def _start(self) -> subprocess.Popen[bytes]:
        """An isolated server; where the kernel refuses one, an unsandboxed one if allowed, else UserError."""
        if self.problem is None:
            proc, self.problem = self._launch(isolated=True)
            if self.problem is None:
                return proc
        if not self.allow_unsandboxed:
            raise UserError(refusal(self.problem))
        proc, problem = self._launch(isolated=False)
        if problem is not None:
            raise RuntimeError(f"the sandbox fork server could not start: {problem}")
        return proc

    def _launch(self, isolated: bool) -> tuple[subprocess.Popen[bytes], str | None]:
        """Start a fork server; it and the problem it reports (when it has one, it has ended)."""
        options = [*([] if isolated else ["--unsandboxed"]), *(f"--package={name}" for name in self.packages)]
        if self.memory_budget_mb is not None:
            options.append(f"--memory-budget-mb={self.memory_budget_mb}")
        proc = subprocess.Popen(
            [sys.executable, "-I", str(FORKSERVER), *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=SERVER_ENV,
            close_fds=True,
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            if not select.select([proc.stdout.fileno()], [], [], 60.0)[0]:
                raise ValueError("the sandbox fork server did not start within 60 s")
            frame = recv_frame(proc.stdout.fileno())
            if frame is None:
                raise ValueError("the sandbox fork server exited at start-up")
            self.server_pid, self.isolation, problem = _hello(frame)
        except ValueError as exc:
            proc.kill()
            proc.wait()
            raise RuntimeError(str(exc)) from None
        if problem is not None:
            proc.wait()
        return proc, problem

    def _server(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        return self._proc

    def run(self, code: str, stdin: str, limits: Limits) -> Execution:
        """Run `code` as __main__ with `stdin` under `limits`."""
        return self.run_tests(code, [stdin], limits)[0]

    def run_tests(
        self, code: str, stdins: list[str], limits: Limits, expected: list[str] | None = None
    ) -> list[Execution]:
        """Run `code` on each input in a fresh child (one round trip to the server for them all)."""
        request = {
            "code": code,
            "stdins": list(stdins),
            "expected": None if expected is None else list(expected),
            "time_limit": limits.time_limit_s,
            "wall_limit": limits.wall_limit_s,
            "memory_mb": limits.memory_mb,
            "output_limit": limits.output_limit_bytes,
            "max_processes": limits.max_processes,
            "audit_hook": self.audit_hook,
        }
        with self._lock:
            try:
                proc = self._server()
                assert proc.stdin is not None and proc.stdout is not None
                send_frame(proc.stdin.fileno(), request)
                wait_s = len(stdins) * (limits.wall_limit_s + 6.0) + 30.0
                ready = select.select([proc.stdout.fileno()], [], [], wait_s)[0]
                reply = recv_frame(proc.stdout.fileno()) if ready else None
                if reply is None:
                    raise ValueError("no reply from the sandbox server")
                if isinstance(reply, dict) and reply.get("ended"):
                    self._kill()  # it said why and ended: the next call starts a new one
                return _executions(reply)
            except (OSError, ValueError) as exc:
                self._kill()
                return [Execution("sandbox_error", None, "", str(exc), 0.0)]

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """Stop the fork server."""
        with self._lock:
            if self._proc is not None:
                for stream in (self._proc.stdin, self._proc.stdout):
                    if stream is not None:
                        stream.close()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._kill()
                self._proc = None


class FusionSandbox:
    """A SandboxFusion service (https://github.com/bytedance/SandboxFusion) reached at `url`."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def run(self, code: str, stdin: str, limits: Limits) -> Execution:
        """POST the program to `/run_code` and map the service's answer onto an Execution."""
        body = {"code": code, "stdin": stdin, "language": "python", "run_timeout": limits.time_limit_s}
        request = urllib.request.Request(
            f"{self.url}/run_code",
            data=json.dumps(body).encode("utf-8", "surrogatepass"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=limits.wall_limit_s + 30.0) as response:
                answer = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return Execution("sandbox_error", None, "", f"SandboxFusion at {self.url}: {exc}", 0.0)
        run = answer.get("run_result") or {}
        stdout = run.get("stdout") or ""
        stderr = (run.get("stderr") or "")[-1000:]
        seconds = float(run.get("execution_time") or 0.0)
        code_status = run.get("status")
        if answer.get("status") == "SandboxError" or not run:
            return Execution("sandbox_error", None, stdout, answer.get("message") or "SandboxError", seconds)
        if code_status == "TimeLimitExceeded":
            return Execution("timeout", run.get("return_code"), stdout, stderr, seconds)
        if len(stdout.encode("utf-8", "replace")) > limits.output_limit_bytes:
            return Execution("output_limit", run.get("return_code"), "", stderr, seconds)
        exit_code = run.get("return_code")
        ok = code_status == "Finished" and exit_code == 0
        return Execution("ok" if ok else "error", exit_code, stdout, stderr, seconds)

    def run_tests(
        self, code: str, stdins: list[str], limits: Limits, expected: list[str] | None = None
    ) -> list[Execution]:
        """One request per input, stopping after the first failed test when `expected` is given."""
        runs = []
        for number, stdin in enumerate(stdins):
            runs.append(self.run(code, stdin, limits))
            if expected is not None and not passed(runs[-1], expected[number]):
                break
        return runs


@dataclass(frozen=True)
class SandboxSettings:
    """What the local sandbox is asked for: run without kernel isolation or not, the packages
    programs may import besides the standard library, and what one test may hold in all (MB)."""

    allow_unsandboxed: bool = False
    packages: tuple[str, ...] = ()
    memory_budget_mb: int | None = None


_LOCAL: dict[tuple[int, SandboxSettings], LocalSandbox] = {}
_PROBLEMS: dict[tuple[int, SandboxSettings], str | None] = {}  # per process: why it cannot isolate programs


def local_sandbox(settings: SandboxSettings = SandboxSettings()) -> LocalSandbox:
    """This process's shared local sandbox for these settings (one fork server per process)."""
    key = (os.getpid(), settings)
    if key not in _LOCAL:
        if any(pid != key[0] for pid, _ in _LOCAL):
            _LOCAL.clear()  # a forked child must not share its parent's server pipes
        _LOCAL[key] = LocalSandbox(
            allow_unsandboxed=settings.allow_unsandboxed,
            packages=settings.packages,
            memory_budget_mb=settings.memory_budget_mb,
        )
    return _LOCAL[key]


def require_isolation(settings: SandboxSettings = SandboxSettings()) -> None:
    """UserError unless the local sandbox isolates programs here or the risk is accepted (probed once)."""
    if settings.allow_unsandboxed:
        return
    key = (os.getpid(), settings)
    if key not in _PROBLEMS:
        probe = LocalSandbox(packages=settings.packages, memory_budget_mb=settings.memory_budget_mb)
        try:
            probe.start()
        except UserError:
            pass  # its problem says why
        finally:
            probe.close()
        _PROBLEMS[key] = probe.problem
    problem = _PROBLEMS[key]
    if problem is not None:
        raise UserError(refusal(problem))


def make_sandbox(sandbox_url: str | None, settings: SandboxSettings = SandboxSettings()) -> Sandbox:
    """The sandbox the config asks for: SandboxFusion at `sandbox_url`, else the local one."""
    return FusionSandbox(sandbox_url) if sandbox_url else local_sandbox(settings)
