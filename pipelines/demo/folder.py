"""Where a demo lives and how it is placed: its paths, its completion marker, and the atomic swap into place."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import PipelineError

MARKER_NAME = ".demo-complete.json"
FORMAT_VERSION = 1
DEMO_ENTRIES = {"catalog.parquet", "interactions.parquet", "truth.parquet", "media", MARKER_NAME}


class DemoFolderError(PipelineError, RuntimeError):
    """The output folder cannot be replaced by a demo."""


@dataclass(frozen=True)
class DemoPaths:
    """Absolute locations of one demo's files."""

    root: Path
    catalog: Path
    interactions: Path
    media_root: Path
    truth: Path

    @classmethod
    def under(cls, root: Path) -> DemoPaths:
        root = Path(root).resolve()
        return cls(root=root, catalog=root / "catalog.parquet", interactions=root / "interactions.parquet",
                   media_root=root / "media", truth=root / "truth.parquet")


def marker_payload(spec) -> str:
    return json.dumps({"format_version": FORMAT_VERSION, "spec": dataclasses.asdict(spec)}, sort_keys=True)


def check_replaceable(root: Path) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise DemoFolderError(f"demo output {root} exists and is a file; pass a folder path (new or empty).")
    foreign = sorted({entry.name for entry in root.iterdir()} - DEMO_ENTRIES)
    if foreign:
        raise DemoFolderError(
            f"demo output {root} exists and holds files that are not part of a demo ({foreign[:5]}); "
            f"generating replaces the whole folder, so pass a new or empty folder, or one made by generate_demo.")


def swap_into_place(staging: Path, root: Path, spec) -> None:
    if not root.exists():
        try:
            os.replace(staging, root)
        except OSError:
            if not is_complete_demo(root, spec):  # else a concurrent run just placed the same demo
                raise
            shutil.rmtree(staging)
        return
    old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(root, old)
    os.replace(staging, root)
    shutil.rmtree(old, ignore_errors=True)


def is_complete_demo(out_dir: Path, spec) -> bool:
    """True when `out_dir` holds a finished demo generated from exactly `spec`."""
    paths = DemoPaths.under(out_dir)
    try:
        marker_matches = (paths.root / MARKER_NAME).read_text() == marker_payload(spec)
    except OSError:
        return False
    outputs = (paths.catalog, paths.interactions, paths.truth, paths.media_root)
    return marker_matches and all(p.exists() for p in outputs)
