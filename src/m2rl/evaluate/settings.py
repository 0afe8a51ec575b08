"""Typed, validated eval settings: a job's `eval` and `verifiers` sections and its seed, checked before
any work starts (from a job spec, or from the root config through `eval_section`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from m2rl.data.files import domain_names, file_domains
from m2rl.data.schema import DOMAINS
from m2rl.errors import UserError
from m2rl.specs import EvalSection, VerifierSettings, VllmSettings, validated
from m2rl.verifiers.config import verifier_settings

BACKENDS = ("hf", "vllm")


def eval_section(root: DictConfig) -> EvalSection:
    """`root.eval` typed, its benchmarks following the data config's domains.

    Each file-backed domain with a `test` file (m2rl.data.files) gets a benchmark of its name
    (`source: files`) unless one by that name exists. A built-in test set (`source: builtin`) of one
    of the four domains that the data config does not generate (absent, or read from files) is left
    out, so `data=files` evaluates only its own domains, on their test files. Other benchmarks (the
    paper's, `general`) stay. Without a `data` section (a job's
    saved config) the section is taken as it is: it was adjusted when the job was made.
    """
    if "eval" not in root:
        raise UserError("config has no `eval` group (expected conf/eval/*.yaml, e.g. eval=tiny)")
    ev = OmegaConf.to_container(root.eval, resolve=True)
    assert isinstance(ev, dict)
    data = root.get("data")
    if data is None or not isinstance(ev.get("benchmarks"), dict):
        return validated(EvalSection, ev, prefix="eval.")
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
    return validated(EvalSection, ev | {"benchmarks": benchmarks}, prefix="eval.")


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
class BenchmarkSpec:
    """One benchmark: its name, eval domain, data source, K, and the loader's full spec."""

    name: str
    domain: str
    source: str
    k: int
    spec: dict[str, Any] = field(default_factory=dict)

    def stable_hash(self) -> str:
        """A hash of everything that defines the benchmark's items."""
        payload = json.dumps({"name": self.name, "spec": self.spec}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EvalSettings:
    """Everything `evaluate_run` needs: the benchmarks, sampling, backend, seed and verifiers."""

    benchmarks: list[BenchmarkSpec]
    generation: GenerationSettings
    verifiers: VerifierSettings
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

    def verifier_identity(self) -> dict[str, Any]:
        """The verifier section as the config gave it (for the config hash of saved results)."""
        return self.verifiers.model_dump(mode="json")

    @classmethod
    def from_cfg(cls, root: DictConfig) -> EvalSettings:
        """Build from the root config: `root.eval`, `root.verifiers` and `root.seed`; bad values raise UserError."""
        return cls.of(eval_section(root), verifier_settings(root), int(root.get("seed", 0)))

    @classmethod
    def of(cls, ev: EvalSection, verifiers: VerifierSettings, seed: int) -> EvalSettings:
        """From a job's typed eval and verifier sections and its seed; bad values raise UserError."""
        where = "eval"
        if ev.backend not in BACKENDS:
            raise UserError(f"{where}.backend={ev.backend!r}: expected one of {', '.join(BACKENDS)}")
        gen = GenerationSettings(
            temperature=float(ev.temperature),
            top_p=float(ev.top_p),
            max_new_tokens=ev.max_new_tokens,
            enable_thinking=ev.enable_thinking,
        )
        if gen.temperature < 0:
            raise UserError(f"{where}.temperature={gen.temperature}: must be >= 0 (0: greedy decoding)")
        if not 0 < gen.top_p <= 1:
            raise UserError(f"{where}.top_p={gen.top_p}: must be in (0, 1]")
        if gen.max_new_tokens < 1:
            raise UserError(f"{where}.max_new_tokens={gen.max_new_tokens}: must be >= 1")
        if not ev.benchmarks:
            raise UserError(f"{where}.benchmarks: expected a non-empty mapping name -> spec")
        benchmarks = []
        for name, spec in ev.benchmarks.items():
            if spec is None:  # `eval.benchmarks.hle=null` drops a benchmark
                continue
            for key in ("source", "domain"):
                if not spec.get(key):
                    raise UserError(f"{where}.benchmarks.{name}: missing `{key}`")
            k = int(spec.get("k", ev.k))
            if k < 1:
                raise UserError(f"{where}.benchmarks.{name}.k={k}: must be >= 1")
            full = {key: value for key, value in spec.items() if key != "k"}
            full["name"] = name
            benchmarks.append(BenchmarkSpec(name, str(spec["domain"]), str(spec["source"]), k, full))
        if not benchmarks:
            raise UserError(f"{where}.benchmarks: every benchmark is disabled")
        if ev.batch_size < 1:
            raise UserError(f"{where}.batch_size={ev.batch_size}: must be >= 1")
        return cls(
            benchmarks=benchmarks,
            generation=gen,
            verifiers=verifiers,
            backend=ev.backend,
            batch_size=ev.batch_size,
            torch_threads=ev.torch_threads,
            bootstrap_samples=ev.bootstrap_samples,
            seed=seed,
            vllm=ev.vllm,
        )
