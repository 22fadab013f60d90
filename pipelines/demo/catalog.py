"""Embedded demo catalog: a small, seeded, realistic multimodal shop.

`generate_demo(out_dir, spec)` writes, byte-identically for the same spec:

    catalog.parquet       item_id, title, description, image, audio, video, updated_at
                          (media paths relative to media/, null when the item has none)
    interactions.parquet  user_id, item_id, ts, weight (float32), event (view=1, click=2, purchase=4)
    truth.parquet         item_id, category, first_seen, is_cold, image/audio/video_broken_kind
                          -- ground truth for tests, never an input of the product
    media/images/<item_id>.jpg  media/audio/<item_id>.wav  media/video/<item_id>.mp4
    .demo-complete.json   completion marker (format version + spec), written last

Each item has one latent category, which sets its look, sound, motion and
vocabulary (see pipelines.demo.media). Users like a Dirichlet mixture of 1-3
categories; popularity is Zipf-like within a category; activity is skewed.
Interactions span `days` days ending at REFERENCE_END (a fixed date, not now()).
About `cold_share` of the items first appear in the last `cold_days` days and get
a few interactions after that; no item is ever seen before its first_seen.
Media is missing for MISSING_SHARE of the items (text is always present).

Deliberately broken media (BROKEN_MEDIA), one item per kind, so the product's
error path runs: truncated_jpeg (first half of a real JPEG), missing_file (an image
reference whose file is never written), empty_wav (zero bytes), corrupt_wav_header
(fmt chunk: 0 channels, format 0xBEEF), garbage_mp4 (4 KiB of random bytes).
Walking BROKEN_MEDIA in order, each kind takes the lowest-numbered warm item that
has that modality and is not broken yet; truth.parquet names them.

The demo is built in a temporary sibling folder and moved into place with
os.replace, so a killed run never leaves a folder that `ensure_demo` accepts.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.demo import media as demo_media
from pipelines.demo.folder import (
    MARKER_NAME,
    DemoFolderError,
    DemoPaths,
    check_replaceable,
    is_complete_demo,
    marker_payload,
    swap_into_place,
)
from pipelines.demo.media import BROKEN_MEDIA, BrokenMedia
from pipelines.errors import PipelineError

__all__ = [
    "BROKEN_MEDIA",
    "REFERENCE_END",
    "BrokenMedia",
    "DemoFolderError",
    "DemoPaths",
    "DemoSpec",
    "DemoSpecError",
    "ensure_demo",
    "generate_demo",
    "is_complete_demo",
]

log = logging.getLogger(__name__)

REFERENCE_END = datetime(2026, 11, 30, tzinfo=UTC)
SECONDS_PER_DAY = 86_400
MODALITIES = ("image", "audio", "video")
MISSING_SHARE = {"image": 0.08, "audio": 0.15, "video": 0.20}
MEDIA_LAYOUT = {"image": ("images", "jpg"), "audio": ("audio", "wav"), "video": ("video", "mp4")}
MIN_ITEMS = 20
MAX_COLD_EVENTS = 5  # a cold item gets 2..MAX_COLD_EVENTS interactions after its first_seen
ZIPF_EXPONENT = 1.1
EVENTS = ("view", "click", "purchase")
EVENT_WEIGHTS = np.array([1.0, 2.0, 4.0], dtype=np.float32)
EVENT_SHARE = (0.75, 0.20, 0.05)
_HOUR_PROFILE = np.array([1, 1, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 5, 4, 4, 5, 6, 8, 9, 9, 7, 4, 2], dtype=float)
HOUR_SHARE = _HOUR_PROFILE / _HOUR_PROFILE.sum()  # more activity in the evening
WARM_IN_WINDOW_SHARE = 0.3  # warm items that first appear inside the window (not before it)
_TS = pa.timestamp("us", tz="UTC")


class DemoSpecError(PipelineError, ValueError):
    """A DemoSpec field is out of its valid range."""


@dataclass(frozen=True)
class DemoSpec:
    n_items: int = 600
    n_users: int = 300
    n_interactions: int = 20_000
    days: int = 60
    n_categories: int = 6
    seed: int = 0
    cold_share: float = 0.05
    cold_days: int = 5
    image_size: int = 96
    audio_seconds: float = 3.0
    sample_rate: int = 16_000
    video_seconds: float = 2.0
    video_size: int = 64
    video_fps: int = 12

    def __post_init__(self) -> None:
        for field, value, low, high, why in _spec_rules(self):
            if not low <= value <= high:
                raise DemoSpecError(f"DemoSpec.{field}={value!r} is out of range; valid: {low}..{high}. "
                                    f"{why}Fix: pass {field} within that range.")
        if self.video_size % 2:
            raise DemoSpecError(f"DemoSpec.video_size={self.video_size} must be even (yuv420p); "
                                f"use {self.video_size + 1}.")
        need = self.n_users + MAX_COLD_EVENTS * self.n_cold
        if self.n_interactions < need:
            raise DemoSpecError(f"DemoSpec.n_interactions={self.n_interactions} is too small: every user "
                                f"gets one and each of {self.n_cold} cold items up to {MAX_COLD_EVENTS}; "
                                f"use n_interactions >= {need}.")

    @property
    def n_cold(self) -> int:
        return max(1, round(self.cold_share * self.n_items)) if self.cold_share > 0 else 0

    @property
    def n_video_frames(self) -> int:
        return int(round(self.video_seconds * self.video_fps))


def _spec_rules(spec: DemoSpec) -> list[tuple[str, float, float, float, str]]:
    return [
        ("seed", spec.seed, 0, 2**63 - 1, "Seeds are non-negative integers. "),
        ("n_categories", spec.n_categories, 1, demo_media.STYLE_COUNT, "There are 8 built-in category styles. "),
        ("n_items", spec.n_items, MIN_ITEMS, 10**6, "Room for missing and broken media. "),
        ("n_users", spec.n_users, 1, 10**7, ""),
        ("days", spec.days, 2, 3650, ""),
        ("cold_days", spec.cold_days, 1, spec.days - 1, "Cold items appear in the last cold_days < days days. "),
        ("cold_share", spec.cold_share, 0.0, 0.3, ""),
        ("image_size", spec.image_size, 8, 1024, ""),
        ("audio_seconds", spec.audio_seconds, 0.05, 60.0, ""),
        ("sample_rate", spec.sample_rate, 8000, 48000, ""),
        ("video_size", spec.video_size, 16, 512, ""),
        ("video_fps", spec.video_fps, 1, 60, ""),
        ("video_seconds", spec.video_seconds, 1.0 / max(spec.video_fps, 1), 60.0, "A video needs one frame. "),
    ]


@dataclass(frozen=True)
class _Items:
    category: np.ndarray  # (n,) int64 latent category
    popularity: np.ndarray  # (n,) float64 Zipf weight within the category
    first_seen_s: np.ndarray  # (n,) int64 epoch seconds
    updated_s: np.ndarray  # (n,) int64 epoch seconds
    is_cold: np.ndarray  # (n,) bool
    has_media: dict[str, np.ndarray]  # modality -> (n,) bool
    broken: dict[str, list[str | None]]  # modality -> broken kind per item


def _rng(spec: DemoSpec, *stream: int) -> np.random.Generator:
    """One independent random stream per part, so parts do not shift each other."""
    return np.random.default_rng([spec.seed, *stream])


def _window(spec: DemoSpec) -> tuple[int, int]:
    end_s = int(REFERENCE_END.timestamp())
    return end_s - spec.days * SECONDS_PER_DAY, end_s


def _draw_item_truth(spec: DemoSpec) -> _Items:
    rng = _rng(spec, 1)
    n, start_s, end_s = spec.n_items, *_window(spec)
    category = rng.permutation(np.arange(n) % spec.n_categories)
    rank = np.empty(n, dtype=np.int64)
    for cat in range(spec.n_categories):
        members = np.flatnonzero(category == cat)
        rank[members] = rng.permutation(members.size)
    is_cold = np.zeros(n, dtype=bool)
    is_cold[rng.choice(np.flatnonzero(rank > 0), spec.n_cold, replace=False)] = True
    # Warm items appear before the window (the top item of each category always
    # does, so every category has something to interact with) or inside it.
    first_seen = start_s - rng.integers(SECONDS_PER_DAY, 180 * SECONDS_PER_DAY, n)
    cold_from = end_s - spec.cold_days * SECONDS_PER_DAY
    in_window = ~is_cold & (rank > 0) & (rng.random(n) < WARM_IN_WINDOW_SHARE)
    first_seen[in_window] = rng.integers(start_s, cold_from, in_window.sum())
    first_seen[is_cold] = cold_from + rng.integers(0, int(0.8 * (end_s - cold_from)), is_cold.sum())
    updated = first_seen + (rng.random(n) * (end_s - first_seen) * 0.5).astype(np.int64)
    has_media = {}
    for modality in MODALITIES:
        has = np.ones(n, dtype=bool)
        has[rng.choice(n, max(1, round(MISSING_SHARE[modality] * n)), replace=False)] = False
        has_media[modality] = has
    return _Items(category=category, popularity=1.0 / (rank + 1.0) ** ZIPF_EXPONENT, first_seen_s=first_seen,
                  updated_s=updated, is_cold=is_cold, has_media=has_media,
                  broken=_choose_broken(has_media, is_cold))


def _choose_broken(has_media: dict[str, np.ndarray], is_cold: np.ndarray) -> dict[str, list[str | None]]:
    broken: dict[str, list[str | None]] = {m: [None] * is_cold.size for m in MODALITIES}
    taken = np.zeros(is_cold.size, dtype=bool)
    for case in BROKEN_MEDIA:
        item_idx = int(np.flatnonzero(has_media[case.modality] & ~is_cold & ~taken)[0])
        broken[case.modality][item_idx] = case.kind
        taken[item_idx] = True
    return broken


def _ids(prefix: str, count: int) -> list[str]:
    width = max(4, len(str(count - 1)))
    return [f"{prefix}{idx:0{width}d}" for idx in range(count)]


def _media_ref(modality: str, item_id: str) -> str:
    folder, ext = MEDIA_LAYOUT[modality]
    return f"{folder}/{item_id}.{ext}"


def _catalog_table(spec: DemoSpec, items: _Items, item_ids: list[str]) -> pa.Table:
    rng = _rng(spec, 2)
    titles, descriptions = zip(*(demo_media.render_text(int(cat), spec.n_categories, rng)
                                 for cat in items.category))
    columns = {"item_id": pa.array(item_ids, pa.string()),
               "title": pa.array(titles, pa.string()),
               "description": pa.array(descriptions, pa.string())}
    for modality in MODALITIES:
        refs = [_media_ref(modality, item_id) if has else None
                for item_id, has in zip(item_ids, items.has_media[modality])]
        columns[modality] = pa.array(refs, pa.string())
    columns["updated_at"] = pa.array(items.updated_s * 1_000_000, _TS)
    return pa.table(columns)


def _draw_users(spec: DemoSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(preference (n_users, n_categories), activity (n_users,)): 1-3 dominant categories, skewed activity."""
    preference = np.empty((spec.n_users, spec.n_categories))
    for user_idx in range(spec.n_users):
        alpha = np.full(spec.n_categories, 0.2)
        n_dominant = min(spec.n_categories, int(rng.integers(1, 4)))
        alpha[rng.choice(spec.n_categories, n_dominant, replace=False)] += 4.0
        preference[user_idx] = rng.dirichlet(alpha)
    activity = rng.lognormal(0.0, 1.0, spec.n_users)
    return preference, activity / activity.sum()


