"""Collaborative factors (implicit ALS) and the content-to-factor map for new items.

Warm users are won by collaborative signal, new items by content: ALS learns
user and item factors from interactions; :class:`ContentToFactorMap` learns
item content vector -> ALS item factors on warm items, so an item nobody has
touched yet still gets a factor row (:func:`complete_item_factors`) and with
it ALS-style scores and candidates.
"""

from __future__ import annotations

import json
import logging
import os

import implicit.cpu.als
import implicit.gpu
import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from ranker.candidates import dense_topk
from ranker.covisit import check_exclude, check_k, empty_topk, interaction_arrays
from ranker.data import NotFittedError

__all__ = [
    "ALSFactors",
    "ContentToFactorMap",
    "NotFittedError",
    "complete_item_factors",
    "select_content_map",
]

log = logging.getLogger(__name__)

_SCORE_BLOCK_CELLS = 1 << 22  # users x items scored at once in recommend (16 MiB of float32)


def _load_npz(path: str | os.PathLike, expected: str) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    if "meta" not in arrays:
        raise ValueError(f"{os.fspath(path)!r} is not a saved {expected} (no 'meta' entry)")
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("class") != expected:
        raise ValueError(
            f"{os.fspath(path)!r} holds a {meta.get('class')!r}, not a {expected}; "
            f"load it with {meta.get('class')}.load"
        )
    return meta, arrays


def _checked_index(values: np.ndarray, size: int, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64).ravel()
    if len(values) and (values.min() < 0 or values.max() >= size):
        raise ValueError(f"{name} must lie in [0, {size}); got [{values.min()}, {values.max()}]")
    return values


def _constructor_params(estimator) -> dict:
    """The constructor's keyword arguments: constructors store them and nothing else."""
    return {name: value for name, value in vars(estimator).items() if not name.endswith("_")}


def _save_npz(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # a file handle keeps numpy from appending ".npz"
        np.savez(handle, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)


class ALSFactors:
    """Implicit-feedback ALS (Hu, Koren & Volinsky) via the ``implicit`` library.

    Confidence of a (user, item) pair is ``1 + alpha * (summed weights)``.
    Users and items without interactions get zero factors (no signal), and
    ``warm_item_mask_`` marks the items that had some.
    """

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 20.0,
        seed: int = 0,
        use_gpu: bool = False,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.seed = seed
        self.use_gpu = use_gpu
        self.num_threads = num_threads

    def _params(self) -> dict:
        return _constructor_params(self)

    def _new_model(self):
        # the GPU build (CUDA extension + RMM) is optional; the CPU one always ships
        if self.use_gpu and implicit.gpu.HAS_CUDA and implicit.gpu.HAS_RMM:
            from implicit.gpu.als import AlternatingLeastSquares

            return AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                iterations=self.iterations, random_state=self.seed,
            )
        if self.use_gpu:
            log.warning("use_gpu=True but implicit has no CUDA build (or RMM) here; training ALS on CPU")
        return implicit.cpu.als.AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha,
            iterations=self.iterations, random_state=self.seed, num_threads=self.num_threads,
        )

    def fit(self, interactions: pl.DataFrame, *, n_users: int, n_items: int) -> ALSFactors:
        users, items, _, weights = interaction_arrays(interactions, n_users=n_users, n_items=n_items)
        if len(users) == 0:
            raise ValueError("ALSFactors.fit got no interactions; it needs at least one (user, item) pair")
        confidence = sp.csr_matrix((weights, (users, items)), shape=(n_users, n_items), dtype=np.float32)
        confidence.sum_duplicates()
        confidence.eliminate_zeros()
        # one BLAS thread (implicit is imported above, so its OpenBLAS is loaded and limited too):
        # implicit warns otherwise, and it keeps the float sums in a fixed order
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._new_model()
            model.fit(confidence, show_progress=False)
        if hasattr(model, "to_cpu"):
            model = model.to_cpu()
        user_factors = np.asarray(model.user_factors, dtype=np.float32)[:, : self.factors]
        item_factors = np.asarray(model.item_factors, dtype=np.float32)[:, : self.factors]
        warm_users = np.diff(confidence.indptr) > 0
        warm_items = np.diff(confidence.tocsc().indptr) > 0
        user_factors[~warm_users] = 0.0  # random init that saw no data is noise, not taste
        item_factors[~warm_items] = 0.0
        self.user_factors_ = np.ascontiguousarray(user_factors)
        self.item_factors_ = np.ascontiguousarray(item_factors)
        self.warm_item_mask_ = warm_items
        log.info(
            "ALS fitted: %d users, %d items (%d warm), %d factors",
            n_users, n_items, int(warm_items.sum()), self.factors,
        )
        return self

    def _check_fitted(self, action: str) -> None:
        if not hasattr(self, "item_factors_"):
            raise NotFittedError(f"ALSFactors is not fitted; call fit(...) or ALSFactors.load(path) before {action}")

    def recommend(
        self, user_idx: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by ``user_factors @ item_factors.T``, excluded items dropped."""
        self._check_fitted("recommend")
        check_k(k)
        n_users, n_items = self.user_factors_.shape[0], self.item_factors_.shape[0]
        user_idx = _checked_index(user_idx, n_users, "user_idx")
        check_exclude(exclude, user_idx, n_items)
        idx, top = empty_topk(len(user_idx), k)
        block = max(1, _SCORE_BLOCK_CELLS // max(n_items, 1))
        for start in range(0, len(user_idx), block):
            users = user_idx[start : start + block]
            scores = self.user_factors_[users] @ self.item_factors_.T
            rows = slice(start, start + len(users))
            idx[rows], top[rows] = dense_topk(scores, k, exclude_rows=None if exclude is None else exclude[users])
        return idx, top

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """ALS score of arbitrary (user, item) pairs, float32 (n_pairs,)."""
        self._check_fitted("score")
        user_idx = _checked_index(user_idx, self.user_factors_.shape[0], "user_idx")
        item_idx = _checked_index(item_idx, self.item_factors_.shape[0], "item_idx")
        if item_idx.shape != user_idx.shape:
            raise ValueError(f"user_idx {user_idx.shape} and item_idx {item_idx.shape} must have equal shapes")
        return np.einsum("ij,ij->i", self.user_factors_[user_idx], self.item_factors_[item_idx])

    def save(self, path: str | os.PathLike) -> None:
        self._check_fitted("save")
        arrays = {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                  "warm_item_mask": self.warm_item_mask_}
        _save_npz(path, {"class": "ALSFactors", "params": self._params()}, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ALSFactors:
        meta, arrays = _load_npz(path, "ALSFactors")
        model = cls(**meta["params"])
        model.user_factors_ = arrays["user_factors"].astype(np.float32)
        model.item_factors_ = arrays["item_factors"].astype(np.float32)
        model.warm_item_mask_ = arrays["warm_item_mask"].astype(bool)
        return model


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
        return _constructor_params(self)

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
        _save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ContentToFactorMap:
        meta, arrays = _load_npz(path, "ContentToFactorMap")
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
