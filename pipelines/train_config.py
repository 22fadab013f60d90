"""The `[train]` section of the config: what the weights mean, splits, tuning, sources, ranker, new items.

Defaults were chosen on the validation split of a real catalog (MovieLens ml-latest-small with posters),
never on test numbers; with `tune.enabled` the source and ranker settings below are only the starting point
and fallback, and the values found on each run's own validation split are used and saved with the run.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Modality = Literal["text", "image", "audio", "video", "soundtrack"]
Mapping = Literal["auto", "binary", "rating", "liked", "log"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FusionConfig(_Strict):
    method: Literal["concat", "weighted", "gated"] = "concat"
    weights: dict[Modality, float] = Field(default_factory=lambda: {"text": 0.2, "image": 0.3, "audio": 0.2, "video": 0.3})
    tune_weights: bool = Field(True, description="choose the modality weights on the new-item validation split")
    whiten: bool = False
    pca_dim: int | None = None
    dim: int = Field(64, gt=0, description="common dim of the weighted and gated methods")
    epochs: int = Field(30, gt=0, description="gated only")
    gated_target: Literal["pairs", "factors"] = "pairs"


class SplitConfig(_Strict):
    kind: Literal["per_user", "global"] = Field(
        "per_user", description="per_user: each user's last share of events is held out; global: one cutoff")
    test_share: float = Field(0.2, gt=0, lt=1, description="share of events held out for the test protocol")
    val_share: float = Field(0.2, gt=0, lt=1, description="share carved from the training part for validation")
    min_user_events: int = Field(3, ge=2, description="users with fewer events are never held out")


class EvalConfig(_Strict):
    min_users: int = Field(200, ge=1, description="a figure resting on fewer users is flagged unreliable")


class TuneConfig(_Strict):
    enabled: bool = True
    trials: int = Field(12, gt=0, description="Optuna trials per study (ALS, EASE, kNN, sequence, fusion, ranker)")
    seconds: float = Field(360.0, gt=0, description="time budget of all studies together; later studies get "
                                                     "what earlier ones left")
    metric_k: int = Field(20, gt=0, description="studies maximise validation NDCG@metric_k")


class CandidateConfig(_Strict):
    """How many top items each score block proposes per user (0: a feature only, no candidates)."""

    depth: dict[str, int] = Field(default_factory=lambda: {
        "ease": 100, "ease_recent": 50, "als": 100, "knn": 50, "knn_recent": 50, "seq": 100, "pop": 50,
        "content": 30, "content_recent": 30})
    rank_depth: int = Field(200, gt=0, description="ranks are exact to this depth")
    half_life: float = Field(5.0, gt=0, description="events: the weight of a user's k-th most recent event in "
                                                     "the *_recent profiles halves every half_life events")


class EaseConfig(_Strict):
    enabled: bool = True
    l2: float = Field(200.0, gt=0)
    mapping: Mapping = "auto"
    min_item_users: int = Field(3, ge=1)
    max_items: int = Field(8000, gt=0, description="EASE inverts an items x items matrix: above this many "
                                                    "eligible items it runs on the most popular ones only")


class ALSConfig(_Strict):
    # ml-latest-small validation: these 0.156 NDCG@20, the former defaults (64 factors, 0.05, alpha 20) 0.136
    factors: int = Field(24, gt=0)
    regularization: float = Field(2.0, ge=0)
    iterations: int = Field(30, gt=0)
    alpha: float = Field(1.0, gt=0)
    mapping: Mapping = "auto"


class KNNConfig(_Strict):
    shrinkage: float = Field(20.0, ge=0)
    neighbors: int = Field(25, gt=0)


class SeqConfig(_Strict):
    window: int = Field(20, gt=0, description="positions apart in a user's timeline that still count as co-visited")
    neighbors: int = Field(200, gt=0)


class RankerConfig(_Strict):
    kind: Literal["lgbm", "mlp"] = "lgbm"
    params: dict[str, Any] = Field(default_factory=dict, description="constructor arguments of the ranker")
    max_train_users: int = Field(20000, gt=0)
    simulated_new_share: float = Field(0.1, ge=0, lt=1, description="share of established items whose history "
                                       "is hidden in the ranker's training level, so it learns to score new items")

    @model_validator(mode="after")
    def _params_fit_the_ranker(self) -> RankerConfig:
        """Unknown ranker arguments fail here, at config time, not in the middle of a night's training."""
        if not self.params:
            return self
        if self.kind == "lgbm":
            from ranker.lgbm import LGBMRankerModel as ranker_class
        else:
            from ranker.mlp import MLPRankerModel as ranker_class
        accepted = set(inspect.signature(ranker_class.__init__).parameters) - {"self"}
        unknown = sorted(set(self.params) - accepted)
        if unknown:
            raise ValueError(f"train.ranker.params {unknown} are not arguments of the {self.kind} ranker; "
                             f"valid: {sorted(accepted)}")
        return self


class NewItemsConfig(_Strict):
    positions: tuple[int, ...] = Field((10, 20), description="1-based list positions reserved for the user's best "
                                       "new items (items with vectors but no interactions); () turns it off")
    validation_items: int = Field(400, gt=0, description="hidden items of the new-item validation split")


class ItemColdConfig(_Strict):
    enabled: bool = True
    share: float = Field(0.1, gt=0, lt=1)
    min_interactions: int = Field(5, ge=1)


class TrainConfig(_Strict):
    weight_kind: Literal["auto", "rating", "count"] = Field(
        "auto", description="what `weight` means: rating (explicit), count (implicit strength), or auto-detect")
    fusion: FusionConfig = FusionConfig()
    split: SplitConfig = SplitConfig()
    eval: EvalConfig = EvalConfig()
    tune: TuneConfig = TuneConfig()
    candidates: CandidateConfig = CandidateConfig()
    ease: EaseConfig = EaseConfig()
    als: ALSConfig = ALSConfig()
    knn: KNNConfig = KNNConfig()
    seq: SeqConfig = SeqConfig()
    ranker: RankerConfig = RankerConfig()
    new_items: NewItemsConfig = NewItemsConfig()
    item_cold: ItemColdConfig = ItemColdConfig()
    top_k: int = Field(50, gt=0)
    similar_k: int = Field(20, gt=0)
    eval_ks: tuple[int, ...] = (10, 20)
    modalities: tuple[Modality, ...] = ("text", "image", "audio", "video")
    threads: int = Field(2, gt=0, description="threads for EASE, ALS and LightGBM")
    seed: int = 0

    @field_validator("eval_ks")
    @classmethod
    def _reported_ks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not {10, 20} <= set(value) or min(value) < 1:
            raise ValueError("must include 10 and 20 (the tables and paired differences report @10 and @20)")
        return tuple(sorted(set(value)))

    @field_validator("new_items")
    @classmethod
    def _positions(cls, value: NewItemsConfig) -> NewItemsConfig:
        if any(p < 1 for p in value.positions) or len(set(value.positions)) != len(value.positions):
            raise ValueError("new_items.positions must be distinct 1-based positions, e.g. [10, 20]")
        return value
