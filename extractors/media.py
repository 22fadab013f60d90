"""Decoding local media files into arrays. Pure functions, safe in DataLoader workers.

Each file is read whole first (extractors.files.read_media_bytes: confinement to the media root,
retries of transient IO errors) and decoded from memory, so every function raises ``ItemFailure`` with
kind
- "missing", "unsupported", "outside_root", "empty" (zero bytes), "transient" or "unreadable" from the
  read (see extractors.files),
- "decode": the decoder's verdict on the bytes read whole (garbage, truncated),
- "unsupported": a readable container without the wanted stream (audio-only video),
- "empty": a valid file holding no samples or frames.

Audio is read with soundfile (WAV/FLAC/OGG) or PyAV (every other format and the
audio track of videos), never torchaudio.load. Videos are read with decord.
"""

from __future__ import annotations

import io
import logging
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from extractors.base import ItemFailure
from extractors.files import DEFAULT_READS, ReadOptions, read_media_bytes

logger = logging.getLogger(__name__)

SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga"})
_PIL_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_MAX_MESSAGE = 300  # decoder messages can quote the bytes they choked on


def _buffer(data: bytes, file_path: Path) -> io.BytesIO:
    """In-memory file named like the original (PyAV/FFmpeg use the name as a format hint)."""
    buffer = io.BytesIO(data)
    buffer.name = str(file_path)
    return buffer


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


# ---------------------------------------------------------------------- images


def read_image_rgb(
    path: str | os.PathLike, *, min_size: int | None = None, reads: ReadOptions = DEFAULT_READS
) -> Image.Image:
    """Decode an image upright (EXIF orientation applied) as 8-bit RGB.

    ``min_size``: let JPEG decode at a reduced scale (DCT draft mode) as long as
    both sides stay >= min_size; the model's resize follows anyway.
    """
    file_path = Path(path)
    data = read_media_bytes(file_path, reads)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if min_size:
                image.draft(None, (min_size, min_size))
            upright = ImageOps.exif_transpose(image)  # a loaded copy
    except _PIL_ERRORS as exc:
        raise ItemFailure("decode", f"{file_path}: cannot decode image ({type(exc).__name__}: {_short(exc)})") from exc
    return to_rgb(upright)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any PIL mode: alpha composited on white, palette expanded, CMYK and 16-bit grey converted."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _high_depth_to_l(image)
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float32)
    top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
    if image.mode == "I" and top <= 255.0:
        top = 255.0
    return Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8), mode="L")


# ----------------------------------------------------------------------- audio


def window_starts(duration_s: float, window_s: float, max_windows: int) -> list[float]:
    """Long-clip policy: start times of up to ``max_windows`` windows of ``window_s``, evenly spread.

    A clip no longer than one window is read whole; a longer one gets
    ceil(duration / window) windows, capped at max_windows, from the start to
    the end of the clip.
    """
    if duration_s <= window_s:
        return [0.0]
    n_windows = min(max_windows, math.ceil(duration_s / window_s))
    if n_windows == 1:
        return [(duration_s - window_s) / 2.0]
    return [float(start) for start in np.linspace(0.0, duration_s - window_s, n_windows)]


def read_audio_windows(
    path: str | os.PathLike,
    *,
    window_s: float,
    max_windows: int,
    force_pyav: bool = False,
    reads: ReadOptions = DEFAULT_READS,
) -> tuple[list[np.ndarray], int]:
    """Mono float32 windows of a file at its own sample rate, and that rate."""
    file_path = Path(path)
    data = read_media_bytes(file_path, reads)
    if not force_pyav and file_path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            return _soundfile_windows(data, file_path, window_s, max_windows)
        except ItemFailure:
            raise
        except Exception as exc:  # libsndfile cannot read it (e.g. an odd codec): PyAV may
            logger.debug("soundfile failed on %s (%s); trying PyAV", file_path, _short(exc))
    return _pyav_windows(data, file_path, window_s, max_windows)


def _soundfile_windows(data: bytes, file_path: Path, window_s: float, max_windows: int) -> tuple[list[np.ndarray], int]:
    import soundfile

    with soundfile.SoundFile(io.BytesIO(data)) as audio:
        rate, n_frames = audio.samplerate, audio.frames
        if n_frames <= 0:
            raise ItemFailure("empty", f"{file_path}: audio holds no samples")
        windows = []
        for start_s in window_starts(n_frames / rate, window_s, max_windows):
            audio.seek(int(round(start_s * rate)))
            block = audio.read(int(round(window_s * rate)), dtype="float32", always_2d=True)
            windows.append(block.mean(axis=1))
    return windows, rate


def _pyav_windows(data: bytes, file_path: Path, window_s: float, max_windows: int) -> tuple[list[np.ndarray], int]:
    import av

    try:
        container = av.open(_buffer(data, file_path))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise ItemFailure("decode", f"{file_path}: cannot open media ({_short(exc)})") from exc
    with container:
        if not container.streams.audio:
            raise ItemFailure("unsupported", f"{file_path}: has no audio stream")
        stream = container.streams.audio[0]
        try:
            return _pyav_read(container, stream, file_path, window_s, max_windows)
        except av.FFmpegError as exc:
            raise ItemFailure("decode", f"{file_path}: cannot decode audio ({_short(exc)})") from exc


