"""report.html: written into every published run, one self-contained page: valid HTML, every section present
(those without data saying why), every chart a decodable embedded PNG, nothing fetched from the network."""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from pipelines.cli import main
from pipelines.report_html import SECTION_IDS, build, write_report_html
from pipelines.store.layout import Store
from pipelines.train.flow import run_training
from tests.train_helpers import clustered_store, train_config

FAST = ["train.modalities=['text']", "train.eval.min_users=5"]
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr", "col", "area", "base", "embed", "track"}
SUMMARY = {"finished_at": "2026-11-30T00:00:00+00:00", "catalog": "c.parquet", "catalog_items": 66, "wall_s": 1.5,
           "modalities": [{"modality": "text", "extractor": "text/hf", "dim": 8, "total": 66, "unchanged": 60,
                           "known_failed": 0, "embedded": 5, "failed": {"decode": 1}, "items_per_s": 3.3,
                           "wall_s": 1.5}]}


class Page(HTMLParser):
    """Checks that every element is closed in order, and collects ids, images, links and each section's text."""

    def __init__(self):
        super().__init__()
        self.open, self.errors, self.ids, self.images, self.links = [], [], [], [], []
        self.section_text, self._current = {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in VOID:
            self.open.append(tag)
        if "id" in attrs:
            self.ids.append(attrs["id"])
            if tag == "h2":
                self._current = attrs["id"]
                self.section_text[self._current] = ""
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        if attrs.get("class") in ("na", "failed") and self._current:
            self.section_text[self._current] += f"[{attrs['class']}]"

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")
        else:
            self.open.pop()

    def handle_data(self, data):
        if self._current:
            self.section_text[self._current] += data


def parse(run: Path) -> Page:
    parsed = Page()
    parsed.feed((run / "report.html").read_text(encoding="ascii"))  # ASCII by construction
    parsed.close()
    return parsed


def check_page(parsed: Page) -> None:
    assert not parsed.errors and not parsed.open, (parsed.errors, parsed.open)
    assert [i for i in SECTION_IDS if i not in parsed.ids] == []
    assert not [s for s, text in parsed.section_text.items() if "[failed]" in text], parsed.section_text
    assert not [link for link in parsed.links if link.lower().startswith(("http:", "https:", "//"))]
    assert parsed.images
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True))).verify()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """An evaluated run (temporal + item-cold, LightGBM), with a catalog category and an extraction summary."""
    tmp_path = tmp_path_factory.mktemp("report_html")
    interactions = clustered_store(tmp_path, n_new=6)
    ids = [f"i{i:02d}" for i in range(66)]
    pl.DataFrame({"item_id": ids, "category": [["shoes", "hats", "bags"][i % 3] for i in range(66)]}).write_parquet(
        tmp_path / "c.parquet")
    Store(tmp_path / "store").write_summary(SUMMARY)
    cfg = train_config(tmp_path, interactions, [*FAST, "train.item_cold.enabled=true", "train.tune.enabled=false"])
    return Path(run_training(cfg)["run_dir"])


@pytest.fixture(scope="module")
def unevaluated(tmp_path_factory):
    """A run that skipped the test protocols (train.eval.every = 0), no catalog file, no extraction summary."""
    tmp_path = tmp_path_factory.mktemp("report_html_skipped")
    cfg = train_config(tmp_path, clustered_store(tmp_path, n_new=3), [*FAST, "train.eval.every=0",
                                                                       "train.tune.enabled=false"])
    return Path(run_training(cfg)["run_dir"])


def test_an_evaluated_run_publishes_a_complete_self_contained_report(evaluated):
    parsed = parse(evaluated)
    check_page(parsed)
    text = parsed.section_text
    assert "Published:" in text["models"] and "temporal protocol" in text["models"]
    assert "item-cold protocol" in text["models"] and "the guard on validation" in text["models"]
    assert "fusion weight" in text["modalities"] and "held-out items rank among themselves" in text["new-items"]
    assert "the catalog column 'category'" in text["item-map"]
    assert "decode 1" in text["extraction"] and "The ranker as trained for production" in text["ranker"]
    assert len(parsed.images) >= 6
    assert "[na]" not in text["tuning"] and "[na]" not in text["popularity"]


def test_sections_without_data_say_why(unevaluated):
    parsed = parse(unevaluated)
    check_page(parsed)
    text = parsed.section_text
    assert "[na]not available: the test protocols did not run this time (train.eval.every = 0" in text["models"]
    assert "[na]not available: no tuning records" in text["tuning"]
    assert "[na]not available:" in text["extraction"] and "extract_summary.json" in text["extraction"]
    assert "Coloured by interactions" in text["item-map"]


def test_an_mlp_ranker_shows_its_training_curve(evaluated, tmp_path):
    """The MLP's saved meta keeps its per-epoch history (tests/ranker checks the round trip); drawn from the file."""
    run = Path(shutil.copytree(evaluated, tmp_path / "run"))
    history = [{"epoch": e, "train_loss": 1.0 / e, "valid_ndcg": 0.1 * e} for e in range(1, 6)]
    (run / "ranker" / "meta.json").write_text(json.dumps({"kind": "mlp_ranker", "best_epoch": 5, "history": history}))
    write_report_html(run, strict=True)
    parsed = parse(run)
    check_page(parsed)
    assert "best epoch: 5" in parsed.section_text["ranker"]


def test_a_section_that_fails_is_logged_and_the_rest_is_written(evaluated, tmp_path, monkeypatch, caplog):
    run = Path(shutil.copytree(evaluated, tmp_path / "run"))

    def broken(files):
        raise ValueError("a plotting bug")

    sections = tuple((sid, title, broken if sid == "popularity" else fn) for sid, title, fn in build.SECTIONS)
    monkeypatch.setattr(build, "SECTIONS", sections)
    with caplog.at_level(logging.WARNING):
        write_report_html(run)
    parsed = parse(run)
    assert "[failed]" in parsed.section_text["popularity"] and "a plotting bug" in caplog.text
    assert "'popularity'" in caplog.text and "temporal protocol" in parsed.section_text["models"]
    with pytest.raises(ValueError, match="a plotting bug"):
        write_report_html(run, strict=True)


def test_the_report_command_rewrites_a_runs_report(evaluated, tmp_path, capsys):
    run = Path(shutil.copytree(evaluated, tmp_path / "run"))
    (run / "report.html").unlink()
    store = evaluated.parents[1]
    overrides = ["--set", f"store.root='{store}'", "--set", f"data.catalog='{store.parent / 'c.parquet'}'"]
    assert main(["report", "--run", str(run), *overrides]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    check_page(parse(run))
    assert main(["report", "--run", str(tmp_path), *overrides]) == 1  # not a run: said, nothing written
    assert "not a published run" in capsys.readouterr().err
