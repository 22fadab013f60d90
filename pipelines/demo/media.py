"""Content synthesis for the demo catalog: each category's vocabulary, look, sound and motion.

Every function here is pure: (category, sizes, a numpy Generator) in, text or
encoded bytes out. Paths and file writing belong to `pipelines.demo.catalog`.

- text: a per-category word list mixed with shared generic words (and a few
  words of other categories), so text carries the category but is not
  trivially separable; descriptions are 10-40 words.
- image: category hue family + shape type + noise grain; per-item position,
  size, count and shade. JPEG via PIL at a fixed quality.
- audio: category pitch range + timbre (harmonic mix) + rhythm (note-duration
  pattern) + tempo; per-item root note, melody and tempo jitter. Mono 16-bit
  PCM WAV via soundfile.
- video: category blob shape + motion pattern + hue; per-item start, speed and
  size. H.264 yuv420p MP4 via PyAV/libx264 with one thread and bit-exact
  muxing (no creation time), so equal inputs give equal bytes.
"""

from __future__ import annotations

import colorsys
import io
import re
import struct
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import soundfile as sf
from PIL import Image

JPEG_QUALITY = 85
STYLE_COUNT = 8  # number of built-in category styles per modality


@dataclass(frozen=True)
class BrokenMedia:
    """One kind of deliberately broken media file in the demo."""

    modality: str  # "image" | "audio" | "video"
    kind: str
    description: str


BROKEN_MEDIA: tuple[BrokenMedia, ...] = (
    BrokenMedia("image", "truncated_jpeg", "first half of the bytes of a real JPEG"),
    BrokenMedia("image", "missing_file", "catalog references an image path whose file is never written"),
    BrokenMedia("audio", "empty_wav", "zero-byte WAV file"),
    BrokenMedia("audio", "corrupt_wav_header", "real WAV whose fmt chunk claims 0 channels and format 0xBEEF"),
    BrokenMedia("video", "garbage_mp4", "4 KiB of random bytes named .mp4"),
)


# ---------------------------------------------------------------- text
THEMES = (  # (adjectives, nouns) per category
    ("nonstick cast-iron enamel ceramic stovetop roasting culinary dishwasher-safe".split(),
     "skillet saucepan kettle whisk spatula colander teapot ladle grater wok mug blender".split()),
    ("waterproof rugged alpine windproof insulated hiking weatherproof backcountry".split(),
     "tent backpack lantern compass hammock canteen tarp carabiner headlamp campfire trail".split()),
    ("wireless bluetooth digital rechargeable usb noise-cancelling smart ultrafast".split(),
     "charger headset speaker cable adapter keyboard router battery monitor earpiece webcam".split()),
    ("cotton silk slim-fit vintage knitted linen embroidered tailored".split(),
     "dress scarf blouse sneaker jacket handbag denim sweater boot belt cardigan hoodie".split()),
    ("colorful playful educational plush wooden toddler squeaky magnetic".split(),
     "puzzle brick doll robot teddy kite marble playset dinosaur figurine crayon puppet".split()),
    ("organic perennial blooming leafy drought-tolerant flowering evergreen heirloom".split(),
     "planter seedling hose trowel clipper compost fertilizer pruner greenhouse soil rake trellis".split()),
    ("ruled hardcover refillable archival illustrated spiral literary fountain".split(),
     "notebook journal pen pencil planner novel sketchbook envelope binder stapler bookmark ink".split()),
    ("cardio sweat-wicking adjustable anti-slip workout training stretchy high-intensity".split(),
     "dumbbell mat kettlebell treadmill barbell band jump-rope bottle glove bench tracker".split()),
)
GENERIC = ("premium classic durable compact everyday modern essential reliable lightweight versatile "
           "elegant affordable deluxe handy sturdy popular eco-friendly".split(),
           "set kit pack edition bundle collection gift home family design style value".split())
PHRASES = ("a {adj} {noun}", "with {adj} {noun}", "made for every {noun}", "perfect for your {noun}",
           "{adj} and {adj}", "the {noun} your {noun} needs", "built from {adj} {noun}",
           "great for {adj} {noun}", "includes a {noun}", "a {adj} {noun} that lasts")
