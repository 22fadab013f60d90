"""The content-to-factor map: item content vector -> ALS item factors, learned on warm items.

An item nobody has touched yet still gets a factor row from its content, and with it ALS-style scores and
candidates (the idea behind DropoutNet-style cold-start models).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ranker.errors import NotFittedError
from ranker.npz import constructor_params, load_npz, save_npz

__all__ = ["ContentToFactorMap"]

log = logging.getLogger(__name__)


def _mlp(n_in: int, hidden: int, n_out: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_out))


_MAP_KINDS = ("ridge", "mlp")


class ContentToFactorMap:
    """Item content vector -> collaborative item factors, learned on warm items.

    ``kind="ridge"``: closed-form ridge regression with an unpenalised intercept.
    ``kind="mlp"``: a one-hidden-layer torch MLP on standardised inputs and
    targets, trained with AdamW on seeded mini-batches.
    """

    def __init__(
        self,
        *,
        kind: str = "ridge",
        alpha: float = 1.0,
        hidden: int = 128,
        epochs: int = 200,
        lr: float = 3e-3,
        batch_size: int = 256,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        self.kind = kind
        self.alpha = alpha
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.seed = seed

    def _params(self) -> dict:
        return constructor_params(self)

    def fit(self, content: np.ndarray, factors: np.ndarray) -> ContentToFactorMap:
        if self.kind not in _MAP_KINDS:
            raise ValueError(f"kind={self.kind!r} is not a content map; options: {list(_MAP_KINDS)}")
        content = _as_matrix(content, "content")
        factors = _as_matrix(factors, "factors")
        if content.shape[0] != factors.shape[0] or content.shape[0] == 0:
            raise ValueError(
                f"content has {content.shape[0]} rows and factors {factors.shape[0]}; "
                "give one factor row per content row, at least one"
            )
        self.n_features_in_ = content.shape[1]
        self.n_factors_ = factors.shape[1]
        if self.kind == "ridge":
            self.coef_, self.intercept_ = _fit_ridge(content, factors, self.alpha)
        else:
            self._fit_mlp(content, factors)
        return self

    def _fit_mlp(self, content: np.ndarray, factors: np.ndarray) -> None:
        self.x_mean_, self.x_scale_ = _standardizer(content)
        self.y_mean_, self.y_scale_ = _standardizer(factors)
        x = torch.from_numpy((content - self.x_mean_) / self.x_scale_)
        y = torch.from_numpy((factors - self.y_mean_) / self.y_scale_)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(self.seed)
            module = _mlp(x.shape[1], self.hidden, y.shape[1])
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.AdamW(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        module.train()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a small MLP: extra intra-op threads only spin, and slow it many-fold
        try:
            for _ in range(self.epochs):
                for batch in torch.randperm(len(x), generator=generator).split(self.batch_size):
                    optimizer.zero_grad()
                    torch.nn.functional.mse_loss(module(x[batch]), y[batch]).backward()
                    optimizer.step()
        finally:
            torch.set_num_threads(threads)
        module.eval()
        self.module_ = module

    def predict(self, content: np.ndarray) -> np.ndarray:
        if not hasattr(self, "n_factors_"):
            raise NotFittedError("ContentToFactorMap is not fitted; call fit(content, factors) or load(path) first")
        content = _as_matrix(content, "content")
        if content.shape[1] != self.n_features_in_:
            raise ValueError(
                f"content has {content.shape[1]} dimensions but the map was fitted on "
                f"{self.n_features_in_}; use the same content vectors as at fit time"
            )
        if self.kind == "ridge":
            return (content @ self.coef_ + self.intercept_).astype(np.float32)
        with torch.inference_mode():
            out = self.module_(torch.from_numpy((content - self.x_mean_) / self.x_scale_)).numpy()
        return (out * self.y_scale_ + self.y_mean_).astype(np.float32)

    def save(self, path: str | os.PathLike) -> None:
        if not hasattr(self, "n_factors_"):
            raise NotFittedError("ContentToFactorMap is not fitted; nothing to save")
        meta = {"class": "ContentToFactorMap", "params": self._params(),
                "n_features_in": self.n_features_in_, "n_factors": self.n_factors_}
        if self.kind == "ridge":
            arrays = {"coef": self.coef_, "intercept": self.intercept_}
        else:
            arrays = {"x_mean": self.x_mean_, "x_scale": self.x_scale_,
                      "y_mean": self.y_mean_, "y_scale": self.y_scale_}
            arrays |= {f"state.{k}": v.numpy() for k, v in self.module_.state_dict().items()}
        save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ContentToFactorMap:
        meta, arrays = load_npz(path, "ContentToFactorMap")
        cmap = cls(**meta["params"])
        cmap.n_features_in_, cmap.n_factors_ = meta["n_features_in"], meta["n_factors"]
        if cmap.kind == "ridge":
            cmap.coef_, cmap.intercept_ = arrays["coef"], arrays["intercept"]
            return cmap
        for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
            setattr(cmap, f"{name}_", arrays[name])
        module = _mlp(cmap.n_features_in_, cmap.hidden, cmap.n_factors_)
        state = {k.removeprefix("state."): torch.from_numpy(v) for k, v in arrays.items() if k.startswith("state.")}
        module.load_state_dict(state)
        cmap.module_ = module.eval()
        return cmap


def _as_matrix(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN/inf; replace missing vectors with zeros first")
    return values


def _standardizer(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=0)
    scale = values.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)  # constant columns stay as they are
    return mean.astype(np.float32), scale.astype(np.float32)


def _fit_ridge(content: np.ndarray, factors: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r} must be > 0 for ridge")
    x = content.astype(np.float64)
    y = factors.astype(np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    n, d = xc.shape
    if d <= n:  # primal: a d x d system
        coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(d), xc.T @ yc)
    else:  # dual: an n x n system, cheaper when dimensions outnumber items
        coef = xc.T @ np.linalg.solve(xc @ xc.T + alpha * np.eye(n), yc)
    intercept = y_mean - x_mean @ coef
    return coef.astype(np.float32), intercept.astype(np.float32)