def _pyav_read(container, stream, file_path: Path, window_s: float, max_windows: int):
    context = stream.codec_context
    rate = context.sample_rate if context is not None else 0
    if not rate:
        raise ItemFailure("decode", f"{file_path}: audio stream has an unknown codec or no sample rate")
    duration_s = _pyav_duration(container, stream)
    if duration_s is None:  # unknown length: read what one pass of the policy could use, from the start
        samples = _pyav_decode_span(container, stream, 0.0, window_s * max_windows, rate, seek=False)
        width = int(round(window_s * rate))
        starts = [int(round(start * rate)) for start in window_starts(len(samples) / rate, window_s, max_windows)]
        windows = [samples[start : start + width] for start in starts]
    else:
        starts = window_starts(duration_s, window_s, max_windows)
        windows = [_pyav_decode_span(container, stream, start, window_s, rate, seek=True) for start in starts]
    windows = [window for window in windows if len(window)]
    if not windows:
        raise ItemFailure("empty", f"{file_path}: audio holds no samples")
    return windows, rate


def _pyav_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _pyav_decode_span(container, stream, start_s: float, length_s: float, rate: int, *, seek: bool) -> np.ndarray:
    """Mono samples of [start_s, start_s + length_s), trimmed by frame timestamps after a seek."""
    if seek:
        container.seek(int(start_s / stream.time_base), stream=stream, any_frame=False, backward=True)
    wanted = int(round(length_s * rate))
    start_sample = int(round(start_s * rate))
    pieces: list[np.ndarray] = []
    have = 0
    cursor = None  # sample position of the next decoded sample
    for frame in container.decode(stream):
        mono = _frame_to_mono(frame)
        if cursor is None:
            cursor = int(round(float(frame.pts * frame.time_base) * rate)) if frame.pts is not None else 0
        skip = max(0, start_sample - cursor)
        cursor += len(mono)
        if skip >= len(mono):
            continue
        pieces.append(mono[skip:])
        have += len(mono) - skip
        if have >= wanted:
            break
    return np.concatenate(pieces)[:wanted] if pieces else np.zeros(0, np.float32)


_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9.223372036854776e18}


def _frame_to_mono(frame) -> np.ndarray:
    """A PyAV AudioFrame as mono float32 in [-1, 1], whatever its sample format and layout."""
    samples = frame.to_ndarray()
    n_channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed: (1, n * channels) interleaved
        samples = samples.reshape(-1, n_channels).T
    base = frame.format.name.rstrip("p")
    samples = samples.astype(np.float32)
    if base == "u8":
        samples = (samples - 128.0) / 128.0
    elif base in _INT_SCALE:
        samples = samples / _INT_SCALE[base]
    return samples.mean(axis=0)


# ----------------------------------------------------------------------- video


def sample_frame_indices(frame_starts_s: np.ndarray, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames uniform in time (not in index, so variable frame rates are fair).

    Frame i is shown from frame_starts_s[i]; the clip is cut into num_frames
    equal spans and the frame on screen at each span's centre is taken. Clips
    with fewer frames than asked repeat frames.
    """
    starts = np.asarray(frame_starts_s, dtype=np.float64)
    if len(starts) == 1:
        return np.zeros(num_frames, dtype=np.int64)
    step = np.median(np.diff(starts)) if len(starts) > 1 else 0.0
    end = starts[-1] + max(step, 0.0)
    centres = starts[0] + (np.arange(num_frames) + 0.5) * (end - starts[0]) / num_frames
    indices = np.searchsorted(starts, centres, side="right") - 1
    return np.clip(indices, 0, len(starts) - 1).astype(np.int64)


def probe_video_size(data: bytes, file_path: Path) -> tuple[int, int]:
    """(width, height) of the first video stream of a file's bytes, read from the container header with PyAV."""
    import av

    try:
        container = av.open(_buffer(data, file_path))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise ItemFailure("decode", f"{file_path}: cannot open video ({_short(exc)})") from exc
    with container:
        if not container.streams.video:
            raise ItemFailure("unsupported", f"{file_path}: has no video stream")
        context = container.streams.video[0].codec_context
        if not context.width or not context.height:
            raise ItemFailure("decode", f"{file_path}: video stream has no frame size")
        return context.width, context.height


def read_video_frames(
    path: str | os.PathLike, *, num_frames: int, short_side: int, reads: ReadOptions = DEFAULT_READS
) -> np.ndarray:
    """``num_frames`` RGB frames (K, H, W, 3) uint8, resized at decode so the short side is <= short_side."""
    import decord

    file_path = Path(path)
    data = read_media_bytes(file_path, reads)
    width, height = probe_video_size(data, file_path)
    scale = min(1.0, short_side / min(width, height))
    try:
        reader = decord.VideoReader(
            io.BytesIO(data), width=max(1, round(width * scale)), height=max(1, round(height * scale)),
            num_threads=1,
        )
        n_frames = len(reader)
        if n_frames == 0:
            raise ItemFailure("empty", f"{file_path}: video holds no frames")
        frame_starts_s = reader.get_frame_timestamp(range(n_frames))[:, 0]
        indices = sample_frame_indices(frame_starts_s, num_frames)
        return reader.get_batch(indices.tolist()).asnumpy()
    except ItemFailure:
        raise
    except AssertionError as exc:  # decord asserts a positive frame count
        raise ItemFailure("empty", f"{file_path}: video holds no frames ({_short(exc)})") from exc
    except (decord.DECORDError, RuntimeError, IndexError) as exc:
        raise ItemFailure("decode", f"{file_path}: cannot decode video frames ({_short(exc)})") from exc
