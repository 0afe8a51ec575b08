"""Weight-space merging of RL experts onto their SFT base: mergekit methods and the paper's semantics."""

from m2rl.merge.methods import PAPER_METHODS, available_methods
from m2rl.merge.run import merge_models

__all__ = ["PAPER_METHODS", "available_methods", "merge_models"]
