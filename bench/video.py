"""video: K=8 sampled frames the way the video extractor reads them (decord get_batch) against decoding every
frame with PyAV and keeping 8.

Ours is `extractors.media.read_video_frames` — the extractor's own path: the file read whole, its size probed,
decord resizing at decode (short side <= 224), the 8 frames uniform in time fetched with one `get_batch`. The
baseline reads the same bytes and decodes every frame with PyAV (its default threading) to RGB, then keeps
the same 8. A bare decord call (full size, no probe), PyAV decoding without any RGB conversion, and PyAV
decoding everything but converting only the 8 chosen frames are timed too, to tell sampling from resizing
and decoding from colour conversion. Millisecond calls are repeated within
a sample (about 0.3 s per sample) and reported per call.
Clips are H.264 MP4s written here with PyAV/libx264: the demo catalog's own clip and longer, larger ones with a
keyframe every second (typical of web video) or only the encoder's default keyframe interval (250 frames).
"""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bench.timing import fmt_s, interleaved_times, ratio, row, summary

NUM_FRAMES = 8
SHORT_SIDE = 224
GOAL = 5.0
MIN_SAMPLE_S = 0.3  # a sample repeats a call until it lasts about this long, so millisecond calls are measurable


@dataclass(frozen=True)
class Clip:
    name: str
    seconds: float
    width: int
    height: int
    fps: int
    keyint: int | None  # None: libx264's default (250)


CLIPS = (
    Clip("demo clip 2 s 64x64 12 fps", 2.0, 64, 64, 12, 12),
    Clip("10 s 640x360 30 fps, keyframe/1 s", 10.0, 640, 360, 30, 30),
    Clip("30 s 640x360 30 fps, keyframe/1 s", 30.0, 640, 360, 30, 30),
    Clip("10 s 640x360 30 fps, default keyint 250", 10.0, 640, 360, 30, None),
)
QUICK_CLIPS = CLIPS[:2]


