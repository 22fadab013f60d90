"""image/hf-clip: CLIP vision tower ``image_embeds`` (transformers CLIPVisionModelWithProjection).

For machines whose HF cache or a local folder holds CLIP weights (a full
CLIPModel checkpoint works: only its vision tower and projection are loaded).
Preprocessing is the checkpoint's own image processor.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from extractors.base import ExtractorConfigError, ExtractResult, fingerprint
from extractors.batching import embed_batches, stack_collate
from extractors.devices import (
    OOMBackoff,
    autocast,
    effective_precision,
    pin_memory,
    prepare_model,
    resolve_device,
    to_device,
)
from extractors.files import ReadOptions, read_options
from extractors.media import read_image_rgb
from extractors.specs import HFClipImageSpec
from extractors.weights import hf_dir_digest, resolve_hf_dir, seeded

logger = logging.getLogger(__name__)


def decode_clip_image(path: str, *, processor, min_size: int, reads: ReadOptions) -> torch.Tensor:
    """File -> CLIP pixel_values (3, H, W) (runs in DataLoader workers)."""
    image = read_image_rgb(path, min_size=min_size, reads=reads)
    return processor(images=image, return_tensors="pt")["pixel_values"][0]


def transform_clip_frame(frame: np.ndarray, *, processor) -> torch.Tensor:
    """RGB uint8 frame (H, W, 3) -> CLIP pixel_values (video decoding workers use this)."""
    return processor(images=Image.fromarray(frame), return_tensors="pt")["pixel_values"][0]


class ClipImageExtractor:
    modality = "image"

    def __init__(self, *, name: str, spec: HFClipImageSpec):
        self.name, self.spec = name, spec
        self.device = resolve_device(spec.device)
        self.precision = effective_precision(self.device, spec.precision)
        model, self.processor, weights_sha = _build_clip(spec)
        self.model = prepare_model(model, self.device)
        self.dim = int(model.config.projection_dim)
        self.decode_size = int(model.config.image_size)
        self.frame_transform = functools.partial(transform_clip_frame, processor=self.processor)
        self._backoff = OOMBackoff(spec.batch_size)
        self.fingerprint = fingerprint(
            name,
            spec,
            weights_sha256=weights_sha,
            precision=self.precision,
            preprocessing={"processor": self.processor.to_dict(), "jpeg_draft_min_size": self.decode_size},
        )
        logger.info("image/hf-clip %s on %s: dim=%d", spec.model, self.device, self.dim)

    def embed(self, inputs: Sequence[str], *, root: str | None = None) -> ExtractResult:
        decode = functools.partial(decode_clip_image, processor=self.processor, min_size=self.decode_size,
                                   reads=read_options(self.spec, root))
        return embed_batches(inputs, decode, self.embed_tensor, dim=self.dim,
                             batch_size=self.spec.batch_size, num_workers=self.spec.num_workers,
                             collate=stack_collate, pin_memory=pin_memory(self.device))

    def embed_tensor(self, pixels: torch.Tensor) -> np.ndarray:
        """(n, dim) float32 vectors of preprocessed pixel_values (n, 3, H, W)."""
        parts = self._backoff.run(self._forward, pixels)
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def _forward(self, pixels: torch.Tensor) -> np.ndarray:
        pixels = to_device(pixels, self.device)
        with torch.inference_mode(), autocast(self.device, self.spec.precision):
            embeds = self.model(pixel_values=pixels).image_embeds
        embeds = embeds.float()
        if self.spec.normalize:
            embeds = torch.nn.functional.normalize(embeds, p=2, dim=1)
        return embeds.cpu().numpy()


def _build_clip(spec: HFClipImageSpec):
    """(model, image processor, weights digest) from a folder / HF cache, or random from a config."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        CLIPImageProcessor,
        CLIPVisionModelWithProjection,
    )

    if spec.weights == "random":
        if spec.model != "clip_vision_model":
            raise ExtractorConfigError(
                f"weights='random' builds CLIP from a config: set model='clip_vision_model' "
                f"(got {spec.model!r}) and shrink it with config_overrides"
            )
        config = AutoConfig.for_model("clip_vision_model", **dict(spec.config_overrides))
        side = config.image_size
        processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
        with seeded(spec.seed):
            return CLIPVisionModelWithProjection(config), processor, "random"
    model_dir = resolve_hf_dir(spec.model)
    processor = AutoImageProcessor.from_pretrained(str(model_dir), local_files_only=True)
    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    if hasattr(config, "vision_config"):  # a full CLIPModel checkpoint: its projection size is top-level
        projection_dim = config.projection_dim
        config = config.vision_config
        config.projection_dim = projection_dim
    model = CLIPVisionModelWithProjection.from_pretrained(
        str(model_dir), config=config, local_files_only=True, use_safetensors=True
    )
    return model, processor, hf_dir_digest(model_dir)
