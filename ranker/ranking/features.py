"""User-item features for the candidate pairs: the one place that turns tables into a RankingData.

Feature columns, in this fixed order (so train, valid and serving always agree):
  cos_{v}   for each vector set v (sorted by name): row-wise dot of the user and item vectors. Content
            vectors arrive L2-normalised, so this is their cosine; for ALS factors it is the ALS score.
  has_{v}   for each vector set: 1.0 when the item has a vector in v. A missing item vector is all zeros
            (an item with no image, say), which also makes its cos_{v} 0; the flag lets the ranker tell
            "no image" from "an image unlike the user's taste".
  {s}_rank, {s}_score  for each candidate source s (sorted): null (s did not propose the pair) becomes
            MISSING_RANK and 0.0, i.e. "far below anything s proposed".
  n_sources how many sources proposed the pair.
  item_stats columns, then user_stats columns, in their table order; nulls (an item or user absent from
            the stats) become 0.0.
  pair_scores, sorted by name: extra per-pair arrays aligned to the candidate rows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import numpy as np
import polars as pl

from ranker.errors import RankerError
from ranker.ranking.data import RankingData, groups_from_user_idx

logger = logging.getLogger(__name__)

MISSING_RANK = 1.0e4
_ROW = "__candidate_row"
_SOURCE_COLUMN = re.compile(r"^(?P<source>.+)_(?P<kind>rank|score)$")


class FeatureError(RankerError):
    """The inputs of build_features disagree with each other or with the candidate table contract."""


def build_features(
    candidates: pl.DataFrame,
    *,
    vector_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    item_stats: pl.DataFrame,
    user_stats: pl.DataFrame,
    pair_scores: Mapping[str, np.ndarray] | None = None,
    labels: pl.DataFrame | None = None,
    main_vectors: str | None = "fused",
) -> RankingData:
    """Features of every candidate pair, rows sorted by (user_idx, item_idx), one query group per user.

    vector_sets:  name -> (user vectors (n_users, d), item vectors (n_items, d)), indexed by *_idx.
    pair_scores:  name -> float array (n_candidates,) aligned to the rows of `candidates` as given.
    labels:       (user_idx, item_idx) of the positive pairs; every other candidate gets 0.0.
    main_vectors: the vector set copied into user_vec / item_vec for the MLP (None: no vectors).
    """
    pair_scores = dict(pair_scores or {})
    rows = _sorted_pairs(candidates)
    order = rows[_ROW].to_numpy()
    user_idx = rows["user_idx"].to_numpy().astype(np.int64)
    item_idx = rows["item_idx"].to_numpy().astype(np.int64)

    blocks: list[tuple[list[str], np.ndarray]] = [
        _vector_features(vector_sets, user_idx, item_idx),
        _source_features(rows),
        _stats_features(rows, item_stats, key="item_idx", table="item_stats"),
        _stats_features(rows, user_stats, key="user_idx", table="user_stats"),
        _pair_features(pair_scores, order, candidates.height),
    ]
    names = [name for block_names, _ in blocks for name in block_names]
    _check_unique(names)
    scalars = np.concatenate([values for _, values in blocks], axis=1).astype(np.float32)
    user_vec, item_vec = _main_vectors(vector_sets, main_vectors, user_idx, item_idx)  # bounds checked above
    data = RankingData(
        scalars=scalars,
        feature_names=tuple(names),
        group_sizes=groups_from_user_idx(user_idx),
        user_idx=user_idx,
        item_idx=item_idx,
        labels=None if labels is None else _label_column(rows, labels),
        user_vec=user_vec,
        item_vec=item_vec,
    )
    logger.info("built %d features for %d pairs of %d users", len(names), data.n_rows, data.n_groups)
    return data


def _main_vectors(vector_sets, main_vectors: str | None, user_idx: np.ndarray, item_idx: np.ndarray):
    if main_vectors is None:
        return None, None
    if main_vectors not in vector_sets:
        raise FeatureError(
            f"main_vectors={main_vectors!r} is not a vector set; options: {sorted(vector_sets)}, "
            "or main_vectors=None for a ranker that needs no vectors"
        )
    users, items = vector_sets[main_vectors]
    return np.asarray(users, dtype=np.float32)[user_idx], np.asarray(items, dtype=np.float32)[item_idx]


def _sorted_pairs(candidates: pl.DataFrame) -> pl.DataFrame:
    for column in ("user_idx", "item_idx"):
        if column not in candidates.columns:
            raise FeatureError(
                f"the candidate table has no {column!r} column (columns: {candidates.columns}); "
                "pass the output of merge_candidates"
            )
        if candidates[column].null_count():
            raise FeatureError(f"the candidate table has {candidates[column].null_count()} null {column}")
    if candidates.height == 0:
        raise FeatureError("the candidate table is empty; there is nothing to rank")
    n_unique = candidates.select(pl.struct("user_idx", "item_idx").n_unique()).item()
    if n_unique != candidates.height:
        raise FeatureError(
            f"the candidate table repeats {candidates.height - n_unique} (user_idx, item_idx) pairs; "
            "merge the sources into one row per pair (merge_candidates) first"
        )
    return candidates.with_row_index(_ROW).sort(["user_idx", "item_idx"])


def _vector_features(vector_sets, user_idx: np.ndarray, item_idx: np.ndarray):
    cos_columns, has_columns = {}, {}
    for name in sorted(vector_sets):
        users, items = (np.asarray(v, dtype=np.float32) for v in vector_sets[name])
        _check_vectors(name, users, items, user_idx, item_idx)
        item_rows = items[item_idx]
        cos_columns[f"cos_{name}"] = np.einsum("ij,ij->i", users[user_idx], item_rows)
        has_columns[f"has_{name}"] = (item_rows != 0).any(axis=1).astype(np.float32)
    columns = cos_columns | has_columns
    if not columns:
        return [], np.zeros((user_idx.size, 0), dtype=np.float32)
    return list(columns), np.stack(list(columns.values()), axis=1)


def _check_vectors(name, users, items, user_idx, item_idx) -> None:
    if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
        raise FeatureError(
            f"vector set {name!r}: user vectors {users.shape} and item vectors {items.shape} must be "
            "(n_users, d) and (n_items, d) with the same d"
        )
    for what, vectors, idx in (("user", users, user_idx), ("item", items, item_idx)):
        if idx.max() >= vectors.shape[0] or idx.min() < 0:
            raise FeatureError(
                f"vector set {name!r} has {vectors.shape[0]} {what} vectors but the candidates reach "
                f"{what}_idx {int(idx.max())}; give one vector per {what} (zeros when it has none)"
            )
        if not np.isfinite(vectors).all():
            raise FeatureError(
                f"vector set {name!r} holds NaN or infinite {what} vectors; use all-zero vectors "
                "for missing ones"
            )


def _source_features(rows: pl.DataFrame):
    sources = sorted(
        {m["source"] for c in rows.columns if (m := _SOURCE_COLUMN.match(c))}
    )
    names, exprs = [], []
    for source in sources:
        for kind, fill in (("rank", MISSING_RANK), ("score", 0.0)):
            column = f"{source}_{kind}"
            if column not in rows.columns:
                raise FeatureError(
                    f"the candidate table has {source}_{'score' if kind == 'rank' else 'rank'} but no "
                    f"{column}; every source needs both columns"
                )
            names.append(column)
            exprs.append(pl.col(column).cast(pl.Float64).fill_null(fill).alias(column))
    if "sources" in rows.columns:
        n_sources = pl.col("sources").list.len().fill_null(0)
    else:  # count the sources that ranked the pair
        n_sources = pl.sum_horizontal([pl.col(f"{s}_rank").is_not_null() for s in sources] or [pl.lit(0)])
    names.append("n_sources")
    exprs.append(n_sources.cast(pl.Float64).alias("n_sources"))
    return names, rows.select(exprs).to_numpy().astype(np.float32)


def _stats_features(rows: pl.DataFrame, stats: pl.DataFrame, *, key: str, table: str):
    if key not in stats.columns:
        raise FeatureError(f"{table} has no {key!r} column (columns: {stats.columns})")
    if stats[key].n_unique() != stats.height:
        repeats = stats.height - stats[key].n_unique()
        raise FeatureError(f"{table} repeats {repeats} {key} values; give one row per {key}")
    names = [c for c in stats.columns if c != key]
    for name in names:
        dtype = stats.schema[name]
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            raise FeatureError(
                f"{table} column {name!r} has type {dtype}; features must be numeric or boolean "
                "(encode it, or drop it from the table)"
            )
    if not names:
        return [], np.zeros((rows.height, 0), dtype=np.float32)
    stats = stats.with_columns(pl.col(key).cast(pl.Int64))
    joined = rows.select(pl.col(key).cast(pl.Int64)).join(stats, on=key, how="left", maintain_order="left")
    values = joined.select(pl.col(n).cast(pl.Float64).fill_null(0.0).fill_nan(0.0) for n in names)
    return names, values.to_numpy().astype(np.float32)


def _pair_features(pair_scores: Mapping[str, np.ndarray], order: np.ndarray, n_candidates: int):
    names, columns = [], []
    for name in sorted(pair_scores):
        values = np.asarray(pair_scores[name], dtype=np.float32)
        if values.shape != (n_candidates,):
            raise FeatureError(
                f"pair score {name!r} has shape {values.shape}; it must be ({n_candidates},), one value "
                "per candidate row in the candidate table's order"
            )
        if not np.isfinite(values).all():
            raise FeatureError(f"pair score {name!r} holds NaN or infinite values; use 0.0 for 'no score'")
        names.append(name)
        columns.append(values[order])
    values = np.stack(columns, axis=1) if columns else np.zeros((order.size, 0), dtype=np.float32)
    return names, values


def _label_column(rows: pl.DataFrame, labels: pl.DataFrame) -> np.ndarray:
    for column in ("user_idx", "item_idx"):
        if column not in labels.columns:
            raise FeatureError(f"labels has no {column!r} column (columns: {labels.columns})")
    positives = labels.select(pl.col("user_idx", "item_idx").cast(pl.Int64)).unique().with_columns(
        pl.lit(1.0, dtype=pl.Float32).alias("label")
    )
    joined = rows.select(pl.col("user_idx", "item_idx").cast(pl.Int64)).join(
        positives, on=["user_idx", "item_idx"], how="left", maintain_order="left"
    )
    return joined["label"].fill_null(0.0).to_numpy().astype(np.float32)


def _check_unique(names: list[str]) -> None:
    seen, dupes = set(), set()
    for name in names:
        (dupes if name in seen else seen).add(name)
    if dupes:
        raise FeatureError(
            f"feature names collide: {sorted(dupes)}; rename the stats columns or pair scores that "
            "repeat a generated name (cos_*, has_*, *_rank, *_score, n_sources)"
        )
