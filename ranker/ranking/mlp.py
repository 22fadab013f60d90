"""A small MLP ranker over [user_vec, item_vec, user_vec * item_vec, standardised scalars] (torch, CPU).

Trained per query group: "listwise" is softmax cross-entropy of the scores against the group's label
distribution (ListNet top-1); "pairwise" is BPR, -log sigmoid(s_pos - s_neg) over every (positive,
negative) pair of a group, averaged per group so that users with long lists do not dominate.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import nn

from ranker.errors import NotFittedError, RankerError
from ranker.ranking.data import (
    FeatureMismatchError,
    RankingData,
    check_same_features,
    keep_groups_with_positive,
    ndcg_at_k,
    read_artifact_meta,
    write_artifact_meta,
)

logger = logging.getLogger(__name__)

LOSSES = ("listwise", "pairwise")
_KIND = "mlp_ranker"
_FORMAT_VERSION = 1
_WEIGHTS_FILE = "model.safetensors"
_PREDICT_ROWS = 65536
_MIN_STD = 1e-6  # constant features (e.g. a modality every item has) are centred, not blown up


class InvalidParamError(RankerError):
    """A constructor parameter of MLPRankerModel is out of range."""


class MLPRankerModel:
    """MLP ranker; early stops on validation NDCG@eval_at (patience epochs) when `valid` is given."""

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (128, 64),
        epochs: int = 10,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        loss: str = "listwise",
        batch_groups: int = 64,
        patience: int = 3,
        eval_at: int = 10,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.loss = loss
        self.batch_groups = batch_groups
        self.patience = patience
        self.eval_at = eval_at
        self.seed = seed

    def get_params(self) -> dict:
        return {
            "hidden": list(self.hidden),
            "epochs": self.epochs,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "loss": self.loss,
            "batch_groups": self.batch_groups,
            "patience": self.patience,
            "eval_at": self.eval_at,
            "seed": self.seed,
        }

    def fit(self, train: RankingData, *, valid: RankingData | None = None) -> MLPRankerModel:
        self._check_params()
        # Groups without a positive give no listwise target and no (positive, negative) pair.
        train = keep_groups_with_positive(train, "train")
        if valid is not None:
            check_same_features(train.feature_names, valid.feature_names, "valid")
            valid = keep_groups_with_positive(valid, "valid")
        self.feature_names_ = train.feature_names
        self.vector_dim_ = 0 if train.user_vec is None else int(train.user_vec.shape[1])
        std = train.scalars.std(axis=0)
        self.scalar_mean_ = train.scalars.mean(axis=0).astype(np.float32)
        self.scalar_std_ = np.where(std < _MIN_STD, 1.0, std).astype(np.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.network_ = _build_network(self._input_dim(), tuple(self.hidden))
            self._train_epochs(train, valid)
        return self

    def _train_epochs(self, train: RankingData, valid: RankingData | None) -> None:
        optimizer = torch.optim.AdamW(
            self.network_.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        generator = torch.Generator().manual_seed(self.seed)
        self.history_: list[dict] = []
        best_score, best_state, self.best_epoch_ = -np.inf, None, self.epochs
        for epoch in range(1, self.epochs + 1):
            train_loss = self._train_one_epoch(train, optimizer, generator)
            record = {"epoch": epoch, "train_loss": train_loss}
            if valid is not None:
                record["valid_ndcg"] = ndcg_at_k(
                    self.predict(valid), valid.labels, valid.group_sizes, self.eval_at
                )
            self.history_.append(record)
            logger.info("MLP ranker epoch %d: %s", epoch, record)
            if valid is None:
                continue
            if record["valid_ndcg"] > best_score:
                best_score, self.best_epoch_ = record["valid_ndcg"], epoch
                best_state = copy.deepcopy(self.network_.state_dict())
            elif epoch - self.best_epoch_ >= self.patience:
                break
        if best_state is not None:
            self.network_.load_state_dict(best_state)

    def _train_one_epoch(self, train: RankingData, optimizer, generator) -> float:
        self.network_.train()
        offsets, sizes = train.group_offsets[:-1], train.group_sizes
        labels = torch.from_numpy(train.labels)
        total, n_batches = 0.0, 0
        for batch in torch.randperm(train.n_groups, generator=generator).split(self.batch_groups):
            rows, mask = _padded_rows(offsets[batch.numpy()], sizes[batch.numpy()])
            flat_rows = rows[mask]
            scores = torch.zeros(mask.shape)
            scores[torch.from_numpy(mask)] = self.network_(self._inputs(train, flat_rows)).squeeze(1)
            batch_labels = torch.zeros(mask.shape)
            batch_labels[torch.from_numpy(mask)] = labels[torch.from_numpy(flat_rows)]
            loss = _LOSS_FUNCTIONS[self.loss](scores, batch_labels, torch.from_numpy(mask))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n_batches = total + loss.item(), n_batches + 1
        return total / max(n_batches, 1)

    def predict(self, data: RankingData) -> np.ndarray:
        """float32 (n,) scores; higher ranks first within each query group."""
        if not hasattr(self, "network_"):
            raise NotFittedError(
                "this MLPRankerModel is not fitted yet; call fit(train) or MLPRankerModel.load(path) first"
            )
        check_same_features(self.feature_names_, data.feature_names, "data")
        given_dim = 0 if data.user_vec is None else int(data.user_vec.shape[1])
        if self.vector_dim_ and given_dim != self.vector_dim_:
            raise FeatureMismatchError(
                f"the model was trained on {self.vector_dim_}-d user/item vectors but data has "
                f"{given_dim or 'no'} vectors; build it with the same main_vectors as the training data"
            )
        self.network_.eval()
        out = np.empty(data.n_rows, dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, data.n_rows, _PREDICT_ROWS):
                rows = np.arange(start, min(start + _PREDICT_ROWS, data.n_rows))
                out[rows] = self.network_(self._inputs(data, rows)).squeeze(1).numpy()
        return out

    def _inputs(self, data: RankingData, rows: np.ndarray) -> torch.Tensor:
        scalars = (data.scalars[rows] - self.scalar_mean_) / self.scalar_std_
        parts = [torch.from_numpy(scalars)]
        if self.vector_dim_:
            user, item = torch.from_numpy(data.user_vec[rows]), torch.from_numpy(data.item_vec[rows])
            parts = [user, item, user * item] + parts
        return torch.cat(parts, dim=1)

    def _input_dim(self) -> int:
        return 3 * self.vector_dim_ + len(self.feature_names_)

    def _check_params(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidParamError(f"loss={self.loss!r} is not a ranking loss; options: {list(LOSSES)}")
        hidden = tuple(self.hidden)
        if not all(isinstance(h, int) and h > 0 for h in hidden):
            raise InvalidParamError(f"hidden={self.hidden!r} must be a tuple of positive layer widths")
        for name in ("epochs", "batch_groups", "patience", "eval_at"):
            if int(getattr(self, name)) < 1:
                raise InvalidParamError(f"{name}={getattr(self, name)!r} must be >= 1")

    def save(self, path: str | Path) -> Path:
        """Write `path/model.safetensors` (the network's state_dict) and `path/meta.json` (scalers)."""
        if not hasattr(self, "network_"):
            raise NotFittedError("this MLPRankerModel is not fitted yet; there is nothing to save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.network_.state_dict().items()}
        safetensors.torch.save_file(state, str(path / _WEIGHTS_FILE))
        meta = {
            "params": self.get_params(),
            "feature_names": list(self.feature_names_),
            "vector_dim": self.vector_dim_,
            "scalar_mean": self.scalar_mean_.tolist(),
            "scalar_std": self.scalar_std_.tolist(),
            "best_epoch": self.best_epoch_,
            "history": getattr(self, "history_", []),  # the training curve, for the run's report
        }
        write_artifact_meta(path, meta, kind=_KIND, version=_FORMAT_VERSION)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MLPRankerModel:
        path = Path(path)
        meta = read_artifact_meta(path, kind=_KIND, version=_FORMAT_VERSION)
        model = cls(**dict(meta["params"], hidden=tuple(meta["params"]["hidden"])))
        model.feature_names_ = tuple(meta["feature_names"])
        model.vector_dim_ = int(meta["vector_dim"])
        model.scalar_mean_ = np.asarray(meta["scalar_mean"], dtype=np.float32)
        model.scalar_std_ = np.asarray(meta["scalar_std"], dtype=np.float32)
        model.best_epoch_ = int(meta["best_epoch"])
        model.history_ = meta.get("history", [])  # absent in models saved before it was kept
        network = _build_network(model._input_dim(), tuple(model.hidden))
        network.load_state_dict(safetensors.torch.load_file(str(path / _WEIGHTS_FILE)))
        model.network_ = network.eval()
        return model


def _build_network(input_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(input_dim, width), nn.ReLU()]
        input_dim = width
    layers.append(nn.Linear(input_dim, 1))
    return nn.Sequential(*layers)


def _padded_rows(starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, L) row indices of B groups padded to the longest, and the mask of real rows."""
    positions = np.arange(int(sizes.max()))
    mask = positions[None, :] < sizes[:, None]
    rows = np.where(mask, starts[:, None] + positions[None, :], 0)
    return rows, mask


def _listwise_loss(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    target = labels / labels.sum(dim=1, keepdim=True)
    log_p = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
    return -(target * log_p.masked_fill(~mask, 0.0)).sum(dim=1).mean()


def _pairwise_loss(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    pairs = (labels[:, :, None] > labels[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    per_pair = nn.functional.softplus(scores[:, None, :] - scores[:, :, None])  # -log sigmoid(s_i - s_j)
    n_pairs = pairs.sum(dim=(1, 2))
    per_group = (per_pair * pairs).sum(dim=(1, 2)) / n_pairs.clamp(min=1)
    has_pairs = n_pairs > 0
    if not has_pairs.any():  # every row of every group is positive: nothing to order
        return scores.sum() * 0.0
    return per_group[has_pairs].mean()


_LOSS_FUNCTIONS = {"listwise": _listwise_loss, "pairwise": _pairwise_loss}