_SLOT = re.compile(r"\{(adj|noun)\}")
_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiou])")


def _word(part: int, category: int, n_categories: int, rng: np.random.Generator) -> str:
    """part 0: adjective, 1: noun. 45% the category's words, 40% generic, 15% another category's."""
    draw = rng.random()
    if draw < 0.85 or n_categories == 1:
        words = THEMES[category][part] if draw < 0.45 else GENERIC[part]
    else:
        words = THEMES[(category + rng.integers(1, n_categories)) % n_categories][part]
    return words[rng.integers(len(words))]


def render_text(category: int, n_categories: int, rng: np.random.Generator) -> tuple[str, str]:
    """(title, description) in the category's vocabulary; the description has 10-40 words."""
    def fill(template: str) -> str:
        text = _SLOT.sub(lambda slot: _word(int(slot[1] == "noun"), category, n_categories, rng), template)
        return _A_BEFORE_VOWEL.sub(r"\1n ", text)

    nouns = THEMES[category][1]
    title = f"{_word(0, category, n_categories, rng)} {nouns[rng.integers(len(nouns))]}".title()
    if rng.random() < 0.4:
        title += f" {GENERIC[1][rng.integers(len(GENERIC[1]))].title()}"
    target = int(rng.integers(10, 36))  # a phrase has at most 5 words: 10..39 words in all
    sentences: list[str] = []
    phrases: list[str] = []
    n_words = 0
    while n_words < target:
        phrases.append(fill(PHRASES[rng.integers(len(PHRASES))]))
        n_words += len(phrases[-1].split())
        if len(phrases) == 3 or n_words >= target or rng.random() < 0.4:
            sentence = ", ".join(phrases)
            sentences.append(sentence[0].upper() + sentence[1:] + ".")
            phrases = []
    return title, " ".join(sentences)


# ---------------------------------------------------------------- image
def _hsv(hue: float, sat: float, val: float) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(hue % 1.0, float(np.clip(sat, 0, 1)), float(np.clip(val, 0, 1)))
    return np.array(rgb, dtype=np.float32) * 255.0


def _circles(x, y, rng):
    k = rng.integers(2, 6)
    cx, cy = rng.uniform(0.15, 0.85, (2, k, 1, 1))
    r = rng.uniform(0.08, 0.2, (k, 1, 1))
    return ((x - cx) ** 2 + (y - cy) ** 2 < r**2).any(0)


def _stripes(x, y, rng):
    theta = np.pi / 4 + rng.uniform(-0.35, 0.35)
    freq = rng.uniform(3, 7)
    return np.sin(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)) + rng.uniform(0, 6.3)) > 0


def _triangles(x, y, rng):
    k = rng.integers(2, 5)
    cx = rng.uniform(0.2, 0.8, (k, 1, 1))
    top = rng.uniform(0.05, 0.5, (k, 1, 1))
    height = rng.uniform(0.2, 0.45, (k, 1, 1))
    inside = (y > top) & (y < top + height) & (np.abs(x - cx) < (y - top) * 0.6)
    return inside.any(0)


def _checker(x, y, rng):
    n = rng.integers(3, 7)
    ox, oy = rng.uniform(0, 1, 2)
    return (np.floor((x + ox) * n) + np.floor((y + oy) * n)) % 2 == 0


def _rings(x, y, rng):
    cx, cy = rng.uniform(0.3, 0.7, 2)
    dist = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    return np.sin(2 * np.pi * rng.uniform(4, 8) * dist + rng.uniform(0, 6.3)) > 0.3


def _diamonds(x, y, rng):
    k = rng.integers(2, 6)
    cx, cy = rng.uniform(0.15, 0.85, (2, k, 1, 1))
    r = rng.uniform(0.1, 0.22, (k, 1, 1))
    return (np.abs(x - cx) + np.abs(y - cy) < r).any(0)


