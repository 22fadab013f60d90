"""The ranking dataset shared by every ranker: scalar features, query groups, labels, and vectors.

Rows are candidate (user, item) pairs, contiguous per user: one query group per user, in the order of
`group_sizes`. The MLP also reads the user and item vectors of each row; LightGBM reads only `scalars`.

Also here, because both rankers and the search need them and ranker/ files do not import each other's
internals: the errors of the ranker contract and a small NDCG@k over query groups.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ranker.errors import RankerError

logger = logging.getLogger(__name__)


class RankingDataError(RankerError):
    """The arrays of a RankingData disagree with each other or hold invalid values."""


class FeatureMismatchError(RankerError):
    """A ranker was given features other than the ones it was trained on."""


class ArtifactError(RankerError):
    """A folder given to a ranker's load() does not hold that ranker's artifact."""


META_FILE = "meta.json"


@dataclass(frozen=True, kw_only=True, eq=False)  # arrays have no single truth value for ==
class RankingData:
    """Candidate rows of one split, grouped by user.

    scalars:       float32 (n, f) scalar features, columns named by `feature_names`.
    group_sizes:   int64 (n_groups,) rows per query group; the groups tile the rows in order.
    user_idx, item_idx: int64 (n,) the pair of each row.
    labels:        float32 (n,) relevance (1.0 = positive), or None at inference time.
    user_vec, item_vec: float32 (n, d) vectors of each row's user and item for the MLP, or both None.
    """

    scalars: np.ndarray
    feature_names: tuple[str, ...]
    group_sizes: np.ndarray
    user_idx: np.ndarray
    item_idx: np.ndarray
    labels: np.ndarray | None = None
    user_vec: np.ndarray | None = None
    item_vec: np.ndarray | None = None

    def __post_init__(self) -> None:
        scalars = _as_array(self.scalars, np.float32, "scalars", ndim=2)
        n_rows = scalars.shape[0]
        object.__setattr__(self, "scalars", scalars)
        object.__setattr__(self, "feature_names", tuple(str(name) for name in self.feature_names))
        self._check_feature_names(scalars.shape[1])
        if not np.isfinite(scalars).all():
            bad = sorted({self.feature_names[j] for j in np.nonzero(~np.isfinite(scalars))[1][:20]})
            raise RankingDataError(
                f"scalars hold NaN or infinite values in features {bad}; fill missing values before "
                "building RankingData (build_features fills nulls)"
            )
        for name in ("user_idx", "item_idx"):
            object.__setattr__(self, name, _as_rows(getattr(self, name), np.int64, name, n_rows))
        object.__setattr__(self, "group_sizes", self._checked_groups(n_rows))
        if self.labels is not None:
            labels = _as_rows(self.labels, np.float32, "labels", n_rows)
            if not np.isfinite(labels).all():
                raise RankingDataError(
                    f"labels hold {int((~np.isfinite(labels)).sum())} NaN or infinite values; "
                    "use 0.0 for non-positives"
                )
            object.__setattr__(self, "labels", labels)
        self._check_vectors(n_rows)

    def _check_feature_names(self, n_features: int) -> None:
        if len(self.feature_names) != n_features:
            raise RankingDataError(
                f"feature_names has {len(self.feature_names)} names but scalars has {n_features} "
                "columns; give one name per column"
            )
        if len(set(self.feature_names)) != n_features:
            dupes = sorted({n for n in self.feature_names if self.feature_names.count(n) > 1})
            raise RankingDataError(f"feature_names repeat {dupes}; every feature needs a unique name")

    def _checked_groups(self, n_rows: int) -> np.ndarray:
        sizes = _as_array(self.group_sizes, np.int64, "group_sizes", ndim=1)
        if (sizes <= 0).any():
            raise RankingDataError(
                f"group_sizes holds {int((sizes <= 0).sum())} non-positive sizes; every query group "
                "needs at least one row"
            )
        if int(sizes.sum()) != n_rows:
            raise RankingDataError(
                f"group_sizes sum to {int(sizes.sum())} but there are {n_rows} rows; the groups must "
                "tile the rows exactly (see groups_from_user_idx)"
            )
        return sizes

    def _check_vectors(self, n_rows: int) -> None:
        if (self.user_vec is None) != (self.item_vec is None):
            raise RankingDataError("give both user_vec and item_vec, or neither")
        if self.user_vec is None:
            return
        user_vec = _as_array(self.user_vec, np.float32, "user_vec", ndim=2)
        item_vec = _as_array(self.item_vec, np.float32, "item_vec", ndim=2)
        if user_vec.shape != (n_rows, item_vec.shape[1]) or item_vec.shape[0] != n_rows:
            raise RankingDataError(
                f"user_vec {user_vec.shape} and item_vec {item_vec.shape} must both be ({n_rows}, d) "
                "with the same d: one vector per row"
            )
        object.__setattr__(self, "user_vec", user_vec)
        object.__setattr__(self, "item_vec", item_vec)

    @property
    def n_rows(self) -> int:
        return int(self.scalars.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.group_sizes.shape[0])

    @property
    def group_offsets(self) -> np.ndarray:
        """int64 (n_groups + 1,): group g spans rows offsets[g]:offsets[g + 1]."""
        return np.concatenate([[0], np.cumsum(self.group_sizes)]).astype(np.int64)

    def group_ids(self) -> np.ndarray:
        """int64 (n,): the query group of each row."""
        return np.repeat(np.arange(self.n_groups, dtype=np.int64), self.group_sizes)

    def select_groups(self, groups: np.ndarray) -> RankingData:
        """The dataset restricted to the given query groups (indices or a boolean mask), in that order."""
        groups = np.asarray(groups)
        if groups.dtype == bool:
            if groups.shape != (self.n_groups,):
                raise RankingDataError(
                    f"a boolean group mask needs shape ({self.n_groups},), got {groups.shape}"
                )
            groups = np.nonzero(groups)[0]
        groups = groups.astype(np.int64)
        if groups.size and (groups.min() < 0 or groups.max() >= self.n_groups):
            raise RankingDataError(f"group indices must lie in 0..{self.n_groups - 1}")
        sizes = self.group_sizes[groups]
        first_out = np.cumsum(sizes) - sizes  # where each selected group starts in the output
        rows = np.repeat(self.group_offsets[groups] - first_out, sizes) + np.arange(int(sizes.sum()))

        def take(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[rows]

        return RankingData(
            scalars=self.scalars[rows],
            feature_names=self.feature_names,
            group_sizes=self.group_sizes[groups],
            user_idx=self.user_idx[rows],
            item_idx=self.item_idx[rows],
            labels=take(self.labels),
            user_vec=take(self.user_vec),
            item_vec=take(self.item_vec),
        )

    def groups_with_positive(self) -> np.ndarray:
        """bool (n_groups,): which query groups hold at least one positive label."""
        if self.labels is None:
            raise RankingDataError("this RankingData has no labels; build it with labels= for training")
        return np.add.reduceat(self.labels > 0, self.group_offsets[:-1]) > 0


def concat_ranking_data(parts: list[RankingData]) -> RankingData:
    """The query groups of every part, one after the other (same features required)."""
    if not parts:
        raise RankingDataError("concat_ranking_data needs at least one RankingData")
    for part in parts[1:]:
        check_same_features(parts[0].feature_names, part.feature_names, "a concatenated part")

    def joined(name: str):
        values = [getattr(part, name) for part in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return RankingData(scalars=np.concatenate([p.scalars for p in parts]), feature_names=parts[0].feature_names,
                       group_sizes=np.concatenate([p.group_sizes for p in parts]), user_idx=joined("user_idx"),
                       item_idx=joined("item_idx"), labels=joined("labels"), user_vec=joined("user_vec"),
                       item_vec=joined("item_vec"))


def groups_from_user_idx(user_idx: np.ndarray) -> np.ndarray:
    """Sizes of the runs of equal user_idx, for rows already sorted by user (one group per user)."""
    user_idx = np.asarray(user_idx)
    if user_idx.ndim != 1:
        raise RankingDataError(f"user_idx must be 1-D, got shape {user_idx.shape}")
    if user_idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    steps = np.diff(user_idx)
    if (steps < 0).any():
        at = int(np.nonzero(steps < 0)[0][0])
        raise RankingDataError(
            f"user_idx is not sorted: row {at + 1} has user {user_idx[at + 1]} after user {user_idx[at]}; "
            "sort the rows by user_idx first"
        )
    starts = np.concatenate([[0], np.nonzero(steps)[0] + 1, [user_idx.size]])
    return np.diff(starts).astype(np.int64)


def ndcg_at_k(scores: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray, k: int) -> float:
    """Mean NDCG@k over the query groups that hold a positive (gain 2^label - 1, log2 discount).

    Ties in `scores` keep row order, so the result is deterministic.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    group_sizes = np.asarray(group_sizes, dtype=np.int64)
    if scores.shape != labels.shape or scores.ndim != 1 or int(group_sizes.sum()) != scores.size:
        raise RankingDataError(
            f"scores {scores.shape}, labels {labels.shape} and group_sizes (sum {int(group_sizes.sum())}) "
            "disagree; give one score and one label per row"
        )
    if k < 1:
        raise RankingDataError(f"k must be >= 1, got {k}")
    group_ids = np.repeat(np.arange(group_sizes.size), group_sizes)
    offsets = np.concatenate([[0], np.cumsum(group_sizes)])
    dcg = _dcg(-scores, labels, group_ids, offsets, k)
    ideal = _dcg(-labels, labels, group_ids, offsets, k)
    has_positive = ideal > 0
    if not has_positive.any():
        return 0.0
    return float(np.mean(dcg[has_positive] / ideal[has_positive]))


