"""The verifier suite: domain-routed, binary, verifiable rewards for math, science, code and IF.

`score(sample, response)` scores one response in this process; `score_batch(samples, responses)`
scores many in a persistent pool of worker processes with a deadline per item (use it from
training loops). `check_sample` is the data-validation hook. Rules: paper-brief.md, Rewards.
"""

from m2rl.verifiers.batch import close_pool, score_batch, score_batch_timed
from m2rl.verifiers.config import VerifierConfig
from m2rl.verifiers.kinds import DOMAIN_ALIASES, RM_TYPES, RewardType
from m2rl.verifiers.registry import check_sample, reward_type, score
from m2rl.verifiers.verdict import Verdict

__all__ = [
    "DOMAIN_ALIASES",
    "RM_TYPES",
    "RewardType",
    "Verdict",
    "VerifierConfig",
    "check_sample",
    "close_pool",
    "reward_type",
    "score",
    "score_batch",
    "score_batch_timed",
]
