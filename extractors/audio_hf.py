"""audio/hf: transformers audio encoders (wav2vec2, HuBERT, AST, CLAP audio, Whisper encoder).

AutoFeatureExtractor + AutoModel from a local folder or the HF cache; the last
hidden state is mean-pooled over the frames that hold real audio (padding is
left out; windows are zero-padded to whole seconds and batched only with
windows of the same padded length, so a vector never depends on its batch),
or, for CLAP, its projected ``get_audio_features`` is used. Decoding and the
long-clip policy are those of extractors.audio: windows of ``window_s``
seconds, embedded separately and averaged per item.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from extractors.audio import decode_audio_windows
from extractors.base import (
    ExtractorConfigError,
    ExtractResult,
    fingerprint,
    l2_normalize,
)
from extractors.batching import embed_batches, list_collate
from extractors.devices import (
    OOMBackoff,
    autocast,
    effective_precision,
    prepare_model,
    resolve_device,
    to_device,
)
from extractors.files import read_options
from extractors.specs import HFAudioSpec
from extractors.weights import hf_dir_digest, resolve_hf_dir, seeded

logger = logging.getLogger(__name__)


class HFAudioExtractor:
    modality = "audio"

    def __init__(self, *, name: str, spec: HFAudioSpec):
        self.name, self.spec = name, spec
        self.device = resolve_device(spec.device)
        self.precision = effective_precision(self.device, spec.precision)
        model, self.feature_extractor, weights_sha = _build_audio_model(spec)
        self.model = prepare_model(model, self.device)
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self._backoff = OOMBackoff(spec.batch_size)
        self.dim = int(self._forward([torch.zeros(self.sample_rate)], [self.sample_rate]).shape[1])
        self.fingerprint = fingerprint(
            name,
            spec,
            weights_sha256=weights_sha,
            precision=self.precision,
            preprocessing={"feature_extractor": self.feature_extractor.to_dict(), "pooling": "masked_mean"},
        )
        logger.info("audio/hf %s on %s: dim=%d rate=%d", spec.model, self.device, self.dim, self.sample_rate)

    def embed(self, inputs: Sequence[str], *, root: str | None = None) -> ExtractResult:
        decode = functools.partial(
            decode_audio_windows,
            sample_rate=self.sample_rate,
            window_s=self.spec.window_s,
            max_windows=self.spec.max_windows,
            reads=read_options(self.spec, root),
        )
        return embed_batches(inputs, decode, self._embed_clips, dim=self.dim,
                             batch_size=self.spec.batch_size, num_workers=self.spec.num_workers,
                             collate=list_collate)

    def _embed_clips(self, clips: list[list[torch.Tensor]]) -> np.ndarray:
        windows = [window for clip in clips for window in clip]
        window_vectors = np.zeros((len(windows), self.dim), np.float32)
        for group in _same_bucket_groups(windows, self.sample_rate):
            padded = [_pad_to_bucket(windows[window_idx], self.sample_rate) for window_idx in group]
            lengths = [len(windows[window_idx]) for window_idx in group]
            parts = self._backoff.run(lambda chunk: self._forward(*zip(*chunk)), list(zip(padded, lengths)))
            window_vectors[group] = np.concatenate(parts)
        clip_vectors, start = [], 0
        for clip in clips:
            clip_vectors.append(window_vectors[start : start + len(clip)].mean(axis=0))
            start += len(clip)
        vectors = np.stack(clip_vectors).astype(np.float32)
        return l2_normalize(vectors) if self.spec.normalize else vectors

    def _forward(self, windows: Sequence[torch.Tensor], lengths: Sequence[int]) -> np.ndarray:
        """Vectors of equal-length windows; ``lengths``: real samples in each (the rest is padding)."""
        features = self.feature_extractor(
            [window.numpy() for window in windows], sampling_rate=self.sample_rate, return_tensors="pt"
        )
        # Fixed-length extractors (Whisper: 30 s) pad further; pool only over frames of real audio.
        model_len = max(len(windows[0]), int(getattr(self.feature_extractor, "n_samples", 0) or 0))
        valid_fraction = torch.tensor(lengths, dtype=torch.float32) / model_len
        inputs = {key: to_device(value, self.device) for key, value in features.items() if key != "attention_mask"}
        with torch.inference_mode(), autocast(self.device, self.spec.precision):
            if hasattr(self.model, "get_audio_features"):  # CLAP: projected clip embedding
                output = self.model.get_audio_features(**inputs)
                pooled = getattr(output, "pooler_output", output)
            else:
                encoder = self.model.get_encoder() if self.model.config.is_encoder_decoder else self.model
                input_key = next(key for key in ("input_values", "input_features") if key in inputs)
                hidden = encoder(**{input_key: inputs[input_key]}).last_hidden_state
                pooled = _masked_mean(hidden.float(), valid_fraction)
        return pooled.float().cpu().numpy()


def _bucket_len(n_samples: int, rate: int) -> int:
    return max(1, math.ceil(n_samples / rate)) * rate


def _same_bucket_groups(windows: Sequence[torch.Tensor], rate: int) -> list[list[int]]:
    """Window indices grouped by length rounded up to whole seconds.

    Batching only same-bucket windows, each zero-padded to its bucket, makes
    every window's vector independent of which others share its batch.
    """
    groups: dict[int, list[int]] = {}
    for window_idx, window in enumerate(windows):
        groups.setdefault(_bucket_len(len(window), rate), []).append(window_idx)
    return [groups[bucket] for bucket in sorted(groups)]


def _pad_to_bucket(window: torch.Tensor, rate: int) -> torch.Tensor:
    return torch.nn.functional.pad(window, (0, _bucket_len(len(window), rate) - len(window)))


def _masked_mean(hidden: torch.Tensor, valid_fraction: torch.Tensor) -> torch.Tensor:
    n_frames = hidden.shape[1]
    valid = torch.tensor([max(1, math.ceil(float(share) * n_frames)) for share in valid_fraction])
    mask = (torch.arange(n_frames)[None, :] < valid[:, None]).to(hidden.device, hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1)


def _build_audio_model(spec: HFAudioSpec):
    """(model, feature extractor, weights digest): pretrained from a folder, or random from a config family."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
    from transformers.models.auto.feature_extraction_auto import (
        FEATURE_EXTRACTOR_MAPPING_NAMES,
        feature_extractor_class_from_name,
    )

    if spec.weights == "random":
        if spec.model not in FEATURE_EXTRACTOR_MAPPING_NAMES:
            raise ExtractorConfigError(
                f"weights='random' builds the model from a config family, and {spec.model!r} is not an "
                f"audio one; use e.g. 'wav2vec2', 'hubert', 'whisper', 'audio-spectrogram-transformer'"
            )
        config = AutoConfig.for_model(spec.model, **dict(spec.config_overrides))
        extractor_cls = feature_extractor_class_from_name(FEATURE_EXTRACTOR_MAPPING_NAMES[spec.model])
        with seeded(spec.seed):
            return AutoModel.from_config(config), extractor_cls(), "random"
    model_dir = resolve_hf_dir(spec.model)
    feature_extractor = AutoFeatureExtractor.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, use_safetensors=True)
    return model, feature_extractor, hf_dir_digest(model_dir)
