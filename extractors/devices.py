"""Device choice, mixed precision, host-to-device copies and OOM back-off.

The same code runs on CPU and CUDA: on CUDA it adds bf16 (or fp16) autocast,
pinned memory, non-blocking copies and channels_last for CNNs. The precision a
forward pass really runs in (``effective_precision``) is part of every
fingerprint, so vectors of a bf16 run never share a folder with fp32 ones.
Thread counts (torch.set_num_threads) are the caller's business and are never
set here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from extractors.base import ExtractorConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; 'cpu', 'cuda', 'cuda:N' as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ExtractorConfigError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ExtractorConfigError(f"device={device!r} asks for CUDA but none is available; use 'auto' or 'cpu'")
    if resolved.type not in ("cpu", "cuda"):
        raise ExtractorConfigError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda[:N]'")
    return resolved


def effective_precision(device: torch.device, precision: str) -> str:
    """What a forward pass really computes in: "fp32", "bf16" or "fp16" (part of every fingerprint).

    "auto" is bf16 on CUDA (fp16 where bf16 is unsupported) and fp32 on CPU; "fp32", "bf16" and "fp16" are
    taken as asked (autocast runs on CPU too).
    """
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ExtractorConfigError(f"precision={precision!r} is not one of ('auto', 'fp32', 'bf16', 'fp16')")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ExtractorConfigError("precision='bf16' but this GPU does not support bfloat16; use 'fp16' or 'auto'")
    return precision


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in: autocast to bf16/fp16, or full fp32 (TF32 off on CUDA)."""
    resolved = effective_precision(device, precision)
    if resolved == "fp32":
        return full_fp32() if device.type == "cuda" else contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[resolved])


_FP32_LOCK = threading.Lock()
_fp32_state: dict[str, Any] = {"users": 0, "saved": None}


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Turn TF32 off for cuDNN convolutions and CUDA matmuls, so that "fp32" means fp32 on a GPU.

    The flags are process-wide: concurrent users (threads running shards) are counted, the first one turns
    TF32 off and the last one restores the flags as they were.
    """
    with _FP32_LOCK:
        if _fp32_state["users"] == 0:
            _fp32_state["saved"] = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        _fp32_state["users"] += 1
    try:
        yield
    finally:
        with _FP32_LOCK:
            _fp32_state["users"] -= 1
            if _fp32_state["users"] == 0:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = _fp32_state["saved"]


def prepare_model(model: torch.nn.Module, device: torch.device, *, channels_last: bool = False) -> torch.nn.Module:
    """Frozen inference setup: eval mode, no grads, on device (channels_last for CNNs on CUDA)."""
    model.eval()
    model.requires_grad_(False)
    model.to(device)
    if channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def to_device(tensor: torch.Tensor, device: torch.device, *, channels_last: bool = False) -> torch.Tensor:
    """Non-blocking copy (effective from pinned host memory)."""
    if device.type != "cuda":
        return tensor
    tensor = tensor.to(device, non_blocking=True)
    if channels_last and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def pin_memory(device: torch.device) -> bool:
    return device.type == "cuda"


class OOMBackoff:
    """Runs a batched function, halving the batch size on CUDA out-of-memory.

    The reduced size persists for later calls on the same instance, so one
    OOM costs one retry rather than one per batch. A batch of one that still
    runs out of memory re-raises: nothing smaller can be tried.
    """

    def __init__(self, batch_size: int):
        if batch_size < 1:
            raise ExtractorConfigError(f"batch_size={batch_size!r} must be >= 1")
        self.batch_size = batch_size

    def run(self, fn: Callable[[Sequence[Any]], T], items: Sequence[Any]) -> list[T]:
        """Apply ``fn`` to consecutive chunks of ``items``; returns the chunk outputs in order."""
        outputs: list[T] = []
        start = 0
        while start < len(items):
            chunk = items[start : start + self.batch_size]
            try:
                outputs.append(fn(chunk))
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                logger.warning("CUDA out of memory; retrying with batch_size=%d", self.batch_size)
                _free_cuda_cache()
                continue
            start += len(chunk)
        return outputs


def _free_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
