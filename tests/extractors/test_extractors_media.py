"""Decoding: images (EXIF, colour modes), audio (backends, mono, windows, resampling), video frame sampling."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from extractor_fixtures import smooth_rgb, write_audio_only_m4a, write_image, write_video
from PIL import Image

from extractors.audio import CREPE_RATE, crepe_frames, decode_audio_windows
from extractors.base import ItemFailure
from extractors.media import (
    read_audio_windows,
    read_image_rgb,
    read_video_frames,
    sample_frame_indices,
    window_starts,
)


def _halves(width: int, height: int) -> np.ndarray:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2 :] = (0, 0, 255)
    return pixels


def test_exif_orientation_is_applied(tmp_path):
    path = write_image(tmp_path / "rotated.jpg", _halves(40, 20), orientation=6)  # "rotate 90 CW to view"
    image = np.asarray(read_image_rgb(path))
    assert image.shape == (40, 20, 3)  # upright: portrait
    assert image[2, 10, 0] > 200 and image[2, 10, 2] < 60  # left half (red) is now on top
    assert image[-3, 10, 2] > 200 and image[-3, 10, 0] < 60


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "I;16"])
def test_every_colour_mode_decodes_to_rgb(tmp_path, mode):
    pixels = smooth_rgb(3, (32, 24))
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"image_{mode.replace(';', '')}{suffix}"
    source = Image.fromarray(pixels).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        source = Image.fromarray(np.asarray(source).astype(np.uint16) * 257)  # 16-bit grey
    source.save(path)
    image = read_image_rgb(path)
    assert image.mode == "RGB" and image.size == (32, 24)
    grey = np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.float32)
    assert np.corrcoef(np.asarray(image.convert("L"), dtype=np.float32).ravel(), grey.ravel())[0, 1] > 0.9


def test_transparent_pixels_become_white_not_black(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "cutout.png")
    Image.fromarray(rgba, mode="RGBA").convert("P").save(tmp_path / "cutout_palette.png", transparency=0)
    image = np.asarray(read_image_rgb(tmp_path / "cutout.png"))
    assert image[0, 0].tolist() == [255, 0, 0] and image[-1, 0].tolist() == [255, 255, 255]
    assert read_image_rgb(tmp_path / "cutout_palette.png").mode == "RGB"


def test_truncated_jpeg_is_a_decode_failure(tmp_path):
    full = write_image(tmp_path / "full.jpg", smooth_rgb(1, (64, 64)))
    (tmp_path / "half.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ItemFailure, match="cannot decode image") as failure:
        read_image_rgb(tmp_path / "half.jpg")
    assert failure.value.kind == "decode"


def test_jpeg_draft_decoding_keeps_both_sides_at_least_min_size(tmp_path):
    path = write_image(tmp_path / "big.jpg", smooth_rgb(2, (800, 600)))
    assert min(read_image_rgb(path, min_size=100).size) >= 100
    assert read_image_rgb(path, min_size=100).size[0] < 800  # decoded at reduced scale
    assert read_image_rgb(path).size == (800, 600)


def test_window_starts_policy():
    assert window_starts(2.0, 3.0, 4) == [0.0]
    assert window_starts(7.0, 3.0, 4) == [0.0, 2.0, 4.0]
    assert window_starts(120.0, 3.0, 4) == [0.0, 39.0, 78.0, 117.0]
    assert window_starts(10.0, 3.0, 1) == [3.5]


def test_soundfile_windows_are_mono_and_seek_to_the_right_place(tmp_path):
    rate = 8000
    ramp = np.arange(rate * 10, dtype=np.float32) / (rate * 10)  # value encodes the time
    soundfile.write(tmp_path / "ramp.flac", np.stack([ramp, ramp * 0.5], axis=1), rate, subtype="PCM_24")
    windows, file_rate = read_audio_windows(tmp_path / "ramp.flac", window_s=2.0, max_windows=3)
    assert file_rate == rate and [len(w) for w in windows] == [2 * rate] * 3
    starts = [w[0] / 0.75 * 10 for w in windows]  # mono = mean of (x, x/2) = 0.75 x
    np.testing.assert_allclose(starts, [0.0, 4.0, 8.0], atol=1e-3)


def test_pyav_reads_compressed_audio_and_video_soundtracks(tmp_path):
    m4a = write_audio_only_m4a(tmp_path / "voice.m4a", seconds=1.5, freq=440.0)
    windows, rate = read_audio_windows(m4a, window_s=1.0, max_windows=2)
    assert rate == 16_000 and len(windows) == 2 and all(len(w) == rate for w in windows)
    spectrum = np.abs(np.fft.rfft(windows[0]))
    assert abs(np.argmax(spectrum) * rate / len(windows[0]) - 440.0) < 5.0
    clip = write_video(tmp_path / "clip.mp4", n_frames=10, tone_hz=300.0)
    windows, _ = read_audio_windows(clip, window_s=3.0, max_windows=2, force_pyav=True)
    assert len(windows) == 1 and len(windows[0]) > 10_000
    silent = write_video(tmp_path / "silent.mp4", n_frames=4)
    with pytest.raises(ItemFailure, match="has no audio stream") as failure:
        read_audio_windows(silent, window_s=3.0, max_windows=2)
    assert failure.value.kind == "unsupported"


def test_decode_resamples_to_the_model_rate_keeping_pitch(tmp_path):
    rate = 44_100
    t = np.arange(rate) / rate
    soundfile.write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 500 * t), rate)
    (window,) = decode_audio_windows(str(tmp_path / "a.wav"), sample_rate=16_000, window_s=3.0, max_windows=2)
    assert window.dtype == torch.float32 and abs(len(window) - 16_000) <= 1
    spectrum = np.abs(np.fft.rfft(window.numpy()))
    assert abs(np.argmax(spectrum) * 16_000 / len(window) - 500.0) < 2.0


def test_audio_with_no_samples_is_empty(tmp_path):
    soundfile.write(tmp_path / "nothing.wav", np.zeros((0, 1), np.float32), 16_000)
    with pytest.raises(ItemFailure) as failure:
        read_audio_windows(tmp_path / "nothing.wav", window_s=1.0, max_windows=1)
    assert failure.value.kind == "empty"


def test_crepe_framing_matches_torchcrepe_preprocess():
    import torchcrepe

    audio = torch.randn(CREPE_RATE)
    frames, spread = crepe_frames(audio, hop=160)
    expected = next(torchcrepe.preprocess(audio[None], CREPE_RATE, 160))
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=1e-5)
    assert spread.shape == (len(frames),)


def test_frames_are_sampled_uniformly_in_time_for_variable_frame_rates():
    dense_then_sparse = np.concatenate([np.arange(30) * 0.033, 1.0 + np.arange(5) * 0.2])
    picked = sample_frame_indices(dense_then_sparse, 8)
    times = dense_then_sparse[picked]
    assert (times < 1.0).sum() == 4 and (times >= 1.0).sum() == 4  # by index it would be 7 and 1
    assert np.all(np.diff(picked) >= 0)


def test_short_clips_repeat_frames_to_reach_k():
    assert sample_frame_indices(np.array([0.0, 0.1, 0.2]), 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert sample_frame_indices(np.array([0.0]), 4).tolist() == [0, 0, 0, 0]


def test_read_video_frames_resizes_at_decode_keeping_aspect(tmp_path):
    clip = write_video(tmp_path / "wide.mp4", n_frames=5, size=(128, 64))
    frames = read_video_frames(clip, num_frames=8, short_side=32)
    assert frames.shape == (8, 32, 64, 3) and frames.dtype == np.uint8
    assert read_video_frames(clip, num_frames=2, short_side=500).shape == (2, 64, 128, 3)  # never upscaled


def test_variable_frame_rate_video_decodes(tmp_path):
    times_ms = [0, 33, 66, 99, 132, 165, 200, 600, 1000, 1400]
    clip = write_video(tmp_path / "vfr.mp4", n_frames=len(times_ms), frame_times_ms=times_ms)
    assert read_video_frames(clip, num_frames=4, short_side=48).shape[0] == 4


def test_audio_only_file_is_not_a_video(tmp_path):
    with pytest.raises(ItemFailure, match="has no video stream") as failure:
        read_video_frames(write_audio_only_m4a(tmp_path / "a.m4a"), num_frames=4, short_side=32)
    assert failure.value.kind == "unsupported"