def _pick_items(event_category: np.ndarray, ts_s: np.ndarray, items: _Items,
                rng: np.random.Generator) -> np.ndarray:
    """Item per event: Zipf within the event's category, among items already released at ts."""
    chosen = np.empty(event_category.size, dtype=np.int64)
    for cat in np.unique(event_category):
        members = np.flatnonzero(items.category == cat)
        cumulative = np.cumsum(items.popularity[members])
        pending = np.flatnonzero(event_category == cat)
        for _ in range(20):  # redraw events whose item was not released yet
            if pending.size == 0:
                break
            slot = np.searchsorted(cumulative, rng.random(pending.size) * cumulative[-1], side="right")
            drawn = members[np.minimum(slot, members.size - 1)]
            released = items.first_seen_s[drawn] <= ts_s[pending]
            chosen[pending[released]] = drawn[released]
            pending = pending[~released]
        chosen[pending] = members[np.argmax(items.popularity[members])]  # the top item predates the window
    return chosen


def _draw_interactions(spec: DemoSpec, items: _Items) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user_idx, item_idx, ts_s, event_idx), sorted by time."""
    rng, (start_s, end_s) = _rng(spec, 3), _window(spec)
    preference, activity = _draw_users(spec, rng)
    cold_idx = np.flatnonzero(items.is_cold)
    cold_counts = rng.integers(2, MAX_COLD_EVENTS + 1, cold_idx.size)
    n_general = spec.n_interactions - int(cold_counts.sum())
    # everyone acts at least once; the rest follows the skewed activity
    user_idx = np.concatenate([rng.permutation(spec.n_users),
                               rng.choice(spec.n_users, n_general - spec.n_users, p=activity)])
    day_share = 1.0 + 0.5 * np.arange(spec.days) / spec.days  # mild growth over the window
    day = rng.choice(spec.days, n_general, p=day_share / day_share.sum())
    ts_s = (start_s + day * SECONDS_PER_DAY + rng.choice(24, n_general, p=HOUR_SHARE) * 3600
            + rng.integers(0, 3600, n_general))
    event_category = (np.cumsum(preference, 1)[user_idx] < rng.random(n_general)[:, None]).sum(1)
    item_idx = _pick_items(np.minimum(event_category, spec.n_categories - 1), ts_s, items, rng)
    # cold items: a few events after first_seen, from users who like their category
    cold_items = np.repeat(cold_idx, cold_counts)
    fans = [preference[:, items.category[i]] * activity + 1e-12 for i in cold_items]
    cold_users = np.array([rng.choice(spec.n_users, p=f / f.sum()) for f in fans], dtype=np.int64)
    since = items.first_seen_s[cold_items]
    cold_ts = since + (rng.random(cold_items.size) * (end_s - since)).astype(np.int64)
    user_idx = np.concatenate([user_idx, cold_users])
    item_idx = np.concatenate([item_idx, cold_items])
    ts_s = np.concatenate([ts_s, cold_ts])
    event_idx = rng.choice(len(EVENTS), user_idx.size, p=EVENT_SHARE)
    order = np.lexsort((item_idx, user_idx, ts_s))
    return user_idx[order], item_idx[order], ts_s[order], event_idx[order]


def _interactions_table(spec: DemoSpec, items: _Items, item_ids: list[str]) -> pa.Table:
    user_idx, item_idx, ts_s, event_idx = _draw_interactions(spec, items)
    return pa.table({
        "user_id": pa.array(np.array(_ids("u", spec.n_users), dtype=object)[user_idx], pa.string()),
        "item_id": pa.array(np.array(item_ids, dtype=object)[item_idx], pa.string()),
        "ts": pa.array(ts_s * 1_000_000, _TS),
        "weight": pa.array(EVENT_WEIGHTS[event_idx], pa.float32()),
        "event": pa.array(np.array(EVENTS, dtype=object)[event_idx], pa.string()),
    })


def _truth_table(items: _Items, item_ids: list[str]) -> pa.Table:
    columns = {"item_id": pa.array(item_ids, pa.string()),
               "category": pa.array(items.category, pa.int64()),
               "first_seen": pa.array(items.first_seen_s * 1_000_000, _TS),
               "is_cold": pa.array(items.is_cold, pa.bool_())}
    for modality in MODALITIES:
        columns[f"{modality}_broken_kind"] = pa.array(items.broken[modality], pa.string())
    return pa.table(columns)


def _encode_media(modality: str, category: int, spec: DemoSpec, rng: np.random.Generator) -> bytes:
    if modality == "image":
        picture = demo_media.render_image(category, spec.n_categories, spec.image_size, rng)
        return demo_media.encode_jpeg(picture)
    if modality == "audio":
        signal = demo_media.render_audio(category, spec.audio_seconds, spec.sample_rate, rng)
        return demo_media.encode_wav(signal, spec.sample_rate)
    frames = demo_media.render_video(category, spec.n_categories, spec.video_size, spec.n_video_frames,
                                     spec.video_fps, rng)
    return demo_media.encode_mp4(frames, spec.video_fps)


def _write_media(media_root: Path, spec: DemoSpec, items: _Items, item_ids: list[str]) -> None:
    for folder, _ in MEDIA_LAYOUT.values():
        (media_root / folder).mkdir(parents=True)
    for modality_code, modality in enumerate(MODALITIES):
        for item_idx in np.flatnonzero(items.has_media[modality]):
            rng = _rng(spec, 4, modality_code, int(item_idx))
            data: bytes | None = _encode_media(modality, int(items.category[item_idx]), spec, rng)
            kind = items.broken[modality][item_idx]
            if kind is not None:
                data = demo_media.break_media(kind, data, rng)
            if data is not None:
                (media_root / _media_ref(modality, item_ids[item_idx])).write_bytes(data)


def _write_demo(root: Path, spec: DemoSpec) -> None:
    paths = DemoPaths.under(root)
    items = _draw_item_truth(spec)
    item_ids = _ids("i", spec.n_items)
    pq.write_table(_catalog_table(spec, items, item_ids), paths.catalog)
    pq.write_table(_interactions_table(spec, items, item_ids), paths.interactions)
    pq.write_table(_truth_table(items, item_ids), paths.truth)
    _write_media(paths.media_root, spec, items, item_ids)
    (root / MARKER_NAME).write_text(marker_payload(spec))  # last: the folder is complete


def generate_demo(out_dir: Path, spec: DemoSpec = DemoSpec()) -> DemoPaths:
    """Write the demo for `spec` into `out_dir`, replacing any demo already there."""
    root = Path(out_dir).resolve()
    check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes 0700; the demo is meant to be shared
        _write_demo(staging, spec)
        swap_into_place(staging, root, spec)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("generated demo (%d items, %d interactions) in %s in %.1f s",
             spec.n_items, spec.n_interactions, root, time.perf_counter() - started)
    return DemoPaths.under(root)


def ensure_demo(out_dir: Path, spec: DemoSpec = DemoSpec()) -> DemoPaths:
    """Return the demo in `out_dir`, generating it only when absent, incomplete or of another spec."""
    if is_complete_demo(out_dir, spec):
        log.info("reusing the complete demo in %s", Path(out_dir).resolve())
        return DemoPaths.under(out_dir)
    return generate_demo(out_dir, spec)
