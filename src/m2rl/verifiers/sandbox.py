"""Where untrusted programs run: the local fork-server sandbox, or a SandboxFusion service.

`LocalSandbox` talks to `forkserver.py`, a small pre-warmed interpreter started with a scrubbed
environment (see that module for exactly which isolation is kernel-enforced). Starting it with
`subprocess` (fork+exec) keeps it safe to use from a process that has torch or CUDA loaded.
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

from m2rl.verifiers.forkserver import recv_frame, send_frame, unit_test_passed

FORKSERVER = Path(__file__).with_name("forkserver.py")
SERVER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
STATUSES = ("ok", "error", "timeout", "output_limit", "signal", "sandbox_error")


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


class LocalSandbox:
    """A client of one fork server, started on first use and restarted if it dies; thread-safe.

    `audit_hook=False` leaves only the kernel-enforced isolation (used by tests to prove it holds).
    """

    def __init__(self, audit_hook: bool = True) -> None:
        self.audit_hook = audit_hook
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.isolation: dict[str, str] = {}
        self.server_pid: int | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(FORKSERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=SERVER_ENV,
            close_fds=True,
            start_new_session=True,
        )
        assert proc.stdout is not None
        if not select.select([proc.stdout.fileno()], [], [], 60.0)[0]:
            proc.kill()
            raise RuntimeError("the sandbox fork server did not start within 60 s")
        hello = recv_frame(proc.stdout.fileno())
        if not isinstance(hello, dict):
            proc.kill()
            raise RuntimeError("the sandbox fork server exited at start-up")
        self.isolation = hello["isolation"]
        self.server_pid = hello["pid"]
        return proc

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
                wait_s = len(stdins) * (limits.wall_limit_s + 1.0) + 30.0
                ready = select.select([proc.stdout.fileno()], [], [], wait_s)[0]
                reply = recv_frame(proc.stdout.fileno()) if ready else None
            except (OSError, ValueError, EOFError) as exc:
                reply, error = None, repr(exc)
            else:
                error = "no reply from the sandbox server"
            if not isinstance(reply, dict):
                self._kill()
                return [Execution("sandbox_error", None, "", error, 0.0)]
        if "error" in reply:
            return [Execution("sandbox_error", None, "", str(reply["error"]), 0.0)]
        return [
            Execution(
                status=run["status"],
                exit_code=run["exit_code"],
                stdout=run["stdout"].decode("utf-8", "replace"),
                stderr=run["stderr"],
                wall_s=run["wall_s"],
            )
            for run in reply["runs"]
        ]

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


_LOCAL: dict[int, LocalSandbox] = {}


def local_sandbox() -> LocalSandbox:
    """This process's shared local sandbox (one fork server per process)."""
    pid = os.getpid()
    if pid not in _LOCAL:
        _LOCAL.clear()  # a forked child must not share its parent's server pipes
        _LOCAL[pid] = LocalSandbox()
    return _LOCAL[pid]


def make_sandbox(sandbox_url: str | None) -> Sandbox:
    """The sandbox the config asks for: SandboxFusion at `sandbox_url`, else the local one."""
    return FusionSandbox(sandbox_url) if sandbox_url else local_sandbox()
