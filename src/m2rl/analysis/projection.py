"""A seeded random projection with orthonormal rows, applied block by block (streamable at any size).

The paper compares task vectors after an orthogonal random projection to 256 dimensions. A dense
256 x D matrix (Gaussian, then orthogonalised) needs 256 random numbers per weight, 10^12 for a 4B
model, so the projection is built from structure instead. The flattened tensors, concatenated in
order, are cut into blocks of B elements; block b goes through Q_b = S H D_b: random signs D_b (seeded
by the seed and the block's index), the orthonormal Walsh-Hadamard matrix H of size B, and S, a fixed
seeded choice of m of H's B rows. Every Q_b has orthonormal rows, hence so has P = [Q_1 ... Q_n] /
sqrt(n): P P^T = (1/n) sum_b Q_b Q_b^T = I. This is the subsampled randomized Hadamard transform
(SRHT) applied per block: an orthogonal projection, exactly so when D is a multiple of B; otherwise the
last block is zero-padded, which touches fewer than B of D coordinates. Cost: one fast transform per
block, O(D log B); memory: the blocks being read. The result depends on (seed, B, m) and the order of
the weights only, never on how they are read in chunks.

Hand-written: scipy has a dense Hadamard matrix (`scipy.linalg.hadamard`), not a fast transform over
batches of torch tensors, and a dense B x B product costs B / log2(B) times more.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_ROWS_STREAM = 0x5EED  # the row choice's own random stream, apart from every block's signs


def fwht(values: torch.Tensor) -> torch.Tensor:
    """The orthonormal Walsh-Hadamard transform (Sylvester order) over the last axis (a power of two)."""
    size = values.shape[-1]
    lead = values.shape[:-1]
    out = values
    half = 1
    while half < size:
        pairs = out.reshape(*lead, size // (2 * half), 2, half)
        first, second = pairs[..., 0, :], pairs[..., 1, :]
        out = torch.stack((first + second, first - second), dim=-2).reshape(*lead, size)
        half *= 2
    return out / math.sqrt(size)


class BlockProjection:
    """Projects `count` vectors together to `dim` dimensions, fed in consecutive pieces."""

    def __init__(self, dim: int, block: int, seed: int, count: int):
        if block & (block - 1) or block < dim:
            raise ValueError(f"block {block} must be a power of two >= dim {dim}")
        self.dim, self.block, self.seed, self.count = dim, block, seed, count
        rows = np.random.default_rng([seed, _ROWS_STREAM]).choice(block, size=dim, replace=False)
        self.rows = torch.from_numpy(np.sort(rows))
        self.sums = torch.zeros(count, dim, dtype=torch.float64)
        self.blocks = 0
        self._carry: torch.Tensor | None = None  # the start of the next block

    def add(self, values: torch.Tensor) -> None:
        """The next elements (count x n) of every vector."""
        if self._carry is not None:  # complete the pending block first (no copy of `values`)
            needed = self.block - self._carry.shape[1]
            self._carry = torch.cat([self._carry, values[:, :needed]], dim=1)
            values = values[:, needed:]
            if self._carry.shape[1] < self.block:
                return
            self._project(self._carry)
            self._carry = None
        whole = values.shape[1] // self.block * self.block
        if whole:
            self._project(values[:, :whole])
        if whole < values.shape[1]:
            self._carry = values[:, whole:].clone()

    def vectors(self) -> torch.Tensor:
        """The projected vectors (count x dim) of everything fed so far (a partial last block zero-padded)."""
        if self._carry is not None:
            padded = torch.zeros(self.count, self.block, dtype=torch.float64)
            padded[:, : self._carry.shape[1]] = self._carry
            self._carry = None
            self._project(padded)
        return self.sums / math.sqrt(max(self.blocks, 1))

    def _signs(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        return torch.from_numpy(rng.integers(0, 2, size=self.block).astype(np.float64) * 2 - 1)

    def _project(self, values: torch.Tensor) -> None:
        blocks = values.shape[1] // self.block
        signs = torch.stack([self._signs(self.blocks + i) for i in range(blocks)])
        for k in range(self.count):  # one vector at a time: the transform's temporaries stay one chunk
            mixed = fwht(values[k].to(torch.float64).reshape(blocks, self.block) * signs)
            self.sums[k] += mixed[:, self.rows].sum(dim=0)
        self.blocks += blocks
