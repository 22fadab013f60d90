"""The `[train]` section of the config: what the weights mean, splits, tuning, sources, ranker, new items.

Defaults were chosen on the validation split of a real catalog (MovieLens ml-latest-small with posters),
never on test numbers; with `tune.enabled` the source and ranker settings below are only the starting point
and fallback, and the values found on each run's own validation split are used and saved with the run.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipelines.config_types import Modality, StrictConfig

Mapping = Literal["auto", "binary", "rating", "liked", "log"]


class FusionConfig(StrictConfig):
    method: str = Field("concat", description="a registered fusion method (fusion.FUSION_METHODS)")
    weights: dict[Modality, float] = Field(
        default_factory=lambda: {"text": 0.2, "image": 0.3, "audio": 0.2, "video": 0.3})
    tune_weights: bool = Field(True, description="choose the modality weights on the new-item validation split")
    whiten: bool = False
    pca_dim: int | None = None
    dim: int = Field(64, gt=0, description="common dim of the weighted and gated methods")
    epochs: int = Field(30, gt=0, description="gated only")
    gated_target: Literal["pairs", "factors"] = "pairs"
    fit_items: int = Field(200_000, ge=1_000, description=(
        "catalogs up to this many items are fused in memory; larger ones fit the normalisers on a seeded sample "
        "of this many items per modality and stream the vectors from the store in batches (concat, weighted)"))


    @field_validator("method")
    @classmethod
    def _registered(cls, value: str) -> str:
        from fusion.fuse import FUSION_METHODS

        if value not in FUSION_METHODS:
            raise ValueError(f"{value!r} is not a registered fusion method; choose from {sorted(FUSION_METHODS)}")
        return value


class SplitConfig(StrictConfig):
    kind: Literal["per_user", "global"] = Field(
        "per_user", description="per_user: each user's last share of events is held out; global: one cutoff")
    test_share: float = Field(0.2, gt=0, lt=1, description="share of events held out for the test protocol")
    val_share: float = Field(0.2, gt=0, lt=1, description="share carved from the training part for validation")
    min_user_events: int = Field(3, ge=2, description="users with fewer events are never held out")


class EvalConfig(StrictConfig):
    min_users: int = Field(200, ge=1, description="a figure resting on fewer users is flagged unreliable")
    every: int = Field(1, ge=0, description=(
        "run the test protocols on every run (1), on one run in `every` (a big catalog's nightly cost: the runs "
        "between publish the model fitted on everything, its guard decided on validation), or never (0)"))
    max_users: int | None = Field(None, gt=0, description=(
        "evaluate a seeded sample of at most this many test users per protocol (a big catalog's nightly cost); "
        "tables and standard errors then describe the sample, and the report says how many of how many"))


class TuneConfig(StrictConfig):
    enabled: bool = True
    trials: int = Field(12, gt=0, description="Optuna trials per study (ALS, EASE, kNN, sequence, fusion, ranker)")
    seconds: float = Field(360.0, gt=0, description="time budget of all studies together; later studies get "
                                                     "what earlier ones left")
    metric_k: int = Field(20, gt=0, description="studies maximise validation NDCG@metric_k")


DEFAULT_DEPTH = {"ease": 100, "ease_recent": 50, "als": 100, "knn": 50, "knn_recent": 50, "seq": 100, "pop": 50,
                 "content": 30, "content_recent": 30}


class CandidateConfig(StrictConfig):
    """How many top items each score block proposes per user (0: a feature only, no candidates)."""

    depth: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_DEPTH), description=(
        "block -> depth; the blocks given are merged into the defaults (set one to 0 to turn it off)"))
    rank_depth: int = Field(200, gt=0, description="ranks are exact to this depth")

    @field_validator("depth", mode="before")
    @classmethod
    def _merged_with_defaults(cls, value: dict[str, int]) -> dict[str, int]:
        return {**DEFAULT_DEPTH, **dict(value)}
    half_life: float = Field(5.0, gt=0, description="events: the weight of a user's k-th most recent event in "
                                                     "the *_recent profiles halves every half_life events")


class EaseConfig(StrictConfig):
    enabled: bool = True
    l2: float = Field(200.0, gt=0)
    mapping: Mapping = "auto"
    min_item_users: int = Field(3, ge=1)
    max_items: int = Field(8000, gt=0, description="EASE inverts an items x items matrix: above this many "
                                                    "eligible items it runs on the most popular ones only")


class ALSConfig(StrictConfig):
    # ml-latest-small validation: these 0.156 NDCG@20, the former defaults (64 factors, 0.05, alpha 20) 0.136
    factors: int = Field(24, gt=0)
    regularization: float = Field(2.0, ge=0)
    iterations: int = Field(30, gt=0)
    alpha: float = Field(1.0, gt=0)
    mapping: Mapping = "auto"


class KNNConfig(StrictConfig):
    shrinkage: float = Field(20.0, ge=0)
    neighbors: int = Field(25, gt=0)


class SeqConfig(StrictConfig):
    window: int = Field(20, gt=0, description="positions apart in a user's timeline that still count as co-visited")
    neighbors: int = Field(200, gt=0)


class RankerConfig(StrictConfig):
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
        from ranker.ranking.registry import RANKERS

        ranker_class = RANKERS[self.kind]
        accepted = set(inspect.signature(ranker_class.__init__).parameters) - {"self"}
        unknown = sorted(set(self.params) - accepted)
        if unknown:
            raise ValueError(f"train.ranker.params {unknown} are not arguments of the {self.kind} ranker; "
                             f"valid: {sorted(accepted)}")
        return self


class NewItemsConfig(StrictConfig):
    positions: tuple[int, ...] = Field((10, 20), description="1-based list positions reserved for the user's best "
                                       "new items (items with vectors but no interactions); () turns it off")
    validation_items: int = Field(400, gt=0, description="hidden items of the new-item validation split")


class ItemColdConfig(StrictConfig):
    enabled: bool = True
    share: float = Field(0.1, gt=0, lt=1)
    min_interactions: int = Field(5, ge=1)


class ScoringConfig(StrictConfig):
    """How the published lists are scored: user partitions, in this process or on a Dask cluster."""

    engine: Literal["local", "dask"] = "local"
    partition_users: int = Field(20000, gt=0, description="users per partition (memory ~ partition x candidates)")
    workers: int = Field(2, gt=0, description="worker processes of a local Dask cluster")
    dask_address: str | None = Field(None, description="an existing Dask scheduler; a local cluster when unset")


class TrainConfig(StrictConfig):
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
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "more candidate sources, by registered name: their constructor arguments, and `module`, a module to "
        "import that registers the source; its blocks propose candidates at train.candidates.depth.<block>"))
    ranker: RankerConfig = RankerConfig()
    new_items: NewItemsConfig = NewItemsConfig()
    item_cold: ItemColdConfig = ItemColdConfig()
    scoring: ScoringConfig = ScoringConfig()
    top_k: int = Field(50, gt=0)
    similar_k: int = Field(20, gt=0)
    eval_ks: tuple[int, ...] = (10, 20)
    modalities: tuple[Modality, ...] = ("text", "image", "audio", "video")
    threads: int = Field(2, gt=0, description="threads for EASE, ALS and LightGBM")
    seed: int = 0

    @field_validator("sources")
    @classmethod
    def _extra_sources(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each extra source is registered (after importing its `module`) and takes the arguments given."""
        from ranker.errors import RankerError
        from ranker.retrieval.sources import check_source_params

        for name, spec in value.items():
            if "module" in spec:
                try:
                    importlib.import_module(spec["module"])
                except ImportError as exc:
                    raise ValueError(f"sources.{name}.module={spec['module']!r} cannot be imported ({exc})") from exc
            try:
                check_source_params(name, {key: v for key, v in spec.items() if key != "module"})
            except RankerError as exc:
                raise ValueError(str(exc)) from exc
        return value

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