def synthetic_frames(clip: Clip, seed: int = 0):
    """Frames of a moving bright blob over a drifting gradient with a little noise (so P-frames carry data)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:clip.height, 0:clip.width].astype(np.float32)
    base = np.stack([x / clip.width, y / clip.height, 0.5 * np.ones_like(x)], axis=-1) * 160
    for i in range(round(clip.seconds * clip.fps)):
        t = i / clip.fps
        cx = clip.width * (0.5 + 0.35 * np.sin(1.3 * t))
        cy = clip.height * (0.5 + 0.35 * np.cos(0.9 * t))
        blob = ((x - cx) ** 2 + (y - cy) ** 2) < (0.12 * min(clip.width, clip.height)) ** 2
        frame = np.roll(base, int(20 * t), axis=1) + rng.normal(0, 4, base.shape).astype(np.float32)
        frame[blob] = (230, 200, 60)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def encode_clip(clip: Clip) -> bytes:
    """H.264 yuv420p MP4 (libx264 ultrafast), like the demo's encoder."""
    import av

    if clip.name.startswith("demo"):
        from pipelines.demo.media import encode_mp4, render_video

        rng = np.random.default_rng(0)
        return encode_mp4(render_video(0, 6, clip.width, round(clip.seconds * clip.fps), clip.fps, rng), clip.fps)
    options = {"preset": "ultrafast", "crf": "26"}
    if clip.keyint:
        options["g"] = str(clip.keyint)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=clip.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        stream.time_base = Fraction(1, clip.fps)
        for i, rgb in enumerate(synthetic_frames(clip)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def pyav_all_frames(path: Path, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """The baseline: decode every frame to RGB with PyAV, then keep ``num_frames`` uniform in time."""
    import av

    from extractors.media import sample_frame_indices

    with av.open(io.BytesIO(path.read_bytes())) as container:
        stream = container.streams.video[0]
        frames, starts = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            starts.append(float(frame.time))
    return np.stack([frames[i] for i in sample_frame_indices(starts, num_frames)])


def pyav_decode_only(path: Path) -> int:
    """Decode every frame with PyAV without converting to RGB: how much of the baseline is colour conversion."""
    import av

    with av.open(io.BytesIO(path.read_bytes())) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def pyav_convert_chosen(path: Path, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """A better PyAV baseline: decode every frame (keeping them), convert only the ``num_frames`` chosen ones."""
    import av

    from extractors.media import sample_frame_indices

    with av.open(io.BytesIO(path.read_bytes())) as container:
        frames = list(container.decode(container.streams.video[0]))
    chosen = sample_frame_indices([float(frame.time) for frame in frames], num_frames)
    return np.stack([frames[i].to_ndarray(format="rgb24") for i in chosen])


def decord_bare(path: Path, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """decord at full size: VideoReader(...).get_batch(indices), no probe, no resize."""
    import decord

    from extractors.media import sample_frame_indices

    reader = decord.VideoReader(io.BytesIO(path.read_bytes()), num_threads=1)
    starts = reader.get_frame_timestamp(range(len(reader)))[:, 0]
    return reader.get_batch(sample_frame_indices(starts, num_frames).tolist()).asnumpy()


def _calls_per_sample(fn) -> int:
    started = time.perf_counter()
    fn()
    once = max(time.perf_counter() - started, 1e-6)
    return max(1, min(100, int(MIN_SAMPLE_S / once)))


def _repeated(fn, n: int):
    def call():
        for _ in range(n):
            fn()
    return call


def run(quick: bool) -> dict[str, Any]:
    from extractors.media import read_video_frames

    clips, repeats = (QUICK_CLIPS, 2) if quick else (CLIPS, 3)
    rows, timings, details = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        for n, clip in enumerate(clips):
            path = Path(tmp) / f"clip{n}.mp4"
            path.write_bytes(encode_clip(clip))
            calls = {
                "ours": lambda path=path: read_video_frames(path, num_frames=NUM_FRAMES, short_side=SHORT_SIDE),
                "decord_bare": lambda path=path: decord_bare(path),
                "pyav_all": lambda path=path: pyav_all_frames(path),
                "pyav_decode_only": lambda path=path: pyav_decode_only(path),
                "pyav_convert_chosen": lambda path=path: pyav_convert_chosen(path),
            }
            inner = _calls_per_sample(calls["ours"])
            measured = interleaved_times({key: _repeated(fn, inner) for key, fn in calls.items()}, repeats=repeats)
            measured = {key: {**summary([t / inner for t in value["times_s"]]), "calls_per_sample": inner}
                        for key, value in measured.items()}  # per call
            t_ours, t_bare, t_all = (measured[key]["median_s"] for key in ("ours", "decord_bare", "pyav_all"))
            value = ratio(t_all, t_ours)
            n_frames = round(clip.seconds * clip.fps)
            timings[clip.name] = measured
            details[clip.name] = {"frames": n_frames, "bytes": path.stat().st_size, "keyint": clip.keyint or 250,
                                  "speedup_bare_decord": ratio(t_all, t_bare),
                                  "speedup_vs_pyav_convert_chosen": ratio(
                                      measured["pyav_convert_chosen"]["median_s"], t_ours),
                                  "pyav_rgb_conversion_share": round(
                                      1 - measured["pyav_decode_only"]["median_s"] / t_all, 3),
                                  "ours_shape": list(read_video_frames(path, num_frames=NUM_FRAMES,
                                                                       short_side=SHORT_SIDE).shape)}
            rows.append(row(f"video {clip.name}: {NUM_FRAMES} frames, decord get_batch vs PyAV all {n_frames}",
                            ours=f"{fmt_s(t_ours)} (bare decord {fmt_s(t_bare)})",
                            baseline=f"PyAV {fmt_s(t_all)} (decode only "
                                     f"{fmt_s(measured['pyav_decode_only']['median_s'])}, converting only the "
                                     f"{NUM_FRAMES} {fmt_s(measured['pyav_convert_chosen']['median_s'])})",
                            value=value, shown=f"{value:.1f}x", goal=f">= {GOAL:g}x", met=value >= GOAL))
    notes = [] if not quick else [f"--quick: clips {[c.name for c in clips]} only"]
    return {"name": "video", "rows": rows, "timings": timings, "details": details, "notes": notes}
