"""The `[train]` section of the config: fusion, split, candidates, collaborative factors, ranker, outputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Modality = Literal["text", "image", "audio", "video", "soundtrack"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FusionConfig(_Strict):
    method: Literal["concat", "weighted", "gated"] = "concat"
    weights: dict[Modality, float] = Field(default_factory=lambda: {"text": 0.2, "image": 0.3, "audio": 0.2, "video": 0.3})
    whiten: bool = False
    pca_dim: int | None = None
    dim: int = Field(64, gt=0, description="common dim of the weighted and gated methods")
    epochs: int = Field(30, gt=0, description="gated only")
    gated_target: Literal["pairs", "factors"] = "pairs"


class SplitConfig(_Strict):
    test_days: float = Field(7.0, gt=0)
    val_days: float = Field(7.0, gt=0)


class CandidateConfig(_Strict):
    content: int = Field(100, ge=0)
    covis: int = Field(100, ge=0)
    als: int = Field(100, ge=0)
    pop: int = Field(50, ge=0)
    half_life_days: float = Field(14.0, gt=0)
    recent_days: float = Field(7.0, gt=0, description="window of the recent-popularity feature")


class ALSConfig(_Strict):
    factors: int = Field(32, gt=0)
    regularization: float = Field(0.05, ge=0)
    iterations: int = Field(15, gt=0)
    alpha: float = Field(20.0, gt=0)
    content_map: Literal["auto", "ridge", "mlp"] = "auto"


class RankerConfig(_Strict):
    kind: Literal["lgbm", "mlp"] = "lgbm"
    params: dict[str, Any] = Field(default_factory=dict, description="constructor arguments of the ranker")
    search: bool = False
    search_budget: int = Field(8, gt=0)
    max_train_users: int = Field(5000, gt=0)
    simulated_new_share: float = Field(0.15, ge=0, lt=1, description="share of label-window items whose history "
                                       "is hidden while fitting, so the ranker learns to score new items")


class ItemColdConfig(_Strict):
    enabled: bool = True
    share: float = Field(0.1, gt=0, lt=1)
    min_interactions: int = Field(5, ge=1)


class TrainConfig(_Strict):
    fusion: FusionConfig = FusionConfig()
    split: SplitConfig = SplitConfig()
    candidates: CandidateConfig = CandidateConfig()
    als: ALSConfig = ALSConfig()
    ranker: RankerConfig = RankerConfig()
    item_cold: ItemColdConfig = ItemColdConfig()
    top_k: int = Field(50, gt=0)
    similar_k: int = Field(20, gt=0)
    eval_ks: tuple[int, ...] = (10, 20)
    modalities: tuple[Modality, ...] = ("text", "image", "audio", "video")
    seed: int = 0

    @field_validator("eval_ks")
    @classmethod
    def _reported_ks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not {10, 20} <= set(value) or min(value) < 1:
            raise ValueError("must include 10 and 20 (the tables and paired differences report @10 and @20)")
        return tuple(sorted(set(value)))
