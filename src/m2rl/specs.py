"""Typed job specs: everything one run needs, validated before any work starts.

Each run kind (sft, rl, merge, eval, analyze, distill) is one frozen pydantic model, as mergekit's
`MergeConfiguration` is: values are coerced and range-checked when the spec is built, unknown keys
are rejected, and a spec pickles, so the same object travels to a worker process, an accelerate rank
or a Slurm job. `m2rl.jobs.build` makes them from the Hydra config in one place; the engine builders
(TRL configs, trainers) take these, never the whole config.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from m2rl.errors import UserError

# m2rl's loss names -> TRL's GRPOConfig.loss_type
LOSS_TYPES = {"sample_token_mean": "grpo", "token_mean": "dapo", "constant_normaliser": "dr_grpo"}

Probability = Field(ge=0.0, le=1.0)
# Pydantic names the member of a union it tried in an error's location (`int`, `literal['auto']`).
_UNION_TAG = re.compile(r"^(int|float|str|bool|none|literal\[.*\]|list\[.*\]|dict\[.*\]|function-\w+\[.*\])$")


class Strict(BaseModel):
    """Frozen, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Section(Strict):
    """A config section kept as it was written: only the keys the config gave are serialized, so job.json
    and a job's identity hold what the config held (never a default filled in), as before it was typed."""

    @model_serializer(mode="wrap")
    def _given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if key in self.model_fields_set}


# A number as written (10 stays 10, 0.5 stays 0.5): the identity hashes the JSON text of the section.
Number = int | float


def check_name(name: str) -> str:
    """A run or study name: a plain directory-name-like word (no path separators, no `..`)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"{name!r} is not a valid name (no path separators, no leading dot)")
    return name


# -- recipes (one config group each) -----------------------------------------------------------
class ModelSpec(Strict):
    """`model/`: the base model, built-in (path null) or a local directory / hub id."""

    name: str
    path: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    builtin: dict[str, Any] | None = None


class SFTRecipe(Strict):
    """`sft/`: supervised fine-tuning on TRL's SFTTrainer."""

    learning_rate: float = Field(gt=0)
    min_learning_rate: float = Field(ge=0)
    warmup_ratio: float = Probability
    adam_beta1: float = Field(ge=0, lt=1)
    adam_beta2: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    global_batch_size: int = Field(ge=1)
    per_device_batch_size: int = Field(ge=1)
    epochs: float = Field(gt=0)
    max_steps: int = Field(ge=-1)  # > 0 overrides epochs
    max_length: int = Field(ge=8)
    assistant_only_loss: bool = True
    mask_empty_think: bool = True
    bf16: bool = False
    logging_steps: int = Field(ge=1)
    save_steps: int = Field(ge=0)  # 0: no intermediate checkpoints (and nothing to resume from)
    save_total_limit: int = Field(default=1, ge=1)  # checkpoints kept: the newest N
    gradient_checkpointing: bool = False
    report_to: list[str] = []


class VllmRollout(Strict):
    """`rl.vllm`: the vLLM rollout engine (GPU)."""

    mode: Literal["colocate", "server"] = "colocate"
    gpu_memory_utilization: float = Field(gt=0, le=1)
    tensor_parallel_size: int = Field(ge=1)
    server_host: str = "0.0.0.0"
    server_port: int = Field(ge=1, le=65535)
    importance_sampling_cap: float = Field(gt=0)


class OnPolicyRecipe(Strict):
    """What GRPO and MT-OPD share: rollouts on TRL's GRPOTrainer, the optimizer, checkpoints, precision."""

    section: ClassVar[str]  # the config section, for messages
    steps: int = Field(ge=1)
    prompts_per_step: int = Field(ge=1)
    per_device_batch_size: int = Field(ge=1)
    max_prompt_length: int = Field(ge=1)
    max_completion_length: int = Field(ge=1)
    temperature: float = Field(gt=0)
    top_p: float = Field(gt=0, le=1)
    learning_rate: float = Field(gt=0)
    lr_scheduler: str = "constant"
    warmup_ratio: float = Probability
    adam_beta1: float = Field(ge=0, lt=1)
    adam_beta2: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    max_grad_norm: float = Field(gt=0)
    rollout: Literal["hf", "vllm"] = "hf"
    vllm: VllmRollout
    save_steps: int = Field(ge=0)  # 0: no checkpoints (no resume)
    save_total_limit: int = Field(ge=1)
    logging_steps: int = Field(ge=1)
    report_to: list[str] = []
    bf16: bool = False
    gradient_checkpointing: bool = False
    num_generations: int

    def rollout_batch(self, world_size: int) -> tuple[int, int]:
        """(completions per optimizer step, gradient-accumulation steps) at this world size."""
        completions = self.prompts_per_step * self.num_generations
        per_step = self.per_device_batch_size * world_size
        if completions % per_step:
            k = self.section
            raise UserError(
                f"{k}.prompts_per_step x {k}.num_generations = {completions} completions per step is not a "
                f"multiple of {k}.per_device_batch_size x processes = {per_step}"
            )
        return completions, completions // per_step


