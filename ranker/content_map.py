"""The content-to-factor map: item content vector -> ALS item factors, learned on warm items.

An item nobody has touched yet still gets a factor row (:func:`complete_item_factors`), and with it ALS-style
scores and candidates (the idea behind DropoutNet-style cold-start models).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ranker.data import NotFittedError
from ranker.npz import constructor_params, load_npz, save_npz

__all__ = ["ContentToFactorMap", "complete_item_factors", "select_content_map"]

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


def _validation_report(cmap: ContentToFactorMap, content: np.ndarray, factors: np.ndarray) -> dict:
    predicted = cmap.predict(content).astype(np.float64)
    truth = factors.astype(np.float64)
    norms = np.linalg.norm(predicted, axis=1) * np.linalg.norm(truth, axis=1)
    cosine = np.sum(predicted * truth, axis=1) / np.maximum(norms, 1e-12)
    return {"val_mse": float(np.mean((predicted - truth) ** 2)), "val_cosine": float(np.mean(cosine))}


def select_content_map(
    content_warm: np.ndarray,
    factors_warm: np.ndarray,
    *,
    val_share: float = 0.2,
    seed: int = 0,
    alpha: float = 1.0,
    hidden: int = 128,
    epochs: int = 200,
) -> tuple[ContentToFactorMap, dict]:
    """Fit ridge and MLP maps on a seeded split of warm items; keep the MLP only if it wins.

    The winner (lower validation MSE; ties go to ridge) is refitted on all warm
    items. The report holds each kind's validation MSE and mean cosine, the
    chosen kind and the split sizes.
    """
    if not 0 < val_share < 1:
        raise ValueError(f"val_share={val_share!r} must be strictly between 0 and 1")
    content_warm = _as_matrix(content_warm, "content_warm")
    factors_warm = _as_matrix(factors_warm, "factors_warm")
    n_warm = content_warm.shape[0]
    n_val = int(round(n_warm * val_share))
    maps = {
        "ridge": ContentToFactorMap(kind="ridge", alpha=alpha, seed=seed),
        "mlp": ContentToFactorMap(kind="mlp", hidden=hidden, epochs=epochs, seed=seed),
    }
    if n_val < 1 or n_warm - n_val < 2:
        log.warning("only %d warm items: too few to validate an MLP, using the ridge content map", n_warm)
        report = {"chosen": "ridge", "n_train": n_warm, "n_val": 0, "reason": "too few warm items"}
        return maps["ridge"].fit(content_warm, factors_warm), report
    order = np.random.default_rng(seed).permutation(n_warm)
    val, train = order[:n_val], order[n_val:]
    report: dict = {"n_train": len(train), "n_val": n_val}
    for kind, cmap in maps.items():
        cmap.fit(content_warm[train], factors_warm[train])
        report[kind] = _validation_report(cmap, content_warm[val], factors_warm[val])
    chosen = "mlp" if report["mlp"]["val_mse"] < report["ridge"]["val_mse"] else "ridge"
    report["chosen"] = chosen
    log.info(
        "content map: ridge val MSE %.4g, mlp val MSE %.4g -> %s",
        report["ridge"]["val_mse"], report["mlp"]["val_mse"], chosen,
    )
    return maps[chosen].fit(content_warm, factors_warm), report


def complete_item_factors(
    item_factors: np.ndarray,
    warm_mask: np.ndarray,
    content: np.ndarray,
    cmap: ContentToFactorMap,
) -> np.ndarray:
    """Item factors where items without interactions (``~warm_mask``) get ``cmap.predict(content)``."""
    item_factors = _as_matrix(item_factors, "item_factors")
    warm_mask = np.asarray(warm_mask, dtype=bool)
    content = np.asarray(content, dtype=np.float32)
    if warm_mask.shape != (item_factors.shape[0],) or content.shape[0] != item_factors.shape[0]:
        raise ValueError(
            f"item_factors has {item_factors.shape[0]} rows, warm_mask shape {warm_mask.shape}, "
            f"content {content.shape[0]} rows; all must describe the same items"
        )
    completed = item_factors.copy()
    cold = ~warm_mask
    if cold.any():
        completed[cold] = cmap.predict(content[cold])
    log.info("completed factors of %d cold items from content", int(cold.sum()))
    return completed
