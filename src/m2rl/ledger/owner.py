"""Who runs an attempt: pid, host, boot id and process start time, kept for display only (pids repeat
across PID namespaces and nodes; liveness is the lock's job)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from pathlib import Path
from typing import Any


def _boot_id() -> str | None:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return None


def owner() -> dict[str, Any]:
    """This process, for display: pid, host, boot id and start time (liveness is the lock's job)."""
    # lazy: psutil (~20 ms), only where a run's owner is recorded
    import psutil

    started = dt.datetime.fromtimestamp(psutil.Process().create_time(), dt.UTC)
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "process_started": started.isoformat(timespec="seconds"),
    }


def describe_owner(manifest: dict[str, Any]) -> str:
    """`process 123 on host-a (started ...)`: who last ran the run, as its manifest records."""
    started = f", started {manifest['process_started']}" if manifest.get("process_started") else ""
    return f"process {manifest.get('pid')} on {manifest.get('host')}{started}"


def read_as_killed(manifest: dict[str, Any]) -> None:
    """A `running` manifest nobody holds the lock of: its process died without closing the run."""
    manifest["status"] = "failed"
    manifest["error"] = f"killed: {describe_owner(manifest)} ended without closing the run"
    if manifest.get("attempts") and manifest["attempts"][-1].get("status") == "running":
        manifest["attempts"][-1]["status"] = "killed"