class RLRecipe(OnPolicyRecipe):
    """`rl/`: GRPO on TRL's GRPOTrainer, one recipe for the experts and the mixed run."""

    section: ClassVar[str] = "rl"
    mixed_steps: int = Field(ge=1)
    num_generations: int = Field(ge=2)  # a group of one has no advantage
    clip_low: float = Field(ge=0)
    clip_high: float = Field(ge=0)
    kl_coef: float = Field(ge=0)
    entropy_coef: float = 0.0
    loss_aggregation: Literal["sample_token_mean", "token_mean", "constant_normaliser"]
    scale_rewards: Literal["group", "batch", "none"] = "group"
    mask_truncated_completions: bool = False


class DeepSpeedSpec(Strict):
    """`launcher.deepspeed`: ZeRO settings written into the accelerate config."""

    zero_stage: Literal[0, 1, 2, 3]
    offload_optimizer_device: Literal["none", "cpu", "nvme"] = "none"
    offload_param_device: Literal["none", "cpu", "nvme"] = "none"
    gradient_clipping: float = Field(gt=0)
    zero3_init_flag: bool = False
    zero3_save_16bit_model: bool = False


class LauncherSpec(Strict):
    """`launcher/`: this process (`local`) or `accelerate launch` over processes and machines."""

    name: Literal["local", "accelerate"]
    num_processes: int = Field(1, ge=1)
    num_machines: int = Field(1, ge=1)
    machine_rank: int = Field(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int = Field(29500, ge=1, le=65535)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    use_cpu: bool | Literal["auto"] = "auto"
    deepspeed: DeepSpeedSpec | None = None

    @property
    def world_size(self) -> int:
        """Processes taking part in training (all machines together)."""
        return self.num_processes


class SlurmSettings(Strict):
    """`study.slurm`: how `study.executor=slurm` submits each stage (through submitit)."""

    partition: str | None = None  # None: the cluster's default partition (refused where it has none)
    account: str | None = None
    qos: str | None = None
    # GPUs per node; auto: the launcher's processes per node for SFT, RL and MT-OPD (on
    # launcher.num_machines nodes), the eval's vLLM tensor-parallel size for eval and analyze, none for merges
    gpus_per_job: int | Literal["auto"] = "auto"
    cpus_per_job: int = Field(8, ge=1)
    time_min: int = Field(24 * 60, ge=1)
    mem: str | None = None
    setup: list[str] = []  # shell lines before the job starts (module load, source a venv)
    additional: dict[str, Any] = {}  # any other sbatch flag, e.g. {constraint: h100}
    poll_s: float = Field(15.0, gt=0)  # seconds between sacct polls

    @field_validator("gpus_per_job")
    @classmethod
    def _no_negative_gpus(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be auto or 0 or more")
        return value


class PaperEstimate(Strict):
    """`study.paper_estimate`: the figures behind the dry-run's estimate of the stages the paper's Table 2
    does not cost (SFT, evals, analyze); each is an assumption or a published size (conf/config.yaml)."""

    model_params: float = Field(4.0e9, gt=0)  # parameters of the trained model
    sft_tokens_per_row: int = Field(4096, ge=1)  # mean tokens of one SFT row
    gpu_peak_tflops: float = Field(989.0, gt=0)  # dense BF16 peak of one GPU
    mfu: float = Field(0.4, gt=0, le=1)  # model FLOPs utilisation of SFT
    eval_items: dict[str, int] = {}  # benchmark -> items, where its config sets no `limit` or `count`


class MergeSearchSettings(Strict):
    """`study.merge_search`: a tuned merge per listed method after the experts (m2rl.merge.search)."""

    methods: list[str] = []  # empty: no tuned merges
    trials: int = Field(8, ge=1)
    items_per_domain: int = Field(32, ge=1)
    params: list[str] = []  # empty: every searchable parameter of each method


class StudySettings(Strict):
    """`study`: what the pipeline runs and how its stages share the machine or the cluster."""

    domains: list[str] = Field(min_length=1)
    merge_methods: list[str] = []
    seeds: int | list[int] = 1  # a count (from `seed` up) or explicit seeds; each replicates the lineage
    share_sft: bool = False  # one SFT run for every seed
    executor: Literal["local", "slurm"] = "local"
    max_parallel: int | Literal["auto"] = "auto"  # stages at once (local)
    devices_per_job: int = Field(1, ge=1)  # GPUs per stage on a local GPU node
    cpu_threads: int | Literal["auto"] = "auto"  # torch threads across all local stages (CPU)
    paper_gpu_hours_per_step: dict[str, float] = {}
    paper_estimate: PaperEstimate = PaperEstimate()
    slurm: SlurmSettings = SlurmSettings()
    analyze: bool = True  # an analyze stage per seed after its evals (m2rl analyze)
    distill: bool = False  # a multi-teacher on-policy distillation run per seed after its experts
    claim_k: int | None = Field(None, ge=1)  # samples per item, at least, where expert claims are measured
    cascade: bool = False  # sequential GRPO over the domains per seed, each stage from the one before
    cascade_order: list[str] | None = None  # the cascade's domains in training order (None: the default)
    merge_search: MergeSearchSettings = MergeSearchSettings()


class VllmSettings(Section):
    """`eval.vllm`: engine arguments of the vLLM eval backend (`vllm.LLM(...)`)."""

    gpu_memory_utilization: Number = 0.85
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    dtype: str = "auto"
    enforce_eager: bool = False


class EvalSection(Section):
    """`eval/`: the benchmarks and how responses are sampled; checked further (ranges, benchmark specs)
    when m2rl.evaluate.settings.EvalSettings is made from it."""

    backend: str = "hf"  # hf | vllm
    k: int = 1  # samples per item (a benchmark may set its own `k`)
    temperature: Number = 1.0
    top_p: Number = 1.0
    max_new_tokens: int = 96
    enable_thinking: bool = True
    batch_size: int = 64
    torch_threads: int | None = None
    bootstrap_samples: int = 1000
    vllm: VllmSettings = VllmSettings()
    # name -> the loader's spec (source, domain, k, ... as m2rl.evaluate.benchmarks reads them); null drops one
    benchmarks: dict[str, dict[str, Any] | None] = {}


class MathVerifier(Section):
    """`verifiers.math`."""

    timeout_s: Number = 10.0


class CodeVerifier(Section):
    """`verifiers.code`: the sandbox's limits (conf/verifiers/default.yaml says what each one bounds)."""

    max_tests: int = 20
    time_limit_s: Number = 10.0
    memory_limit_mb: int = 1024
    max_processes: int = 16
    output_limit_mb: Number = 16.0
    sandbox_url: str | None = None
    allow_unsandboxed: bool = False
    packages: list[str] = []
    host_memory_share: Number = 0.5


class InstructionFollowingVerifier(Section):
    """`verifiers.instruction_following`."""

    strict: bool = True


class VerifierSettings(Section):
    """`verifiers/`: the reward rules and the code sandbox (m2rl.verifiers.VerifierConfig is made from it)."""

    require_think: bool = True
    seed: int = 0
    workers: int | None = None
    math: MathVerifier = MathVerifier()
    code: CodeVerifier = CodeVerifier()
    instruction_following: InstructionFollowingVerifier = InstructionFollowingVerifier()
    # reward plugins: rm_type -> "module:function" or {score, domain, check, budget_s, queue_depth}
    # (m2rl.verifiers.plugins); null drops one
    custom: dict[str, str | dict[str, Any] | None] | None = None


# -- jobs --------------------------------------------------------------------------------------
class JobSpec(Strict):
    """What every job has: its kind, the run name, the study it belongs to, its seed and CPU threads.

    The class variables say what a run of this kind is, for the ledger and the commands (RUN_KINDS,
    MODEL_KINDS, TRAINING_KINDS below): whether the job writes a run of its own (an eval writes into
    the evaluated run), whether that run holds a model, whether it saves checkpoints and resumes.
    """

    kind: ClassVar[str]
    own_run: ClassVar[bool] = True
    holds_model: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    name: str
    study: str | None = None
    seed: int = 0
    torch_threads: int | None = Field(None, ge=1)  # None: torch's default; the study executor sets it

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("study")
    @classmethod
    def _valid_study(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    # Fields that do not change what the job produces (left out of its identity).
    NOT_IDENTITY: ClassVar[frozenset[str]] = frozenset({"name", "study", "torch_threads"})

    def identity(self) -> str:
        """A short hash of everything that decides this job's output, to recognise a finished run."""
        payload = self.model_dump(mode="json", exclude=self._identity_exclude())
        text = json.dumps([self.kind, payload], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _identity_exclude(self) -> Any:
        """What `model_dump(exclude=...)` leaves out of the identity."""
        return set(self.NOT_IDENTITY)

    def to_json(self) -> str:
        """The spec as JSON (what the run directory keeps in job.json)."""
        return json.dumps({"kind": self.kind, **self.model_dump(mode="json")}, indent=2)


class SFTJob(JobSpec):
    """Supervised fine-tuning of the base model."""

    kind: ClassVar[str] = "sft"
    holds_model: ClassVar[bool] = True
    trains: ClassVar[bool] = True
    model: ModelSpec
    data: dict[str, Any]
    sft: SFTRecipe
    launcher: LauncherSpec


class RLJob(JobSpec):
    """GRPO from a start model: one domain = an expert, several = the mixed run."""

    kind: ClassVar[str] = "rl"
    holds_model: ClassVar[bool] = True
    trains: ClassVar[bool] = True
    domains: list[str] = Field(min_length=1)
    start_from: str | None = None  # a completed SFT or RL run (id or name); None: model.path
    steps: int = Field(ge=1)
    model: ModelSpec
    data: dict[str, Any]
    rl: RLRecipe
    verifiers: VerifierSettings
    launcher: LauncherSpec
    cascade_stage: int | None = Field(None, ge=1)  # k of a study's cascade: a label, its input is start_from

    NOT_IDENTITY: ClassVar[frozenset[str]] = JobSpec.NOT_IDENTITY | {"cascade_stage"}


class MergeSearch(Strict):
    """A tuned merge's search (m2rl.merge.search): the method's parameters tuned on validation items drawn
    from each domain's training distribution, the verifiers' mean score over `domains` the objective."""

    trials: int = Field(ge=1)  # merges tried (each merged and evaluated on the validation items)
    items_per_domain: int = Field(ge=1)  # validation items per domain
    params: list[str] = []  # the searched parameters; empty: every searchable parameter of the method
    domains: list[str] = []  # the objective's domains; empty: the experts' domains (filled by resolve)
    data: dict[str, Any]  # the data config the validation items come from
    eval: EvalSection  # how responses are sampled (K, temperature, backend) and the test sets to avoid
    verifiers: VerifierSettings


class MergeJob(JobSpec):
    """A weight-space merge of expert runs onto their shared base; with `search`, a tuned merge."""

    kind: ClassVar[str] = "merge"
    holds_model: ClassVar[bool] = True
    method: str
    merge: dict[str, Any]  # the resolved conf/merge section of this method (checked by merge.methods)
    experts: list[str] = Field(min_length=1)  # run references
    base: str | None = None  # default: the experts' shared SFT parent
    search: MergeSearch | None = None

    def _identity_exclude(self) -> Any:
        # a merge without a search hashes as it did before searches existed
        exclude = super()._identity_exclude()
        return exclude | {"search"} if self.search is None else exclude


class EvalJob(JobSpec):
    """Avg@K of one run on the configured benchmarks; results go into that run."""

    kind: ClassVar[str] = "eval"
    own_run: ClassVar[bool] = False
    run: str  # the evaluated run (id, name or directory)
    eval: EvalSection
    verifiers: VerifierSettings
    # Saved results of other settings are replaced (the old file kept under eval/replaced/) only when
    # asked (`m2rl eval --replace`) or by a study's own eval stage; otherwise the eval refuses.
    replace: bool = False

    NOT_IDENTITY: ClassVar[frozenset[str]] = JobSpec.NOT_IDENTITY | {"replace"}


class NeighbourhoodSettings(Strict):
    """`analyze.neighbourhoods`: KL(pi_expert || pi_mixed) on each domain's prompts, sampled from the expert."""

    enabled: bool = True
    prompts: int = Field(ge=2)  # eval prompts per domain (two at least: the standard error is over prompts)
    samples: int = Field(ge=1)  # samples from the expert per prompt (temperature 1, top-p 1)
    max_new_tokens: int = Field(ge=1)
    score_tokens: int = Field(ge=64)  # padded tokens per log-prob scoring batch
    score_dtype: Literal["float32", "bfloat16"] = "float32"


class SelfVerificationSettings(Strict):
    """`analyze.self_verification`: each model judging trajectories of its own domains."""

    enabled: bool = True
    trajectories: int = Field(ge=2)  # per model and domain, half verified correct where there are enough
    modes: list[Literal["outcome", "process"]] = Field(["outcome", "process"], min_length=1)
    max_new_tokens: int = Field(ge=1)


class AnalyzeRecipe(Strict):
    """`analyze/`: what `m2rl analyze` computes and how much of it."""

    threshold: float = Field(gt=0, lt=1)  # eta of |w_RL - w_SFT| > eta * max(|w_RL|, |w_SFT|)
    projection_dim: int = Field(ge=2)
    projection_block: int = Field(ge=2)  # a power of two >= projection_dim (see m2rl.analysis.projection)
    projection_seed: int = 0
    chunk_elements: int = Field(ge=1024)  # elements per streamed read of one tensor
    bootstrap_samples: int = Field(ge=100)
    neighbourhoods: NeighbourhoodSettings
    self_verification: SelfVerificationSettings

    @field_validator("projection_block")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two")
        return value

    @model_validator(mode="after")
    def _block_holds_projection(self) -> AnalyzeRecipe:
        if self.projection_block < self.projection_dim:
            raise ValueError(f"projection_block must be >= projection_dim ({self.projection_dim})")
        return self


class AnalyzeJob(JobSpec):
    """The analyses of a study's models (geometry, consistency, neighbourhoods, self-verification)."""

    kind: ClassVar[str] = "analyze"
    runs: list[str] = Field(min_length=1)  # the analysed runs (their SFT bases are added by resolve)
    analyze: AnalyzeRecipe
    eval: EvalSection  # the benchmarks (prompts, results) and the generation backend
    verifiers: VerifierSettings  # with `eval` and the seed: which saved eval results the analyses read
    publish: str | None = None  # a folder under the runs root that also receives the report

    NOT_IDENTITY: ClassVar[frozenset[str]] = JobSpec.NOT_IDENTITY | {"publish"}

    @field_validator("publish")
    @classmethod
    def _valid_publish(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)


class DistillRecipe(OnPolicyRecipe):
    """`distill/`: multi-teacher on-policy distillation (MT-OPD) on TRL's GRPOTrainer.

    The student samples, each sample's own-domain teacher scores the sampled tokens, and the per-token
    advantage is log p_teacher - log p_student (engine/distill.py); no KL term, no entropy term. The
    student samples, and both sides are scored, at `temperature`.
    """

    section: ClassVar[str] = "distill"
    num_generations: int = Field(ge=1)  # samples per prompt (no group baseline: one is enough)
    # domain -> "host:port" of a `trl vllm-serve --model <that teacher's model dir>` server; the
    # domains not named here are scored in-process (engine/distill.py, ServedTeacher)
    teachers_served: dict[str, str] = {}


class DistillJob(JobSpec):
    """MT-OPD: a student from an SFT run, each sample's tokens scored by its own domain's RL expert."""

    kind: ClassVar[str] = "distill"
    holds_model: ClassVar[bool] = True
    trains: ClassVar[bool] = True
    start_from: str  # the completed SFT run the student starts from (and the teachers were trained from)
    teachers: list[str] = Field(min_length=1)  # expert runs (id or name), one per domain
    domains: list[str] = Field(min_length=1)  # the prompt domains (each needs a teacher)
    steps: int = Field(ge=1)
    model: ModelSpec
    data: dict[str, Any]
    distill: DistillRecipe
    verifiers: VerifierSettings
    launcher: LauncherSpec

    def _identity_exclude(self) -> Any:
        # where a teacher is scored (in-process or on a vLLM server) does not decide the output
        return {**dict.fromkeys(self.NOT_IDENTITY, True), "distill": {"teachers_served": True}}

    def served_teachers(self) -> dict[str, str]:
        """domain -> "host:port" of each vLLM-served teacher, checked (UserError naming the key)."""
        served = dict(self.distill.teachers_served)
        for domain, address in served.items():
            key = f"distill.teachers_served.{domain}"
            if domain not in self.domains:
                raise UserError(
                    f"{key}: {domain} is not one of this run's domains ({', '.join(self.domains)})"
                )
            match = _ADDRESS.match(str(address))
            if not match or not 1 <= int(match.group(2)) <= 65535:
                raise UserError(
                    f"{key}={address}: expected host:port of a `trl vllm-serve` server, e.g. localhost:8001"
                )
            student = self.distill.vllm
            if (
                self.distill.rollout == "vllm"
                and student.mode == "server"
                and (match.group(1), int(match.group(2))) == (student.server_host, student.server_port)
            ):
                raise UserError(
                    f"{key}={address} is the student's vLLM server (distill.vllm); give the teacher its own port"
                )
        if served and self.distill.temperature != 1.0:
            raise UserError(
                f"distill.teachers_served needs distill.temperature=1.0 (got {self.distill.temperature}): vLLM's "
                "prompt log-probs are not scaled by temperature, so a served teacher would be scored at 1.0"
            )
        return served


# host:port (a name, an IPv4 address or a bracketed IPv6 address), as `m2rl distill` accepts for a teacher server
_ADDRESS = re.compile(r"^([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$")

# The run kinds, one spec type each: the one list the ledger, the jobs and the commands derive theirs from.
SPEC_TYPES: dict[str, type[JobSpec]] = {
    cls.kind: cls for cls in (SFTJob, RLJob, MergeJob, EvalJob, AnalyzeJob, DistillJob)
}
RUN_KINDS = tuple(kind for kind, cls in SPEC_TYPES.items() if cls.own_run)  # what a run.json may say
MODEL_KINDS = tuple(
    kind for kind, cls in SPEC_TYPES.items() if cls.holds_model
)  # an analyze run holds a report
TRAINING_KINDS = tuple(kind for kind, cls in SPEC_TYPES.items() if cls.trains)  # checkpoints, resume


def load_spec(text: str) -> JobSpec:
    """A spec from its JSON (job.json)."""
    payload = json.loads(text)
    kind = payload.pop("kind", None)
    if kind not in SPEC_TYPES:
        raise UserError(f"job.json: unknown job kind {kind!r}")
    return validated(SPEC_TYPES[kind], payload)


def _suggestion(model: type[BaseModel], location: tuple, prefix: str) -> str:
    """`; did you mean rl.steps?` for an unknown key close to a known one."""
    node: Any = model
    for part in location[:-1]:
        field = node.model_fields.get(str(part)) if isinstance(node, type) else None
        annotation = getattr(field, "annotation", None)
        node = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if node is None:
            return ""
    if not (isinstance(node, type) and issubclass(node, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(location[-1]), list(node.model_fields), n=1)
    parent = prefix + "".join(f"{part}." for part in location[:-1])
    return f"; did you mean {parent}{close[0]}?" if close else ""


def validated(model: type[Strict], values: dict[str, Any], prefix: str = "") -> Any:
    """`model(**values)`, with validation errors as one UserError line naming each key and value.

    Field names are config keys, so a bad value reads `rl.steps=-1: Input should be greater than or
    equal to 1`; `prefix` names the section a recipe validated on its own came from (`rl.`).
    """
    try:
        return model(**values)
    except ValidationError as exc:
        problems: dict[str, list[str]] = {}
        for error in exc.errors():
            location = tuple(part for part in error["loc"] if not _UNION_TAG.match(str(part)))
            key = prefix + ".".join(str(part) for part in location)
            if error["type"] == "extra_forbidden":
                problems.setdefault(f"{key}: unknown key{_suggestion(model, location, prefix)}", [])
                continue
            shown = error.get("input")
            value = "" if isinstance(shown, dict) else f"={shown}"
            problems.setdefault(f"{key}{value}", []).append(error["msg"])
        lines = [
            f"{where}: {' or '.join(dict.fromkeys(messages))}" if messages else where
            for where, messages in problems.items()
        ]
        raise UserError("invalid config: " + "; ".join(lines)) from None
