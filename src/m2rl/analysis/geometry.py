"""Weight-update geometry of RL task vectors t = theta_RL - theta_SFT, streamed tensor by tensor.

Each tensor is read in row chunks (m2rl.merge.tensors: plain reads, no memory map) from the SFT model
and from every RL model at once, upcast to float64 and folded into running sums: weights changed per
model and layer under the paper's relative threshold |w_RL - w_SFT| > eta * max(|w_RL|, |w_SFT|)
(strictly greater: a change equal to the threshold is no change), pairwise intersections of the
changed masks, sign conflicts among weights both models changed, the Gram matrix of the task vectors
(exact cosines), per-layer squared norms, and the 256-d projection (m2rl.analysis.projection). Memory
is one chunk per model (`chunk_elements`), never a whole model, whatever K and the model size.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m2rl.analysis.projection import BlockProjection
from m2rl.errors import UserError
from m2rl.merge.tensors import ModelTensors

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layer_of(name: str) -> str:
    """The layer a tensor belongs to: `layer 3`, or its own short name (`embed_tokens`, `norm`, `lm_head`)."""
    match = _LAYER.search(name)
    if match:
        return f"layer {int(match.group(1))}"
    return name.removeprefix("model.").removesuffix(".weight")


def _layer_order(layer: str) -> tuple[int, int, str]:
    if layer.startswith("layer "):
        return (1, int(layer.split()[1]), "")
    return (0 if "embed" in layer else 2, 0, layer)


def relative_step(dtype: torch.dtype) -> tuple[float, float]:
    """The relative size of one representable step of `dtype`: ulp(x) / |x| lies in (eps/2, eps]."""
    eps = torch.finfo(dtype).eps
    return eps / 2, eps


@dataclass
class Geometry:
    """Running sums over every weight, and what the report reads from them."""

    labels: list[str]
    dtype: str
    step: tuple[float, float]  # relative size of one step of the checkpoints' dtype
    threshold: float
    numel: int
    layers: list[str]
    layer_numel: np.ndarray  # per layer
    layer_changed: np.ndarray  # models x layers
    layer_sq_norm: np.ndarray  # models x layers
    both_changed: np.ndarray  # models x models: weights both changed
    opposite: np.ndarray  # models x models: of those, updated in opposite directions
    gram: np.ndarray  # models x models: dot products of the task vectors
    projected: np.ndarray  # models x projection dim

    @property
    def changed(self) -> np.ndarray:
        return self.layer_changed.sum(axis=1)

    @property
    def fraction_changed(self) -> np.ndarray:
        return self.changed / self.numel

    @property
    def norms(self) -> np.ndarray:
        return np.sqrt(np.diag(self.gram))

    @property
    def jaccard(self) -> np.ndarray:
        """|A and B| / |A or B| of the changed masks (1 on the diagonal; 0 where neither changed anything)."""
        union = self.changed[:, None] + self.changed[None, :] - self.both_changed
        return np.divide(self.both_changed, union, out=np.zeros(union.shape), where=union > 0)

    @property
    def jaccard_random(self) -> np.ndarray:
        """The Jaccard overlap two independent masks of the same change rates would have: pq / (p + q - pq)."""
        p = self.fraction_changed
        both = p[:, None] * p[None, :]
        union = p[:, None] + p[None, :] - both
        return np.divide(both, union, out=np.zeros(union.shape), where=union > 0)

    @property
    def cosine(self) -> np.ndarray:
        return _cosines(self.gram)

    @property
    def projected_cosine(self) -> np.ndarray:
        return _cosines(self.projected @ self.projected.T)

    @property
    def sign_conflict(self) -> np.ndarray:
        """Of the weights both models changed, the share they moved in opposite directions (what TIES resolves)."""
        return np.divide(
            self.opposite,
            self.both_changed,
            out=np.full(self.opposite.shape, np.nan),
            where=self.both_changed > 0,
        )

    @property
    def layer_fraction(self) -> np.ndarray:
        return self.layer_changed / np.maximum(self.layer_numel, 1)

    @property
    def layer_norm(self) -> np.ndarray:
        return np.sqrt(self.layer_sq_norm)

    @property
    def threshold_reads_as(self) -> str:
        """What the threshold means at this dtype: below one step, any change at all passes it."""
        low, high = self.step
        if self.threshold <= low:
            return (
                f"changed at all: eta={self.threshold:g} is below one {self.dtype} step "
                f"({100 * low:.2g}-{100 * high:.2g}% relative)"
            )
        return (
            f"a relative change above eta={self.threshold:g} (one {self.dtype} step is {low:.2g}-{high:.2g})"
        )

    def to_json(self) -> dict[str, Any]:
        """Every number of the analysis, as plain lists (NaN where undefined)."""
        return {
            "models": self.labels,
            "dtype": self.dtype,
            "dtype_relative_step": list(self.step),
            "threshold": self.threshold,
            "threshold_reads_as": self.threshold_reads_as,
            "numel": self.numel,
            "fraction_changed": self.fraction_changed.tolist(),
            "norm": self.norms.tolist(),
            "jaccard": self.jaccard.tolist(),
            "jaccard_random": self.jaccard_random.tolist(),
            "cosine": self.cosine.tolist(),
            "projected_cosine": self.projected_cosine.tolist(),
            "projection_dim": int(self.projected.shape[1]),
            "sign_conflict": self.sign_conflict.tolist(),
            "layers": self.layers,
            "layer_fraction_changed": self.layer_fraction.tolist(),
            "layer_norm": self.layer_norm.tolist(),
        }


def _cosines(gram: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.diag(gram))
    outer = norms[:, None] * norms[None, :]
    return np.divide(gram, outer, out=np.full(gram.shape, np.nan), where=outer > 0)


def _shared_tensors(base: ModelTensors, models: list[ModelTensors], labels: list[str]) -> list[str]:
    """The floating-point tensors of the base, checked to exist with the same shape in every model."""
    names = [n for n in base.names() if base.info(n).dtype.is_floating_point]
    for label, model in zip(labels, models, strict=True):
        missing = [n for n in names if n not in model.entries]
        if missing:
            raise UserError(f"{label}: {len(missing)} tensor(s) of the SFT model missing, e.g. {missing[0]}")
        reshaped = [n for n in names if model.info(n).shape != base.info(n).shape]
        if reshaped:
            raise UserError(f"{label}: tensor {reshaped[0]} has another shape than in the SFT model")
    return names


def _checkpoint_dtype(models: list[ModelTensors], names: list[str]) -> torch.dtype:
    """The dtype holding most of the RL models' weights."""
    weights: dict[torch.dtype, int] = {}
    for model in models:
        for name in names:
            info = model.info(name)
            weights[info.dtype] = weights.get(info.dtype, 0) + info.numel
    return max(weights, key=weights.__getitem__)


