"""Tiny generated media for the extractor tests (images, audio, video, broken files)."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import soundfile
from PIL import Image

EXIF_ORIENTATION = 0x0112


def smooth_rgb(seed: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A seeded, smooth (upsampled noise) RGB uint8 image of (height, width) = size[::-1]."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    return np.asarray(coarse.resize(size, Image.BICUBIC))


def write_image(path: Path, pixels: np.ndarray, *, mode: str = "RGB", orientation: int | None = None) -> Path:
    image = Image.fromarray(pixels).convert(mode)
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        kwargs["exif"] = exif
    image.save(path, **kwargs)
    return path


def write_tone(path: Path, *, seconds: float, freq: float, rate: int = 22_050, channels: int = 1) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    data = np.stack([wave * (1.0 - 0.3 * ch) for ch in range(channels)], axis=1)
    soundfile.write(path, data.astype(np.float32), rate)
    return path


def _add_audio_stream(container, rate: int):
    stream = container.add_stream("aac", rate=rate)
    stream.layout = "mono"
    return stream


def _encode_audio(container, stream, samples: np.ndarray, rate: int) -> None:
    frame = av.AudioFrame.from_ndarray(samples.astype(np.float32)[None], format="fltp", layout="mono")
    frame.sample_rate = rate
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_video(
    path: Path,
    *,
    n_frames: int,
    seed: int = 0,
    size: tuple[int, int] = (64, 48),
    fps: int = 10,
    frame_times_ms: list[int] | None = None,
    tone_hz: float | None = None,
) -> Path:
    """An MPEG-4 clip of drifting smooth colours; optional per-frame times (VFR) and an AAC tone track."""
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    audio_rate = 16_000
    audio = _add_audio_stream(container, audio_rate) if tone_hz is not None else None  # before any mux
    if frame_times_ms is not None:
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
    base = smooth_rgb(seed, size).astype(np.int16)
    for frame_idx in range(n_frames):
        pixels = np.clip(base + 6 * frame_idx, 0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        if frame_times_ms is not None:
            frame.pts = frame_times_ms[frame_idx]
            frame.time_base = fractions.Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    if audio is not None:
        t = np.arange(int(audio_rate * n_frames / fps)) / audio_rate
        _encode_audio(container, audio, 0.3 * np.sin(2 * np.pi * tone_hz * t), audio_rate)
    container.close()
    return path


def write_audio_only_m4a(path: Path, *, seconds: float = 1.0, freq: float = 330.0) -> Path:
    container = av.open(str(path), "w", format="mp4")
    rate = 16_000
    t = np.arange(int(rate * seconds)) / rate
    _encode_audio(container, _add_audio_stream(container, rate), 0.3 * np.sin(2 * np.pi * freq * t), rate)
    container.close()
    return path


def write_broken(folder: Path, suffix: str) -> dict[str, Path]:
    """A missing path, a zero-byte file and a garbage file, all with ``suffix``."""
    zero = folder / f"zero{suffix}"
    zero.write_bytes(b"")
    garbage = folder / f"garbage{suffix}"
    garbage.write_bytes(b"this is not a media file, just text bytes\n" * 50)
    return {"missing": folder / f"missing{suffix}", "zero": zero, "garbage": garbage}