def _waves(x, y, rng):
    k = rng.integers(2, 5)
    y0 = (np.arange(k) + rng.uniform(0.3, 0.7)) / k
    amp, freq, width = rng.uniform(0.03, 0.1), rng.uniform(1, 3), rng.uniform(0.03, 0.06)
    curve = y0[:, None, None] + amp * np.sin(2 * np.pi * freq * x + rng.uniform(0, 6.3))
    return (np.abs(y - curve) < width).any(0)


def _squares(x, y, rng):
    k = rng.integers(2, 6)
    cx, cy = rng.uniform(0.15, 0.85, (2, k, 1, 1))
    r = rng.uniform(0.07, 0.18, (k, 1, 1))
    return (np.maximum(np.abs(x - cx), np.abs(y - cy)) < r).any(0)


IMAGE_SHAPES = (_circles, _stripes, _triangles, _checker, _rings, _diamonds, _waves, _squares)
IMAGE_GRAIN = (1, 4, 2, 8, 3, 6, 1, 4)  # noise block size in pixels: the texture
IMAGE_NOISE = (10.0, 22.0, 16.0, 28.0, 8.0, 18.0, 26.0, 12.0)  # noise amplitude (0..255)


def render_image(category: int, n_categories: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 RGB picture in the category's look."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    hue = category / n_categories + rng.normal(0, 0.02)
    background = _hsv(hue, 0.25 + rng.uniform(0, 0.15), 0.8 + rng.uniform(0, 0.15))
    foreground = _hsv(hue + rng.normal(0, 0.02), 0.7 + rng.uniform(0, 0.25), 0.45 + rng.uniform(0, 0.4))
    mask = IMAGE_SHAPES[category](x, y, rng)[..., None]
    picture = np.where(mask, foreground, background)
    grain = IMAGE_GRAIN[category]
    cells = -(-size // grain)
    noise = rng.standard_normal((cells, cells)).astype(np.float32)
    noise = np.repeat(np.repeat(noise, grain, 0), grain, 1)[:size, :size]
    picture = picture + IMAGE_NOISE[category] * noise[..., None]
    return np.clip(picture, 0, 255).astype(np.uint8)


def encode_jpeg(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture, mode="RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# ---------------------------------------------------------------- audio
@dataclass(frozen=True)
class _Voice:
    partials: tuple[tuple[float, float], ...]  # (frequency ratio, amplitude)
    low_midi: int  # pitch range [low_midi, low_midi + 7]
    bpm: float
    durations: tuple[float, ...]  # note lengths in beats, cycled: the rhythm
    decay_s: float  # amplitude decay time constant within a note


_ODD = tuple((float(k), 1.0 / k) for k in (1, 3, 5, 7, 9))
VOICES = (
    _Voice(((1.0, 1.0),), 52, 100, (1.0,), 0.6),  # sine, steady quarters
    _Voice(_ODD, 40, 132, (0.5, 0.25, 0.25), 0.25),  # square-ish, gallop
    _Voice(tuple((float(k), 1.0 / k) for k in range(1, 9)), 64, 90, (1.5, 0.5), 0.4),  # saw, dotted
    _Voice(tuple((float(k), 1.0 / k**2) for k in (1, 3, 5, 7)), 70, 150, (1 / 3,) * 3, 0.15),  # triangle, triplets
    _Voice(((1.0, 1.0), (2.76, 0.6), (5.4, 0.4), (8.93, 0.25)), 76, 60, (2.0,), 0.8),  # bell, sparse
    _Voice(tuple((float(k), 0.8**k) for k in range(1, 7)), 46, 120, (0.75, 0.75, 0.5), 0.12),  # pluck, syncopated
    _Voice(((1.0, 1.0), (2.0, 0.5), (3.0, 0.3), (4.0, 0.25), (6.0, 0.2)), 58, 40, (4.0,), 3.0),  # organ drone
    _Voice(((1.0, 1.0), (2.0, 0.8), (3.0, 0.6), (4.0, 0.4), (5.0, 0.3)), 82, 140, (0.25,), 0.08),  # buzzy arpeggio
)
_SCALE = np.array([0, 2, 4, 5, 7])  # semitone offsets the melody draws from


def _partial_sines(partials, phase: np.ndarray):
    """Yield (ratio, amplitude, sin(ratio * phase)); integer ratios by the Chebyshev recurrence
    sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x), which costs two sin/cos calls instead of one per partial."""
    if any(ratio != int(ratio) for ratio, _ in partials):
        for ratio, amp in partials:
            yield ratio, amp, np.sin(ratio * phase)
        return
    wanted = {int(ratio): amp for ratio, amp in partials}
    previous, current, two_cos = np.zeros_like(phase), np.sin(phase), 2.0 * np.cos(phase)
    for k in range(1, max(wanted) + 1):
        if k in wanted:
            yield k, wanted[k], current
        previous, current = current, two_cos * current - previous


def render_audio(category: int, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 waveform in [-1, 1] of `seconds`, in the category's sound."""
    voice = VOICES[category]
    n_samples = int(round(seconds * sample_rate))
    t = np.arange(n_samples, dtype=np.float64) / sample_rate
    beat_s = 60.0 / (voice.bpm * rng.uniform(0.9, 1.1))
    pattern = np.array(voice.durations) * beat_s
    n_notes = int(np.ceil(seconds / pattern.sum())) * len(pattern) + 1
    onsets = np.concatenate([[0.0], np.cumsum(np.resize(pattern, n_notes))])[:n_notes]
    root = voice.low_midi + rng.integers(0, 8)
    midi = root + rng.choice(_SCALE, size=n_notes)
    note_idx = np.searchsorted(onsets, t, side="right") - 1
    note_freq = 440.0 * 2.0 ** ((midi - 69) / 12.0)
    phase = 2 * np.pi * np.cumsum(note_freq[note_idx]) / sample_rate
    wave = np.zeros(n_samples)
    for ratio, amp, sine in _partial_sines(voice.partials, phase):
        wave += (amp * (ratio * note_freq < sample_rate / 2))[note_idx] * sine  # no partial above Nyquist
    since_onset = (t - onsets[note_idx]).astype(np.float32)  # float32: exp is several times faster
    envelope = np.minimum(1.0, since_onset / 0.01) * np.exp(-since_onset / voice.decay_s)
    signal = wave * envelope + 0.005 * rng.standard_normal(n_samples, dtype=np.float32)
    peak = np.abs(signal).max() or 1.0
    return (signal / peak * rng.uniform(0.5, 0.9)).astype(np.float32)


def encode_wav(signal: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, signal, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ---------------------------------------------------------------- video
def _tri(u: np.ndarray) -> np.ndarray:
    """Triangle wave R -> [0, 1]: a position that bounces between the walls."""
    return 1.0 - np.abs(np.mod(u, 2.0) - 1.0)


def _path_bounce(t, rng):
    angle = 0.5 + rng.uniform(-0.3, 0.3)
    speed = rng.uniform(0.5, 0.8)
    x0, y0 = rng.uniform(0, 1, 2)
    x, y = _tri(x0 + speed * np.cos(angle) * t), _tri(y0 + speed * np.sin(angle) * t)
    return 0.1 + 0.8 * x, 0.1 + 0.8 * y  # keep the blob inside the frame


def _path_orbit(t, rng):
    omega, phase = rng.uniform(2.0, 3.5), rng.uniform(0, 6.3)
    return 0.5 + 0.3 * np.cos(omega * t + phase), 0.5 + 0.3 * np.sin(omega * t + phase)


def _path_zigzag(t, rng):
    x = np.mod(rng.uniform(0, 1) + 0.4 * t, 1.0)
    return x, 0.25 + 0.5 * _tri(rng.uniform(0, 2) + 3.0 * t)


def _path_pulse(t, rng):
    x, y = rng.uniform(0.35, 0.65, 2)
    return np.full_like(t, x), np.full_like(t, y)


def _path_fall(t, rng):
    return np.full_like(t, rng.uniform(0.2, 0.8)), np.mod(rng.uniform(0, 1) + rng.uniform(0.5, 0.9) * t, 1.0)


def _path_drift_left(t, rng):
    return np.mod(rng.uniform(0, 1) - rng.uniform(0.2, 0.4) * t, 1.0), np.full_like(t, rng.uniform(0.3, 0.7))


def _path_spiral(t, rng):
    radius = 0.05 + 0.3 * t / max(t[-1], 1e-6)
    angle = -4.0 * t + rng.uniform(0, 6.3)  # clockwise, unlike the orbit
    return 0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle)


def _path_shake(t, rng):
    x, y = rng.uniform(0.3, 0.7, 2)
    return x + rng.normal(0, 0.04, t.shape), y + rng.normal(0, 0.04, t.shape)


VIDEO_PATHS = (_path_bounce, _path_orbit, _path_zigzag, _path_pulse,
               _path_fall, _path_drift_left, _path_spiral, _path_shake)
VIDEO_SHAPES = ("disk", "square", "ring", "cross", "diamond", "bar", "disk", "square")


def _blob_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "disk":
        return dx**2 + dy**2 < r**2
    if shape == "square":
        return np.maximum(ax, ay) < r
    if shape == "ring":
        dist = np.sqrt(dx**2 + dy**2)
        return (dist < r) & (dist > 0.55 * r)
    if shape == "cross":
        return ((ax < r) & (ay < 0.3 * r)) | ((ay < r) & (ax < 0.3 * r))
    if shape == "diamond":
        return ax + ay < 1.3 * r
    return (ax < 1.6 * r) & (ay < 0.4 * r)  # bar


def render_video(category: int, n_categories: int, size: int, n_frames: int, fps: int,
                 rng: np.random.Generator) -> np.ndarray:
    """(n_frames, size, size, 3) uint8 RGB clip in the category's motion."""
    t = np.arange(n_frames, dtype=np.float64) / fps
    cx, cy = VIDEO_PATHS[category](t, rng)
    radius = np.full_like(t, rng.uniform(0.1, 0.17))
    if VIDEO_PATHS[category] is _path_pulse:
        radius = radius * (1.0 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.8, 1.5) * t))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy, radius = (v.astype(np.float32) for v in (cx, cy, radius))
    mask = _blob_mask(VIDEO_SHAPES[category], x[None] - cx[:, None, None],
                      y[None] - cy[:, None, None], radius[:, None, None])
    hue = (category + 0.5) / n_categories + rng.normal(0, 0.02)
    background = _hsv(hue, 0.5, 0.15 + rng.uniform(0, 0.1))
    foreground = _hsv(hue, 0.8, 0.8 + rng.uniform(0, 0.2))
    return np.where(mask[..., None], foreground.astype(np.uint8), background.astype(np.uint8))


def encode_mp4(frames: np.ndarray, fps: int) -> bytes:
    """H.264 yuv420p MP4; one thread and bitexact muxing make the bytes reproducible."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fps, options={
            "preset": "ultrafast", "crf": "26", "threads": "1", "g": str(max(fps, 1))})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.thread_count = 1
        for frame_idx, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = frame_idx
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


# ---------------------------------------------------------------- broken
def break_media(kind: str, good: bytes, rng: np.random.Generator) -> bytes | None:
    """The bytes to write for broken `kind` (None: write no file at all)."""
    if kind == "truncated_jpeg":
        return good[: len(good) // 2]
    if kind == "missing_file":
        return None
    if kind == "empty_wav":
        return b""
    if kind == "corrupt_wav_header":
        fmt_at = good.index(b"fmt ") + 8  # start of the fmt chunk body
        bad_fmt = struct.pack("<HH", 0xBEEF, 0)  # unknown format tag, zero channels
        return good[:fmt_at] + bad_fmt + good[fmt_at + 4:]
    if kind == "garbage_mp4":
        return rng.bytes(4096)
    valid = sorted(b.kind for b in BROKEN_MEDIA)
    raise ValueError(f"unknown broken media kind {kind!r}; valid kinds: {valid}")