def _dcg(sort_key: np.ndarray, labels: np.ndarray, group_ids: np.ndarray, offsets: np.ndarray, k: int):
    order = np.lexsort((sort_key, group_ids))  # by group, then by key ascending; stable on ties
    position = np.arange(order.size) - offsets[group_ids[order]]
    in_top = position < k
    gains = (np.power(2.0, labels[order]) - 1.0) / np.log2(position + 2.0)
    return np.bincount(group_ids[order][in_top], weights=gains[in_top], minlength=offsets.size - 1)


def keep_groups_with_positive(data: RankingData, name: str) -> RankingData:
    """The labelled query groups of `data` that hold a positive; raises when there are none."""
    if data.labels is None:
        raise RankingDataError(f"{name} has no labels; build it with build_features(..., labels=...)")
    keep = data.groups_with_positive()
    if not keep.any():
        raise RankingDataError(
            f"no query group of {name} holds a positive label ({data.n_groups} groups); a ranker "
            "cannot learn or be validated without positives: check the label cutoff"
        )
    if not keep.all():
        logger.info("%s: dropping %d of %d groups with no positive", name, int((~keep).sum()), keep.size)
        data = data.select_groups(keep)
    return data


def check_same_features(expected: tuple[str, ...], given: tuple[str, ...], what: str) -> None:
    """Raise FeatureMismatchError unless `given` names exactly the features a model was trained on."""
    if tuple(expected) == tuple(given):
        return
    missing = [f for f in expected if f not in given]
    extra = [f for f in given if f not in expected]
    raise FeatureMismatchError(
        f"{what} has features other than the model's: missing {missing}, unexpected {extra}"
        + ("" if missing or extra else ", same names in another order")
        + "; build it with the same build_features inputs as the training data"
    )


