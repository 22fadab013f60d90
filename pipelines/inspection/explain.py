"""A LightGBM ranker's score of a pair, in words: its largest per-feature contributions (``pred_contrib``).

The contributions and the bias add up to the ranker's raw score, the number the list is ordered by, so the
words explain that number, not an approximation of it.
"""

from __future__ import annotations

import numpy as np

from ranker.ranking.data import RankingData

SHOWN = 3  # contributions named per item; the rest are summed into "other features"
SOURCE_PHRASES = {"als": "ALS", "ease": "EASE", "ease_recent": "recent-history EASE", "knn": "item-kNN",
                  "knn_recent": "recent-history item-kNN", "seq": "next-item (sequence)", "pop": "popularity",
                  "content": "content similarity", "content_recent": "content similarity to recent items"}
MODALITY_WORDS = {"text": "text", "image": "image", "audio": "audio", "video": "video", "soundtrack": "soundtrack"}
FEATURE_PHRASES = {
    "n_sources": "number of sources that found it", "item_is_new": "new item",
    "user_mean_weight": "user's mean rating", "user_events": "user's activity",
    "user_weight_std": "spread of the user's ratings", "user_span_days": "user's history span",
    "user_last_day_events": "user's last-day activity", "item_age_days": "item age",
    "item_days_since_last": "days since the item was last used", "item_mean_weight": "item's mean rating",
    "item_n_before": "popularity (all time)", "item_n_last_1d": "recent popularity (1 day)",
    "item_n_last_7d": "recent popularity (7 days)", "item_n_last_30d": "recent popularity (30 days)",
    "item_n_last_365d": "popularity (365 days)", "item_share_liked": "share who liked the item",
    "cos_fused": "fused-vector similarity to the user",
}


def _source_phrase(source: str) -> str | None:
    if source in SOURCE_PHRASES:
        return SOURCE_PHRASES[source]
    if source.startswith("content_"):  # a per-modality content block: content_image, content_text, ...
        return f"{MODALITY_WORDS.get(source[len('content_'):], source[len('content_'):])} similarity"
    return None


def phrase(feature: str) -> str:
    """A short human phrase for a feature name; the raw name for one this table does not know."""
    if feature in FEATURE_PHRASES:
        return FEATURE_PHRASES[feature]
    for kind, word in (("_score", "score"), ("_rank", "rank")):
        if feature.endswith(kind):
            source = _source_phrase(feature[: -len(kind)])
            if source is not None:
                # a similarity is its score; a rank reads as the source's position
                return source if kind == "_score" and "similarity" in source else f"{source} {word}"
    if feature.startswith("has_"):
        return f"has {feature[len('has_'):]}"
    return feature


def contributions(ranker, data: RankingData) -> np.ndarray | None:
    """(n, f + 1) contributions then bias per row of ``data``, or None for a ranker without them (the MLP)."""
    explain = getattr(ranker, "contributions", None)
    return None if explain is None else explain(data)


def describe(row: np.ndarray, names: tuple[str, ...], shown: int = SHOWN) -> str:
    """One row of contributions (features then bias) as words, largest magnitude first, e.g.
    "image similarity +0.41, ALS score +0.30, recent popularity (7 days) +0.12; other features -0.05, base -0.20"."""
    features, bias = row[:-1], float(row[-1])
    order = np.argsort(-np.abs(features), kind="stable")
    named = [i for i in order[:shown] if features[i] != 0]
    rest = float(features.sum() - features[named].sum())
    words = [f"{phrase(names[i])} {features[i]:+.2f}" for i in named]
    return ", ".join(words or ["no feature moved it"]) + f"; other features {rest:+.2f}, base {bias:+.2f}"
