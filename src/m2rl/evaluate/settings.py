"""Typed, validated eval settings built from `cfg.eval` (and the root `seed`) before any work starts."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from m2rl.errors import UserError

BACKENDS = ("hf", "vllm")


def eval_section(root: DictConfig) -> dict[str, Any]:
    """`root.eval` as plain values, its benchmarks following the data config's domains.

    Each file-backed domain with a `test` file (m2rl.data.files) gets a benchmark of its name
    (`source: files`) unless one by that name exists. A built-in test set (`source: builtin`) of one
    of the four domains that the data config does not generate (absent, or read from files) is left
    out, so `data=files` evaluates only its own domains, on their test files. Other benchmarks (the
    paper's, `general`) stay. Without a `data` section (a job's
    saved config) the section is taken as it is: it was adjusted when the job was made.
    """
    ev = OmegaConf.to_container(root.eval, resolve=True)
    assert isinstance(ev, dict)
    data = root.get("data")
    if data is None or not isinstance(ev.get("benchmarks"), dict):
        return ev
    from m2rl.data.files import domain_names, file_domains
    from m2rl.data.schema import DOMAINS

    domains, backed = domain_names(data), file_domains(data)
    generated = [d for d in domains if d not in backed]
    benchmarks = {
        name: spec
        for name, spec in ev["benchmarks"].items()
        if not (
            isinstance(spec, dict)
            and spec.get("source") == "builtin"
            and spec.get("domain") in DOMAINS  # an unknown one stays, to fail with its own error
            and spec.get("domain") not in generated
        )
    }
    for domain, splits in backed.items():
        if splits["test"] is not None and domain in domains and benchmarks.get(domain) is None:
            benchmarks[domain] = {"source": "files", "domain": domain, "path": splits["test"]}
    return ev | {"benchmarks": benchmarks}


@dataclass(frozen=True)
class GenerationSettings:
    """How responses are sampled: the paper's eval uses temperature 1.0, top-p 0.7; temperature 0 is greedy
    decoding (the same response K times: use K=1), which both backends must agree on token for token."""

    temperature: float = 1.0
    top_p: float = 0.7
    max_new_tokens: int = 96
    # Qwen3 template: thinking on (the template leaves the assistant turn open for `<think>`).
    enable_thinking: bool = True


@dataclass(frozen=True)
class VllmSettings:
    """Engine arguments of the vLLM backend (`vllm.LLM(...)`)."""

    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    dtype: str = "auto"
    enforce_eager: bool = False


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark: its name, eval domain, data source, K, and the loader's full spec."""

    name: str
    domain: str
    source: str
    k: int
    spec: dict[str, Any] = field(default_factory=dict)

    def stable_hash(self) -> str:
        """A hash of everything that defines the benchmark's items."""
        import json

        payload = json.dumps({"name": self.name, "spec": self.spec}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EvalSettings:
    """Everything `evaluate_run` needs from the config."""

    benchmarks: list[BenchmarkSpec]
    generation: GenerationSettings
    backend: str = "hf"
    batch_size: int = 64
    torch_threads: int | None = None  # CPU threads for HF generate; None = torch's default
    bootstrap_samples: int = 1000
    seed: int = 0
    vllm: VllmSettings = field(default_factory=VllmSettings)

    def protocol(self) -> dict[str, Any]:
        """The settings that change results (not batch size or engine memory), for the config hash."""
        protocol = {"generation": asdict(self.generation), "seed": self.seed, "backend": self.backend}
        if self.backend == "vllm":  # results from before each prompt had its own seed are not reused
            protocol["seeds"] = "per prompt"
        return protocol

    @classmethod
    def from_cfg(cls, root: DictConfig) -> EvalSettings:
        """Build from the root config: `root.eval` plus `root.seed`; bad values raise UserError."""
        if "eval" not in root:
            raise UserError("config has no `eval` group (expected conf/eval/*.yaml, e.g. eval=tiny)")
        ev = eval_section(root)
        where = "eval"
        backend = str(ev.get("backend", "hf"))
        if backend not in BACKENDS:
            raise UserError(f"{where}.backend={backend!r}: expected one of {', '.join(BACKENDS)}")
        gen = GenerationSettings(
            temperature=float(ev.get("temperature", 1.0)),
            top_p=float(ev.get("top_p", 1.0)),
            max_new_tokens=int(ev.get("max_new_tokens", 96)),
            enable_thinking=bool(ev.get("enable_thinking", True)),
        )
        if gen.temperature < 0:
            raise UserError(f"{where}.temperature={gen.temperature}: must be >= 0 (0: greedy decoding)")
        if not 0 < gen.top_p <= 1:
            raise UserError(f"{where}.top_p={gen.top_p}: must be in (0, 1]")
        if gen.max_new_tokens < 1:
            raise UserError(f"{where}.max_new_tokens={gen.max_new_tokens}: must be >= 1")
        default_k = int(ev.get("k", 1))
        raw = ev.get("benchmarks") or {}
        if not isinstance(raw, dict) or not raw:
            raise UserError(f"{where}.benchmarks: expected a non-empty mapping name -> spec")
        benchmarks = []
        for name, spec in raw.items():
            if spec is None:  # `eval.benchmarks.hle=null` drops a benchmark
                continue
            if not isinstance(spec, dict):
                raise UserError(f"{where}.benchmarks.{name}: expected a mapping, got {spec!r}")
            for key in ("source", "domain"):
                if not spec.get(key):
                    raise UserError(f"{where}.benchmarks.{name}: missing `{key}`")
            k = int(spec.get("k", default_k))
            if k < 1:
                raise UserError(f"{where}.benchmarks.{name}.k={k}: must be >= 1")
            full = {key: value for key, value in spec.items() if key != "k"}
            full["name"] = str(name)
            benchmarks.append(BenchmarkSpec(str(name), str(spec["domain"]), str(spec["source"]), k, full))
        if not benchmarks:
            raise UserError(f"{where}.benchmarks: every benchmark is disabled")
        vllm_raw = ev.get("vllm") or {}
        try:
            vllm = VllmSettings(**vllm_raw)
        except TypeError as exc:
            raise UserError(f"{where}.vllm: {exc}") from exc
        batch_size = int(ev.get("batch_size", 64))
        if batch_size < 1:
            raise UserError(f"{where}.batch_size={batch_size}: must be >= 1")
        return cls(
            benchmarks=benchmarks,
            generation=gen,
            backend=backend,
            batch_size=batch_size,
            torch_threads=None if ev.get("torch_threads") is None else int(ev["torch_threads"]),
            bootstrap_samples=int(ev.get("bootstrap_samples", 1000)),
            seed=int(root.get("seed", 0)),
            vllm=vllm,
        )
