"""video/frames: K frames per clip, embedded by an image extractor, pooled over time.

Frames are read with decord, resized at decode (short side to the image
model's resize size, aspect kept), and only the K sampled frames are decoded
(get_batch). Sampling is uniform in *time* (the frame on screen at the centre of
each of K equal spans), so variable-frame-rate clips are sampled fairly; clips
with fewer than K frames repeat frames. Pooling is the mean over frames, or
mean||max (which doubles dim). A file without a video stream is "unsupported".
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from extractors.base import ExtractorConfigError, ExtractResult, fingerprint, l2_normalize
from extractors.batching import embed_batches, stack_collate
from extractors.devices import pin_memory
from extractors.files import ReadOptions, read_options
from extractors.media import read_video_frames
from extractors.specs import VideoFramesSpec

logger = logging.getLogger(__name__)


def decode_video(
    path: str, *, num_frames: int, short_side: int, frame_transform: Callable, reads: ReadOptions
) -> torch.Tensor:
    """File -> (K, 3, H, W) image-model inputs (runs in DataLoader workers)."""
    frames = read_video_frames(path, num_frames=num_frames, short_side=short_side, reads=reads)
    return torch.stack([frame_transform(frame) for frame in frames])


class VideoFramesExtractor:
    modality = "video"

    def __init__(self, *, name: str, spec: VideoFramesSpec):
        from extractors import registry

        image_spec = spec.image if spec.image is not None else registry.default_spec(spec.image_extractor)
        if isinstance(image_spec, Mapping):  # a table written straight into the spec
            image_spec = registry.spec_from_dict(spec.image_extractor, image_spec)
        # Video decoding has its own workers; the image model follows the video's device.
        image_spec = dataclasses.replace(image_spec, device=spec.device, num_workers=0)
        self.image = registry.create(spec.image_extractor, spec=image_spec)
        needed = ("frame_transform", "embed_tensor", "decode_size", "precision")
        if not all(hasattr(self.image, attr) for attr in needed):
            raise ExtractorConfigError(
                f"image_extractor={spec.image_extractor!r} cannot embed video frames; "
                "use 'image/timm' or 'image/hf-clip'"
            )
        self.name = name
        self.spec = dataclasses.replace(spec, image=image_spec)
        self.device = self.image.device
        self.precision = self.image.precision  # frames run through the image model
        self.dim = self.image.dim * (2 if spec.pooling == "mean_max" else 1)
        self.fingerprint = fingerprint(
            name,
            self.spec,
            weights_sha256=self.image.fingerprint,
            precision=self.precision,
            preprocessing={"sampling": "uniform_time", "decode_short_side": self.image.decode_size},
        )
        logger.info("video/frames over %s on %s: dim=%d", spec.image_extractor, self.device, self.dim)

    def embed(self, inputs: Sequence[str], *, root: str | None = None) -> ExtractResult:
        decode = functools.partial(
            decode_video,
            num_frames=self.spec.num_frames,
            short_side=self.image.decode_size,
            frame_transform=self.image.frame_transform,
            reads=read_options(self.spec, root),
        )
        return embed_batches(inputs, decode, self._embed_clips, dim=self.dim,
                             batch_size=self.spec.batch_size, num_workers=self.spec.num_workers,
                             collate=stack_collate, pin_memory=pin_memory(self.device))

    def _embed_clips(self, pixels: torch.Tensor) -> np.ndarray:
        """(clips, K, 3, H, W) -> (clips, dim)."""
        n_clips, n_frames = pixels.shape[:2]
        frame_vectors = self.image.embed_tensor(pixels.flatten(0, 1)).reshape(n_clips, n_frames, -1)
        pooled = frame_vectors.mean(axis=1)
        if self.spec.pooling == "mean_max":
            pooled = np.concatenate([pooled, frame_vectors.max(axis=1)], axis=1)
        pooled = pooled.astype(np.float32)
        return l2_normalize(pooled) if self.spec.normalize else pooled
