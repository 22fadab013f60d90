"""LightGBM LambdaRank over the scalar features of a RankingData."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import lightgbm
import numpy as np

from ranker.errors import NotFittedError
from ranker.ranking.data import (
    RankingData,
    RankingDataError,
    check_same_features,
    keep_groups_with_positive,
    read_artifact_meta,
    write_artifact_meta,
)

logger = logging.getLogger(__name__)

_KIND = "lgbm_ranker"
_FORMAT_VERSION = 1
_MODEL_FILE = "model.txt"
_MAX_LABEL = 30  # LightGBM's default label_gain covers relevance 0..30


class LGBMRankerModel:
    """LambdaRank ranker; early stops on validation NDCG@eval_at[0] when `valid` is given to fit."""

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        early_stopping_rounds: int = 30,
        eval_at: tuple[int, ...] = (10,),
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        reg_lambda: float = 0.0,
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.eval_at = eval_at
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.seed = seed
        self.n_jobs = n_jobs

    def get_params(self) -> dict:
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "early_stopping_rounds": self.early_stopping_rounds,
            "eval_at": list(self.eval_at),
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "reg_lambda": self.reg_lambda,
            "seed": self.seed,
            "n_jobs": self.n_jobs,
        }

    def fit(self, train: RankingData, *, valid: RankingData | None = None) -> LGBMRankerModel:
        # Groups without a positive have all-equal labels: lambdarank gets zero gradient from them, and
        # in the validation set they would only add a constant NDCG. Drop them from both.
        train = keep_groups_with_positive(train, "train")
        ranker = lightgbm.LGBMRanker(
            objective="lambdarank",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=1 if self.subsample < 1 else 0,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            random_state=self.seed,
            n_jobs=self.n_jobs,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        fit_args = {} if valid is None else self._early_stopping_args(train, valid)
        ranker.fit(
            train.scalars,
            _int_labels(train),
            group=train.group_sizes,
            feature_name=list(train.feature_names),
            **fit_args,
        )
        self.booster_ = ranker.booster_
        self.feature_names_ = train.feature_names
        best = ranker.best_iteration_ if valid is not None else 0
        self.best_iteration_ = int(best) if best and best > 0 else self.booster_.current_iteration()
        logger.info(
            "LightGBM ranker: %d trees kept of %d, %d train groups",
            self.best_iteration_, self.booster_.current_iteration(), train.n_groups,
        )
        return self

    def _early_stopping_args(self, train: RankingData, valid: RankingData) -> dict:
        check_same_features(train.feature_names, valid.feature_names, "valid")
        valid = keep_groups_with_positive(valid, "valid")
        stop = lightgbm.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False)
        return dict(
            **_eval_data(valid.scalars, _int_labels(valid)),
            eval_group=[valid.group_sizes],
            eval_at=list(self.eval_at),
            callbacks=[stop],
        )

    def predict(self, data: RankingData) -> np.ndarray:
        """float32 (n,) scores; higher ranks first within each query group."""
        booster = self._fitted_booster()
        check_same_features(self.feature_names_, data.feature_names, "data")
        scores = booster.predict(data.scalars, num_iteration=self.best_iteration_)
        return np.asarray(scores, dtype=np.float32)

    def contributions(self, data: RankingData) -> np.ndarray:
        """float64 (n, f + 1) per-feature contributions (SHAP values, LightGBM ``pred_contrib``) of each row's
        score, columns in ``feature_names_`` order then the bias; each row sums to its ``predict`` score."""
        booster = self._fitted_booster()
        check_same_features(self.feature_names_, data.feature_names, "data")
        return np.asarray(booster.predict(data.scalars, num_iteration=self.best_iteration_, pred_contrib=True),
                          dtype=np.float64)

    @property
    def feature_importances_(self) -> dict[str, float]:
        """Total split gain per feature, over the trees kept."""
        gains = self._fitted_booster().feature_importance(
            importance_type="gain", iteration=self.best_iteration_
        )
        return {name: float(gain) for name, gain in zip(self.feature_names_, gains)}

    def save(self, path: str | Path) -> Path:
        """Write `path/model.txt` (LightGBM text model, kept trees only) and `path/meta.json`."""
        booster = self._fitted_booster()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        booster.save_model(str(path / _MODEL_FILE), num_iteration=self.best_iteration_)
        meta = {
            "params": self.get_params(),
            "feature_names": list(self.feature_names_),
            "best_iteration": self.best_iteration_,
        }
        write_artifact_meta(path, meta, kind=_KIND, version=_FORMAT_VERSION)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LGBMRankerModel:
        path = Path(path)
        meta = read_artifact_meta(path, kind=_KIND, version=_FORMAT_VERSION)
        params = dict(meta["params"], eval_at=tuple(meta["params"]["eval_at"]))
        model = cls(**params)
        model.booster_ = lightgbm.Booster(model_file=str(path / _MODEL_FILE))
        model.feature_names_ = tuple(meta["feature_names"])
        model.best_iteration_ = int(meta["best_iteration"])
        return model

    def _fitted_booster(self) -> lightgbm.Booster:
        if not hasattr(self, "booster_"):
            raise NotFittedError(
                "this LGBMRankerModel is not fitted yet; call fit(train) or LGBMRankerModel.load(path) first"
            )
        return self.booster_


def _eval_data(features: np.ndarray, labels: np.ndarray) -> dict:
    # LightGBM 4.6 renamed eval_set to eval_X / eval_y and deprecated the old name; support both.
    if "eval_X" in inspect.signature(lightgbm.LGBMRanker.fit).parameters:
        return {"eval_X": (features,), "eval_y": (labels,)}
    return {"eval_set": [(features, labels)]}


def _int_labels(data: RankingData) -> np.ndarray:
    labels = data.labels
    if (labels < 0).any() or (labels > _MAX_LABEL).any() or (labels != np.round(labels)).any():
        raise RankingDataError(
            f"lambdarank needs integer relevance labels in 0..{_MAX_LABEL}; got values "
            f"{np.unique(labels)[:10].tolist()}"
        )
    return labels.astype(np.int32)
