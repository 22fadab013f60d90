"""Every rule of the data contract, with its message, and that validation writes nothing."""

from datetime import UTC, datetime

import polars as pl
import pytest

from pipelines.cli import main
from pipelines.contracts import InvalidInputError, validate_inputs

TS = datetime(2026, 11, 1, tzinfo=UTC)


def good_catalog() -> pl.DataFrame:
    return pl.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"], "description": ["x", "y", "z"],
                         "image": ["img/a.jpg", None, "img/c.jpg"], "audio": [None, None, None],
                         "video": [None, "v/b.mp4", None]}, schema_overrides={"audio": pl.String})


def good_interactions() -> pl.DataFrame:
    return pl.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"], "ts": [TS, TS, TS],
                         "weight": [1.0, 2.0, 1.0]})


@pytest.fixture
def write(tmp_path):
    def _write(name: str, frame: pl.DataFrame) -> str:
        path = tmp_path / name
        frame.write_parquet(path)
        return str(path)
    return _write


def check(tmp_path, catalog, interactions, media_root=None):
    report = validate_inputs(catalog, interactions, media_root=media_root or str(tmp_path / "media"))
    return report


def test_good_inputs_are_ok(write, tmp_path):
    report = check(tmp_path, write("c.parquet", good_catalog()), write("i.parquet", good_interactions()))
    assert report.ok, report.format()
    assert report.format() == "OK"


@pytest.mark.parametrize("mutate, pattern", [
    (lambda c: c.drop("title"), r"c\.parquet: column 'title': \[missing column\].*Fix: add a 'title' column"),
    (lambda c: c.with_columns(pl.lit(3).alias("title")), r"column 'title': \[type\] has type int32, expected string"),
    (lambda c: c.with_columns(item_id=pl.Series(["a", None, ""])),
     r"column 'item_id': \[non-empty id\] 2 row\(s\).*row 1"),
    (lambda c: c.with_columns(item_id=pl.Series(["a", "a", "c"])),
     r"column 'item_id': \[unique\] 2 rows share.*item_id='a'"),
    (lambda c: c.with_columns(image=pl.Series(["../etc/passwd", None, "/etc/shadow"])),
     r"column 'image': \[inside media root\] 2 reference\(s\) escape.*'\.\./etc/passwd'"),
])
def test_catalog_rules(write, tmp_path, mutate, pattern):
    report = check(tmp_path, write("c.parquet", mutate(good_catalog())), write("i.parquet", good_interactions()))
    with pytest.raises(InvalidInputError, match=pattern):
        report.raise_if_errors()


@pytest.mark.parametrize("mutate, pattern", [
    (lambda i: i.drop("ts"), r"column 'ts': \[missing column\]"),
    (lambda i: i.with_columns(ts=pl.Series(["2026-11-01T00:00:00", "yesterday", None])),
     r"column 'ts': \[parseable timestamp\] 1 value\(s\).*'yesterday'"),
    (lambda i: i.with_columns(ts=pl.Series([TS, None, TS])), r"column 'ts': \[non-null\] 1 row\(s\) have no ts"),
    (lambda i: i.with_columns(user_id=pl.Series([None, "u1", " "])), r"column 'user_id': \[non-empty id\] 2 row"),
    (lambda i: i.with_columns(user_id=pl.Series([1, 2, 3])),
     r"column 'user_id': \[type\] has type int64, expected string"),
    (lambda i: i.clear(), r"i\.parquet: column '\*': \[non-empty\] the file has no rows"),
])
def test_interaction_rules(write, tmp_path, mutate, pattern):
    report = check(tmp_path, write("c.parquet", good_catalog()), write("i.parquet", mutate(good_interactions())))
    with pytest.raises(InvalidInputError, match=pattern):
        report.raise_if_errors()


def test_unknown_items_are_a_counted_warning(write, tmp_path):
    inter = good_interactions().with_columns(item_id=pl.Series(["a", "gone", "gone2"]))
    report = check(tmp_path, write("c.parquet", good_catalog()), write("i.parquet", inter))
    assert report.ok
    assert report.counts["interactions_unknown_item"] == 2
    assert "2 of 3 rows name items absent from the catalog" in report.format()


def test_every_problem_is_reported_not_only_the_first(write, tmp_path):
    catalog = good_catalog().drop("title").with_columns(item_id=pl.Series(["a", "a", None]))
    inter = good_interactions().drop("ts")
    report = check(tmp_path, write("c.parquet", catalog), write("i.parquet", inter))
    rules = {(p.column, p.rule) for p in report.errors}
    assert {("title", "missing column"), ("item_id", "unique"), ("item_id", "non-empty id"),
            ("ts", "missing column")} <= rules


def test_inputs_may_be_uris(write, tmp_path):
    catalog, inter = write("c.parquet", good_catalog()), write("i.parquet", good_interactions())
    report = validate_inputs(f"file://{catalog}", f"file://{inter}", media_root=str(tmp_path))
    assert report.ok, report.format()
    assert report.counts == {"catalog_rows": 3, "interaction_rows": 3, "interactions_unknown_item": 0}


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "c.parquet"
    bad.write_bytes(b"not parquet at all")
    report = validate_inputs(str(bad), None)
    with pytest.raises(InvalidInputError, match=r"c\.parquet.*cannot be read as Parquet"):
        report.raise_if_errors()


def test_cli_exit_codes_and_writes_nothing(write, tmp_path, capsys):
    catalog = write("c.parquet", good_catalog().with_columns(item_id=pl.Series(["a", "a", "c"])))
    inter = write("i.parquet", good_interactions())
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["validate", "--catalog", catalog, "--interactions", inter]) == 2
    out = capsys.readouterr().out
    assert "ERROR" in out and "[unique]" in out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    ok = write("ok.parquet", good_catalog())
    assert main(["validate", "--catalog", ok, "--interactions", inter, "--media-root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "OK"


def test_weights_must_be_finite_and_non_negative(write, tmp_path):
    inter = good_interactions().with_columns(weight=pl.Series([1.0, float("nan"), -2.0]))
    report = check(tmp_path, write("c.parquet", good_catalog()), write("i.parquet", inter))
    with pytest.raises(InvalidInputError, match=r"column 'weight': \[finite, >= 0\] 2 row\(s\)"):
        report.raise_if_errors()