def write_artifact_meta(folder: Path, meta: dict, *, kind: str, version: int) -> None:
    """Write folder/meta.json tagged with the artifact kind and format version."""
    tagged = {"kind": kind, "format_version": version} | meta
    (folder / META_FILE).write_text(json.dumps(tagged, indent=2))


def read_artifact_meta(folder: Path, *, kind: str, version: int) -> dict:
    """Read folder/meta.json, checking it was written by the expected kind of ranker."""
    meta_file = folder / META_FILE
    if not meta_file.is_file():
        raise ArtifactError(f"{meta_file} not found; {folder} is not a saved ranker folder")
    meta = json.loads(meta_file.read_text())
    if meta.get("kind") != kind or meta.get("format_version") != version:
        raise ArtifactError(
            f"{folder} holds a {meta.get('kind')!r} artifact (format {meta.get('format_version')}), "
            f"not a {kind!r} of format {version}; load it with the class that saved it"
        )
    return meta


def _as_array(value, dtype, name: str, *, ndim: int) -> np.ndarray:
    array = np.ascontiguousarray(value, dtype=dtype)
    if array.ndim != ndim:
        raise RankingDataError(f"{name} must be {ndim}-D, got shape {array.shape}")
    return array


def _as_rows(value, dtype, name: str, n_rows: int) -> np.ndarray:
    array = _as_array(value, dtype, name, ndim=1)
    if array.shape[0] != n_rows:
        raise RankingDataError(f"{name} has {array.shape[0]} values but scalars has {n_rows} rows")
    return array
