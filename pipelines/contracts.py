"""Data contracts of the two inputs, and a validator that reports every problem, not only the first.

catalog:       item_id (string, unique, non-empty), the configured text columns (string), optional media
               references image / audio / video (string, relative to the media root; null = no such media),
               optional updated_at (timestamp). A media reference must resolve, symlinks followed, inside
               the resolved media root; without a media root only absolute references are accepted.
interactions:  user_id (string), item_id (string), ts (timestamp, or an ISO-8601 string), optional weight
               (float), optional event (string).

Interactions naming items absent from the catalog are a counted WARNING, not an error: analytics logs
routinely reference items deleted since, and failing the nightly run for them would lose a night of
recommendations. Those rows are dropped at training time and counted in the run's summary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import polars as pl
import pyarrow as pa

from pipelines.errors import PipelineError
from pipelines.store.parquet_io import InputFileError, read_parquet_table

MEDIA_COLUMNS = ("image", "audio", "video")
DEFAULT_TEXT_COLUMNS = ("title", "description")
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Problem:
    file: str
    column: str
    rule: str
    detail: str
    fix: str
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        shown = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{self.file}: column '{self.column}': [{self.rule}] {self.detail}{shown}. Fix: {self.fix}"


@dataclass
class ValidationReport:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        lines = [f"ERROR {p}" for p in self.errors] + [f"WARNING {p}" for p in self.warnings]
        return "\n".join(lines) if lines else "OK"

    def raise_if_errors(self) -> None:
        if self.errors:
            raise InvalidInputError(self)


class InvalidInputError(PipelineError):
    """The inputs break the data contract; the message lists every problem found."""

    def __init__(self, report: ValidationReport):
        self.report = report
        head = f"{len(report.errors)} problem(s) in the input data; nothing was written."
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in report.errors))


def _is_string(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype)


def _examples(frame: pl.DataFrame, mask: pl.Series, columns: list[str]) -> tuple[str, ...]:
    rows = frame.with_row_index("row").filter(mask).head(MAX_EXAMPLES)
    out = []
    for rec in rows.select(["row", *columns]).iter_rows(named=True):
        vals = ", ".join(f"{c}={rec[c]!r}" for c in columns)
        out.append(f"row {rec['row']} ({vals})")
    return tuple(out)


def _check_type(file: str, table: pa.Table, column: str, expected: str, report: ValidationReport) -> bool:
    dtype = table.schema.field(column).type
    good = _is_string(dtype) if expected == "string" else {
        "timestamp": pa.types.is_timestamp, "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    }[expected](dtype)
    if not good:
        report.errors.append(Problem(file, column, "type", f"has type {dtype}, expected {expected}",
                                     f"cast '{column}' to {expected} in the job that writes {Path(file).name}"))
    return good


def _check_required(file: str, table: pa.Table, required: dict[str, str], report: ValidationReport) -> list[str]:
    present = []
    for column, expected in required.items():
        if column not in table.column_names:
            report.errors.append(Problem(file, column, "missing column",
                                         f"required column is absent (columns found: {', '.join(table.column_names)})",
                                         f"add a '{column}' column of type {expected}"))
        elif _check_type(file, table, column, expected, report):
            present.append(column)
    return present


def _check_ids(file: str, frame: pl.DataFrame, column: str, report: ValidationReport) -> None:
    bad = frame[column].is_null() | (frame[column].str.strip_chars() == "")
    if bad.any():
        report.errors.append(Problem(file, column, "non-empty id",
                                     f"{int(bad.sum())} row(s) have a null or empty {column}",
                                     f"drop or repair those rows upstream; every row needs a {column}",
                                     _examples(frame, bad, [column])))


def _uri_escapes(ref: str, media_root: Path | None) -> bool:
    return media_root is None or not ref.startswith(str(media_root)) or ".." in PurePosixPath(ref).parts


def _media_target(ref: str, media_root: Path | None) -> str | None:
    """Where a local reference really points (symlinks followed); None for a URI or a relative reference
    without a media root (those cannot be resolved)."""
    if "://" in ref:
        return None
    if PurePosixPath(ref).is_absolute():
        return os.path.realpath(ref)
    return None if media_root is None else os.path.realpath(media_root / ref)


def _media_refusals(refs: list[str | None], media_root: Path | None) -> tuple[list[bool], list[bool], list[str | None]]:
    """Per reference: escapes the media root (resolved), relative without a media root, and its target."""
    real_root = os.path.realpath(media_root) if media_root is not None else None
    escapes, relative, targets = [], [], []
    for ref in refs:
        target = None if ref is None else _media_target(ref, media_root)
        targets.append(target)
        if ref is None:
            escapes.append(False)
            relative.append(False)
        elif "://" in ref:
            escapes.append(_uri_escapes(ref, media_root))
            relative.append(False)
        else:
            relative.append(target is None)
            escapes.append(target is not None and real_root is not None
                           and os.path.commonpath([target, real_root]) != real_root)
    return escapes, relative, targets


def _check_media(file: str, frame: pl.DataFrame, column: str, media_root: Path | None,
                 report: ValidationReport) -> None:
    escapes, relative, targets = _media_refusals(frame[column].to_list(), media_root)
    shown = frame.with_columns(pl.Series("resolves_to", targets, dtype=pl.String))
    escapes, relative = pl.Series(escapes, dtype=pl.Boolean), pl.Series(relative, dtype=pl.Boolean)
    if escapes.any():
        root = f"{media_root} (resolved: {os.path.realpath(media_root)})" if media_root is not None else "(none set)"
        report.errors.append(Problem(file, column, "inside media root",
                                     f"{int(escapes.sum())} reference(s) escape the media root {root} once "
                                     "resolved (symlinks followed)",
                                     "use paths relative to the media root, without '..', and no symlink that "
                                     "points out of it (copy the file in instead)",
                                     _examples(shown, escapes, ["item_id", column, "resolves_to"])))
    if relative.any():
        report.errors.append(Problem(file, column, "absolute without media root",
                                     f"{int(relative.sum())} reference(s) are relative but no media root is set "
                                     "(they would resolve against the working directory)",
                                     "set data.media_root (validate: --media-root) to the folder they are relative "
                                     "to, or write absolute paths",
                                     _examples(frame, relative, ["item_id", column])))


def validate_catalog(path: str, *, media_root: str | Path | None = None,
                     text_columns: tuple[str, ...] = DEFAULT_TEXT_COLUMNS,
                     report: ValidationReport | None = None) -> tuple[ValidationReport, pl.DataFrame | None]:
    report = report or ValidationReport()
    file = str(path)
    try:
        table = read_parquet_table(path)
    except InputFileError as exc:
        report.errors.append(Problem(file, "*", "readable", str(exc).split(": ", 1)[-1].rstrip("."), "see above"))
        return report, None
    required = {"item_id": "string", **{c: "string" for c in text_columns}}
    present = _check_required(file, table, required, report)
    media = [c for c in MEDIA_COLUMNS if c in table.column_names and _check_type(file, table, c, "string", report)]
    if "updated_at" in table.column_names:
        _check_type(file, table, "updated_at", "timestamp", report)
    frame = pl.from_arrow(table)
    report.counts["catalog_rows"] = frame.height
    if "item_id" in present:
        _check_ids(file, frame, "item_id", report)
        dup = frame["item_id"].is_duplicated() & frame["item_id"].is_not_null()
        if dup.any():
            report.errors.append(Problem(file, "item_id", "unique", f"{int(dup.sum())} rows share an item_id",
                                         "deduplicate the catalog upstream (one row per item)",
                                         _examples(frame, dup, ["item_id"])))
        for column in media:
            _check_media(file, frame, column, Path(media_root) if media_root else None, report)
    return report, frame


def _parse_ts(file: str, frame: pl.DataFrame, report: ValidationReport) -> pl.DataFrame:
    ts = frame["ts"]
    if ts.dtype == pl.String:
        parsed = ts.str.to_datetime(strict=False, time_zone="UTC", time_unit="us")
        bad = parsed.is_null() & ts.is_not_null()
        if bad.any():
            columns = ["user_id", "ts"] if "user_id" in frame.columns else ["ts"]
            report.errors.append(Problem(file, "ts", "parseable timestamp",
                                         f"{int(bad.sum())} value(s) cannot be parsed",
                                         "write ts as a Parquet timestamp, or as ISO-8601 strings",
                                         _examples(frame, bad, columns)))
        frame = frame.with_columns(ts=parsed)
    elif not isinstance(ts.dtype, pl.Datetime):
        report.errors.append(Problem(file, "ts", "type", f"has type {ts.dtype}, expected timestamp",
                                     "cast ts to a timestamp in the job that writes the interactions"))
        return frame
    missing = frame["ts"].is_null() & ts.is_null()
    if missing.any():
        report.errors.append(Problem(file, "ts", "non-null", f"{int(missing.sum())} row(s) have no ts",
                                     "every interaction needs a timestamp; drop or repair those rows",
                                     _examples(frame, missing, ["item_id"] if "item_id" in frame.columns else [])))
    return frame


def validate_interactions(path: str, *, catalog_ids: pl.Series | None = None,
                          report: ValidationReport | None = None) -> tuple[ValidationReport, pl.DataFrame | None]:
    report = report or ValidationReport()
    file = str(path)
    try:
        table = read_parquet_table(path)
    except InputFileError as exc:
        report.errors.append(Problem(file, "*", "readable", str(exc).split(": ", 1)[-1].rstrip("."), "see above"))
        return report, None
    has_ts = "ts" in table.column_names
    present = _check_required(file, table.drop(["ts"]) if has_ts else table,
                              {"user_id": "string", "item_id": "string"}, report)
    if not has_ts:
        report.errors.append(Problem(file, "ts", "missing column", "required column is absent",
                                     "add a 'ts' timestamp column (when the interaction happened)"))
    weight_ok = "weight" in table.column_names and _check_type(file, table, "weight", "float", report)
    if "event" in table.column_names:
        _check_type(file, table, "event", "string", report)
    frame = pl.from_arrow(table)
    if weight_ok:
        w = frame["weight"].cast(pl.Float64)
        bad = w.is_not_null() & (w.is_nan() | w.is_infinite() | (w < 0))
        if bad.any():
            report.errors.append(Problem(file, "weight", "finite, >= 0", f"{int(bad.sum())} row(s) have a negative, "
                                         "NaN or infinite weight", "write weights as finite numbers >= 0 (null = 1)",
                                         _examples(frame, bad, ["user_id", "weight"] if "user_id" in frame.columns
                                                   else ["weight"])))
    report.counts["interaction_rows"] = frame.height
    if frame.height == 0:
        report.errors.append(Problem(file, "*", "non-empty", "the file has no rows",
                                     "check that the analytics export for this night ran"))
    for column in present:
        _check_ids(file, frame, column, report)
    if has_ts:
        frame = _parse_ts(file, frame, report)
    if catalog_ids is not None and "item_id" in present:
        unknown = ~frame["item_id"].is_in(catalog_ids.implode()) & frame["item_id"].is_not_null()
        report.counts["interactions_unknown_item"] = int(unknown.sum())
        if unknown.any():
            report.warnings.append(Problem(file, "item_id", "known item",
                                           f"{int(unknown.sum())} of {frame.height} rows name items absent "
                                           "from the catalog; "
                                           "they are ignored at training time",
                                           "none needed if those items were removed; otherwise re-export the catalog",
                                           _examples(frame, unknown, ["user_id", "item_id"])))
    return report, frame


def validate_inputs(catalog: str, interactions: str | None, *, media_root: str | Path | None = None,
                    text_columns: tuple[str, ...] = DEFAULT_TEXT_COLUMNS) -> ValidationReport:
    """Validate both inputs into one report (every problem of both files)."""
    report, frame = validate_catalog(catalog, media_root=media_root, text_columns=text_columns)
    if interactions is not None:
        usable = frame is not None and "item_id" in frame.columns and frame["item_id"].dtype == pl.String
        ids = frame["item_id"] if usable else None
        validate_interactions(interactions, catalog_ids=ids, report=report)
    return report
