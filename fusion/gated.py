"""Learned gated fusion: per-modality linear projections mixed by a softmax over the modalities present.

Trained contrastively (InfoNCE with in-batch negatives) so that items consumed by the same users land
close together (``pairs``), and/or by similarity regression onto target embeddings such as the items'
collaborative factors (``targets``: within a batch, the fused cosine of two items is regressed onto the
cosine of their targets, so target and fused dims need not match). The masked softmax means an item
with only text still gets a vector in the same space, which is what a new item needs; random
modality dropout during training teaches the net to cope with missing modalities.
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.align import AlignedBlocks
from fusion.base import FusionBase
from fusion.errors import FusionInputError
from fusion.normalize import BlockNormalizer

logger = logging.getLogger(__name__)
STATE_NAME = "gated.pt"
META_NAME = "gated.json"
_INFER_BATCH = 8192


class GatedNet(nn.Module):
    """Projection + gate score per modality; masked softmax over present modalities; L2 output."""

    def __init__(self, input_dims: list[int], dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList([nn.Linear(d, dim) for d in input_dims])
        self.gate = nn.ModuleList([nn.Linear(d, 1) for d in input_dims])

    def forward(self, xs: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        z = torch.stack([F.normalize(p(x), dim=1) for p, x in zip(self.proj, xs)], dim=1)
        scores = torch.cat([g(x) for g, x in zip(self.gate, xs)], dim=1).masked_fill(~mask, float("-inf"))
        attn = torch.softmax(scores, dim=1).nan_to_num(0.0)  # an item with no modality -> all zeros
        return F.normalize((attn.unsqueeze(-1) * z).sum(dim=1), dim=1)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` should match row i of ``b`` against the other rows in the batch."""
    logits = a @ b.T / temperature
    labels = torch.arange(a.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def similarity_regression(fused: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between the in-batch cosine matrices of fused vectors and of their targets."""
    unit_targets = F.normalize(targets, dim=1)
    return ((fused @ fused.T - unit_targets @ unit_targets.T) ** 2).mean()


def _check_pairs(pairs: np.ndarray | None, n: int, usable: np.ndarray) -> np.ndarray | None:
    if pairs is None:
        return None
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
        raise FusionInputError(f"pairs has shape {pairs.shape} dtype {pairs.dtype}; expected int (P, 2) item_idx")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise FusionInputError(f"pairs hold item_idx outside [0, {n}): min {pairs.min()}, max {pairs.max()}")
    keep = usable[pairs[:, 0]] & usable[pairs[:, 1]] & (pairs[:, 0] != pairs[:, 1])
    return pairs[keep].astype(np.int64)


def _check_targets(targets: np.ndarray | None, n: int, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows with a target, their targets); all-NaN rows mean 'no target' (e.g. items ALS never saw)."""
    if targets is None:
        return None
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != 2 or targets.shape[0] != n:
        raise FusionInputError(f"targets has shape {targets.shape}; expected ({n}, t), one row per item")
    finite = np.isfinite(targets)
    partial = finite.any(axis=1) & ~finite.all(axis=1)
    if partial.any():
        raise FusionInputError(
            f"targets rows {np.flatnonzero(partial)[:5].tolist()} are partly NaN; "
            "a row is either all finite or all NaN (no target)"
        )
    rows = np.flatnonzero(finite.all(axis=1) & usable)
    return rows, targets[rows]


def _batch_indices(n: int, batch_size: int, steps: int, gen: torch.Generator) -> list[torch.Tensor]:
    """``steps`` batches cycling through fresh permutations of range(n); never larger than n, so a batch
    holds no row twice (a repeated pair would be its own in-batch negative)."""
    size = min(batch_size, n)
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(math.ceil(steps * size / n) or 1)])
    return [order[s * size : (s + 1) * size] for s in range(steps)]


