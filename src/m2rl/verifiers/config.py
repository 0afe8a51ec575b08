"""The verifier suite's runtime settings (flat, picklable into pool workers), made from the typed
`verifiers` section of a job spec (m2rl.specs.VerifierSettings)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from m2rl.errors import UserError
from m2rl.specs import VerifierSettings, validated
from m2rl.verifiers.plugins import custom_entries, use_plugins
from m2rl.verifiers.sandbox import SandboxSettings


@dataclass(frozen=True)
class VerifierConfig:
    """Reward rules and sandbox limits; defaults match conf/verifiers/default.yaml."""

    require_think: bool = True  # gate: no </think> scores 0
    seed: int = 0  # seeds which code tests are sampled (with the sample id)
    workers: int | None = None  # batch worker processes; None = min(8, CPUs); 0 = in-process
    math_timeout_s: float = 10.0  # equivalence-check timeout per item; timeout scores 0
    code_max_tests: int = 20  # tests sampled per code problem
    code_time_limit_s: float = 10.0  # CPU seconds per test (wall clock: twice this)
    code_memory_limit_mb: int = 1024  # address space per test
    code_max_processes: int = 16  # processes/threads per test
    code_output_limit_mb: float = 16.0  # stdout and file-size cap per test
    sandbox_url: str | None = None  # SandboxFusion service instead of the local sandbox
    code_allow_unsandboxed: bool = False  # run programs even where the kernel cannot isolate them
    code_packages: tuple[str, ...] = ()  # what programs may import besides the standard library
    code_host_memory_share: float = 0.5  # of the host's RAM, for all sandboxed tests running at once
    if_strict: bool = True  # IFEval strict (True) or loose (False) semantics
    # Reward plugins from `verifiers.custom`: ((rm_type, "module:function" or a mapping as JSON), ...),
    # sorted; workers register them before scoring (see m2rl.verifiers.plugins).
    custom: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "math.timeout_s": self.math_timeout_s > 0,
            "code.max_tests": self.code_max_tests >= 1,
            "code.time_limit_s": self.code_time_limit_s > 0,
            "code.memory_limit_mb": self.code_memory_limit_mb >= 64,
            "code.max_processes": self.code_max_processes >= 1,
            "code.output_limit_mb": self.code_output_limit_mb > 0,
            "workers": self.workers is None or self.workers >= 0,
            "code.host_memory_share": 0 < self.code_host_memory_share <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise UserError(
                f"verifiers config: invalid value for {', '.join(bad)} (see conf/verifiers/default.yaml)"
            )

    @property
    def worker_count(self) -> int:
        """Worker processes for batch scoring."""
        return min(8, os.cpu_count() or 1) if self.workers is None else self.workers

    @property
    def sandbox(self) -> SandboxSettings:
        """The local sandbox's settings: each of this process's workers runs one test at a time, so
        a test may hold at most the configured share of the host's memory over the workers."""
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
        budget = int(self.code_host_memory_share * total_mb / max(1, self.worker_count))
        return SandboxSettings(self.code_allow_unsandboxed, self.code_packages, budget)

    @classmethod
    def of(cls, settings: VerifierSettings) -> VerifierConfig:
        """From the typed `verifiers` section; the reward plugins it names are registered in this process
        (where the settings are read; a pool worker registers them from `custom`, m2rl.verifiers.registry)."""
        math, code = settings.math, settings.code
        custom = custom_entries(settings.custom)
        use_plugins(custom)  # validated (and registered) when the config is read: exit 2 on a bad one
        return cls(
            require_think=settings.require_think,
            seed=settings.seed,
            workers=settings.workers,
            math_timeout_s=float(math.timeout_s),
            code_max_tests=code.max_tests,
            code_time_limit_s=float(code.time_limit_s),
            code_memory_limit_mb=code.memory_limit_mb,
            code_max_processes=code.max_processes,
            code_output_limit_mb=float(code.output_limit_mb),
            sandbox_url=code.sandbox_url or None,
            code_allow_unsandboxed=code.allow_unsandboxed,
            code_packages=tuple(code.packages),
            code_host_memory_share=float(code.host_memory_share),
            if_strict=settings.instruction_following.strict,
            custom=custom,
        )


def verifier_settings(root: DictConfig) -> VerifierSettings:
    """The root config's `verifiers` section, typed (the defaults where the config has none)."""
    node = root.get("verifiers")
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return validated(VerifierSettings, values or {}, prefix="verifiers.")
