"""What every config section shares: the modalities, and the strict base (unknown keys and mutation refused)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

Modality = Literal["text", "image", "audio", "video", "soundtrack"]
MODALITIES: tuple[str, ...] = get_args(Modality)[:4]  # a catalog column each
OPTIONAL_MODALITIES: tuple[str, ...] = get_args(Modality)[4:]  # soundtrack: the video file's audio track


class StrictConfig(BaseModel):
    """A config section: unknown keys are errors (a typo never passes silently), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