@contextmanager
def _torch_threads(n: int | None):
    """Run with ``n`` intra-op threads (None: leave torch's setting). The net is tiny: on a busy machine
    extra threads cost far more in synchronisation than they save (measured 15x slower with 2 vs 1)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class GatedFusion(FusionBase):
    """Small torch gated-attention fusion, trained on co-consumed pairs and/or target embeddings."""

    method = "gated"
    learns_from = frozenset({"pairs", "targets"})

    def __init__(
        self,
        *,
        dim: int = 64,
        epochs: int = 10,
        lr: float = 1e-3,
        temperature: float = 0.1,
        seed: int = 0,
        batch_size: int = 512,
        weight_decay: float = 0.0,
        modality_dropout: float = 0.1,
        center: bool = True,
        num_threads: int | None = 1,
    ) -> None:
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.temperature = temperature
        self.seed = seed
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.modality_dropout = modality_dropout
        self.center = center
        self.num_threads = num_threads

    def get_params(self) -> dict:
        return {
            "dim": self.dim, "epochs": self.epochs, "lr": self.lr, "temperature": self.temperature,
            "seed": self.seed, "batch_size": self.batch_size, "weight_decay": self.weight_decay,
            "modality_dropout": self.modality_dropout, "center": self.center, "num_threads": self.num_threads,
        }  # fmt: skip

    def _make_normalizer(self, modality: str, input_dim: int) -> BlockNormalizer:
        return BlockNormalizer(center=self.center)

    def _check_params(self) -> None:
        checks = {
            "dim": self.dim >= 1, "epochs": self.epochs >= 0, "lr": self.lr > 0,
            "temperature": self.temperature > 0, "batch_size": self.batch_size >= 2,
            "modality_dropout": 0.0 <= self.modality_dropout < 1.0,
            "num_threads": self.num_threads is None or self.num_threads >= 1,
        }  # fmt: skip
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise FusionInputError(
                f"GatedFusion parameters {({b: getattr(self, b) for b in bad})} are out of range: need dim >= 1, "
                "epochs >= 0, lr > 0, temperature > 0, batch_size >= 2, 0 <= modality_dropout < 1, num_threads >= 1"
            )

    def fit(
        self, blocks: AlignedBlocks, *, pairs: np.ndarray | None = None, targets: np.ndarray | None = None
    ) -> GatedFusion:
        """Train on ``pairs`` (int (P, 2) co-consumed item_idx) and/or ``targets`` (n, t); one is required."""
        self._check_params()
        if pairs is None and targets is None:
            raise FusionInputError(
                "GatedFusion needs pairs or targets to learn from; build pairs from train interactions with "
                "fusion.cooccurrence_pairs(user_idx, item_idx, max_pairs=..., seed=...), or use 'concat'"
            )
        normed = self._fit_normalizers(blocks)
        xs = [torch.from_numpy(normed[m]) for m in self.modalities_]
        columns = [blocks.modalities.index(m) for m in self.modalities_]
        mask = torch.from_numpy(np.ascontiguousarray(blocks.mask[:, columns]))
        usable = blocks.mask.any(axis=1)
        pairs = _check_pairs(pairs, blocks.n_items, usable)
        target_rows = _check_targets(targets, blocks.n_items, usable)
        n_pairs = 0 if pairs is None else len(pairs)
        n_targets = 0 if target_rows is None else len(target_rows[0])
        if n_pairs == 0 and n_targets == 0:
            raise FusionInputError(
                "no usable training signal: every pair or target row involves an item with no modality "
                "(or pairs are self-pairs); check that pairs use item_idx of the aligned blocks"
            )
        with torch.random.fork_rng(devices=[]), _torch_threads(self.num_threads):
            torch.manual_seed(self.seed)
            self.net_ = GatedNet([x.shape[1] for x in xs], self.dim)
            self.loss_history_ = self._train(xs, mask, pairs, target_rows)
        self.net_.eval()
        self.dim_ = self.dim
        return self

    def _train(self, xs, mask, pairs, target_rows) -> list[float]:
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sizes = [len(pairs) if pairs is not None else 0, len(target_rows[0]) if target_rows is not None else 0]
        steps = math.ceil(max(sizes) / self.batch_size)
        history = []
        self.net_.train()
        for epoch in range(self.epochs):
            pair_batches = _batch_indices(sizes[0], self.batch_size, steps, gen) if sizes[0] else [None] * steps
            target_batches = _batch_indices(sizes[1], self.batch_size, steps, gen) if sizes[1] else [None] * steps
            total = 0.0
            for pair_b, target_b in zip(pair_batches, target_batches):
                loss = torch.zeros(())
                if pair_b is not None and len(pair_b) > 1:
                    both = torch.from_numpy(pairs[pair_b.numpy()])
                    left, right = self._embed(xs, mask, both[:, 0], gen), self._embed(xs, mask, both[:, 1], gen)
                    loss = loss + info_nce(left, right, self.temperature)
                if target_b is not None and len(target_b) > 1:
                    rows = torch.from_numpy(target_rows[0][target_b.numpy()])
                    tgt = torch.from_numpy(target_rows[1][target_b.numpy()])
                    loss = loss + similarity_regression(self._embed(xs, mask, rows, gen), tgt)
                if not loss.requires_grad:  # a 1-row batch has no negatives: nothing to learn
                    continue
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            history.append(total / max(steps, 1))
            logger.debug("gated fusion epoch %d: loss %.4f", epoch, history[-1])
        return history

    def _embed(self, xs, mask, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Fused vectors of ``rows`` with random modality dropout (never dropping an item's last modality)."""
        present = mask[rows]
        if self.modality_dropout > 0:
            kept = present & (torch.rand(present.shape, generator=gen) >= self.modality_dropout)
            present = torch.where(kept.any(dim=1, keepdim=True), kept, present)
        return self.net_([x[rows] for x in xs], present)

    def fuse(self, normed: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        n_items = mask.shape[0]
        out = np.zeros((n_items, self.dim_), dtype=np.float32)
        mask_t = torch.from_numpy(np.ascontiguousarray(mask))
        with torch.inference_mode(), _torch_threads(self.num_threads):
            for start in range(0, n_items, _INFER_BATCH):
                sl = slice(start, start + _INFER_BATCH)
                xs = [torch.from_numpy(normed[m][sl]) for m in self.modalities_]
                out[sl] = self.net_(xs, mask_t[sl]).numpy()
        return out

    def _save_state(self, directory: Path) -> None:
        torch.save(self.net_.state_dict(), directory / STATE_NAME)
        meta = {"loss_history": self.loss_history_}
        (directory / META_NAME).write_text(json.dumps(meta, indent=2))

    def _load_state(self, directory: Path) -> None:
        meta = json.loads((directory / META_NAME).read_text())
        self.loss_history_ = [float(v) for v in meta["loss_history"]]
        self.net_ = GatedNet([self.input_dims_[m] for m in self.modalities_], self.dim)
        self.net_.load_state_dict(torch.load(directory / STATE_NAME, weights_only=True))
        self.net_.eval()
