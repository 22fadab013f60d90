"""`write_report_html`: the run's report.html, one self-contained page. A section that cannot be drawn is logged
and replaced by a line saying so, and the rest is written: a report is never the reason a run is lost."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pipelines.report_html import page, sections_data, sections_eval
from pipelines.report_html.run_files import RunFiles, Unavailable
from pipelines.store.parquet_io import write_text_atomic

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
# (stable id, title, builder): the ids are the page's anchors, and what tests look for.
SECTIONS: tuple[tuple[str, str, Callable[[RunFiles], str]], ...] = (
    ("models", "Published model and baselines", sections_eval.models),
    ("modalities", "Per-modality ablation and fusion", sections_eval.modalities),
    ("new-items", "New items", sections_eval.new_items),
    ("popularity", "Popularity bias and coverage", sections_data.popularity),
    ("item-map", "Map of the fused item vectors", sections_data.item_map),
    ("extraction", "Extraction", sections_data.extraction),
    ("tuning", "Tuning trials", sections_eval.tuning),
    ("ranker", "Ranker", sections_data.ranker),
    ("run", "Config, inputs and versions", sections_data.run_record),
)
SECTION_IDS = tuple(section_id for section_id, _, _ in SECTIONS)


def _draw(files: RunFiles, section_id: str, builder: Callable[[RunFiles], str], strict: bool) -> str:
    try:
        return builder(files)
    except Unavailable as why:
        return page.not_available(str(why))
    except Exception as exc:
        if strict:
            raise
        log.warning("report.html: section %r not drawn (%s: %s); the rest of the report is written", section_id,
                    type(exc).__name__, exc)
        return page.failed(f"{type(exc).__name__}: {exc}")


def write_report_html(run_dir: Path, store_root: Path | None = None, catalog_path: str | None = None, *,
                      strict: bool = False) -> Path:
    """Write ``run_dir/report.html`` from the run's files, the store's extraction summary (``store_root``) and the
    catalog (``catalog_path``, for the item map's colours); ``strict`` raises where a section would fail."""
    run_dir = Path(run_dir)
    files = RunFiles(run_dir, Path(store_root) if store_root is not None else None, catalog_path)
    drawn = [(section_id, title, _draw(files, section_id, builder, strict)) for section_id, title, builder in SECTIONS]
    run_id = run_dir.resolve().name.removeprefix("incomplete-")
    html = page.document(f"Training run {run_id}", "Written with the run; every figure comes from the run's files. "
                         "It opens offline: the charts are embedded.", drawn)
    # ASCII with character references: the same bytes whatever the locale's default encoding
    return write_text_atomic(html.encode("ascii", "xmlcharrefreplace").decode("ascii"), run_dir / REPORT_NAME)
