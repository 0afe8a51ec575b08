"""What a run costs: the device it computes on (device-hours = wall time x devices) and the CPU time of
its processes (user + system of this process and every descendant, live or reaped), which does not
grow when other load shares the cores."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from m2rl.provenance import cpu_model


@dataclass
class Device:
    """What a run computes on; device-hours count `count` devices for the run's wall time."""

    type: str = "cpu"  # "cpu" or "cuda"
    name: str = field(default_factory=cpu_model)
    count: int = 1  # GPUs on cuda; processes on cpu

    @property
    def hours_label(self) -> str:
        return "GPU-hours" if self.type == "cuda" else "CPU-hours"

    @classmethod
    def detect(cls, world_size: int = 1, want_gpu: bool | None = None) -> Device:
        """The device this process will use: CUDA when available (and wanted), else the CPU."""
        # lazy: torch, only where the device is detected
        import torch

        use_gpu = torch.cuda.is_available() if want_gpu is None else want_gpu and torch.cuda.is_available()
        if use_gpu:
            return cls("cuda", torch.cuda.get_device_name(0), world_size)
        return cls("cpu", cpu_model(), world_size)


def process_tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and all its descendants, live and reaped."""
    # lazy: psutil (~20 ms), only where CPU time is measured
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            # a process's reaped children are in its children_* fields; live ones are visited themselves
            total += times.user + times.system + times.children_user + times.children_system
    return total