def task_vector_geometry(
    base_dir: Path,
    models: list[tuple[str, Path]],
    threshold: float,
    projection_dim: int,
    projection_block: int,
    projection_seed: int,
    chunk_elements: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> Geometry:
    """The geometry of each model's task vector against the base (SFT) model, in one streamed pass."""
    labels = [label for label, _ in models]
    count = len(models)
    with ModelTensors(base_dir) as base, contextlib.ExitStack() as stack:
        readers = [stack.enter_context(ModelTensors(directory)) for _, directory in models]
        names = _shared_tensors(base, readers, labels)
        dtype = _checkpoint_dtype(readers, names)
        layers = sorted({layer_of(n) for n in names}, key=_layer_order)
        column = {layer: i for i, layer in enumerate(layers)}
        layer_numel = np.zeros(len(layers), dtype=np.int64)
        layer_changed = np.zeros((count, len(layers)), dtype=np.int64)
        layer_sq_norm = np.zeros((count, len(layers)))
        both = np.zeros((count, count), dtype=np.int64)
        opposite = np.zeros((count, count), dtype=np.int64)
        gram = np.zeros((count, count))
        projection = BlockProjection(projection_dim, projection_block, projection_seed, count)
        total = sum(base.info(n).numel for n in names)
        done = 0
        for name in names:
            where = column[layer_of(name)]
            for first, last in base.row_chunks(name, chunk_elements):
                sft = base.read_rows(name, first, last).to(torch.float64).reshape(-1)
                deltas = torch.empty(count, sft.numel(), dtype=torch.float64)
                masks = torch.empty(count, sft.numel(), dtype=torch.bool)
                scale = sft.abs()
                for k, reader in enumerate(readers):
                    weights = reader.read_rows(name, first, last).to(torch.float64).reshape(-1)
                    torch.sub(weights, sft, out=deltas[k])
                    limit = torch.maximum(weights.abs_(), scale, out=weights).mul_(threshold)  # in place
                    torch.gt(deltas[k].abs(), limit, out=masks[k])
                    del weights, limit
                del sft, scale
                layer_numel[where] += deltas.shape[1]
                layer_changed[:, where] += masks.sum(dim=1).numpy()
                products = (deltas @ deltas.T).numpy()
                gram += products
                layer_sq_norm[:, where] += np.diag(products)
                positive = deltas > 0
                for i in range(count):
                    for j in range(i + 1, count):
                        shared = masks[i] & masks[j]
                        both[i, j] += int(shared.sum())
                        opposite[i, j] += int((shared & (positive[i] != positive[j])).sum())
                projection.add(deltas)
                done += deltas.shape[1]
                if on_progress is not None:
                    on_progress(done, total)
    both += both.T
    opposite += opposite.T
    np.fill_diagonal(both, layer_changed.sum(axis=1))
    return Geometry(
        labels=labels,
        dtype=str(dtype).removeprefix("torch."),
        step=relative_step(dtype),
        threshold=threshold,
        numel=total,
        layers=layers,
        layer_numel=layer_numel,
        layer_changed=layer_changed,
        layer_sq_norm=layer_sq_norm,
        both_changed=both,
        opposite=opposite,
        gram=gram,
        projected=projection.vectors().numpy(),
    )
