"""`python -m bench.run [--out bench-results] [--only text,topk,...] [--quick] [--no-doc]`: the speed benchmarks.

Every figure is a ratio against a baseline timed in the same process (several repetitions, alternated,
median reported); nothing here asserts a time. Writes <out>/bench.json (machine, per benchmark: timings,
medians, ratios, goals, met or not) and <out>/bench.md (the table), and on a complete run (all benchmarks,
not --quick) rewrites the table between the markers in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCHMARKS = ("text", "topk", "video", "incremental", "train_path")  # the order they run in
REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "BENCHMARKS.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _version(distribution: str) -> str | None:
    """The installed version of a distribution, read from its metadata (importing it could take seconds)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    import faiss
    import numpy
    import torch

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(), "python": platform.python_version(), "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
        "faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(), "numpy": numpy.__version__,
        "decord": _version("decord"), "av": _version("av"), "sentence_transformers": _version("sentence-transformers"),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def machine_line(m: dict[str, Any]) -> str:
    return (f"{m['date']} · {m['cpu']} · {m['cpus_usable']} usable CPU cores (of {m['cpu_count']}) · "
            f"{'CUDA' if m['cuda'] else 'no GPU'} · {m['platform']} · Python {m['python']} · torch {m['torch']} "
            f"({m['torch_threads']} threads) · faiss {m['faiss']} ({m['faiss_threads']} threads) · "
            f"numpy {m['numpy']} · load average at start {m['loadavg_at_start']}")


def _met(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "**no**")


def table(results: dict[str, Any]) -> str:
    lines = ["| benchmark | ours | baseline | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for name in BENCHMARKS:
        result = results.get(name)
        if result is None:
            lines.append(f"| {name} | not yet measured | | | | |")
        elif "error" in result:
            lines.append(f"| {name} | error: {result['error'].splitlines()[-1][:100]} | | | | |")
        else:
            lines += [f"| {r['benchmark']} | {r['ours']} | {r['baseline']} | {r['ratio']} | {r['goal']} | "
                      f"{_met(r['met'])} |" for r in result["rows"]]
    return "\n".join(lines)


def extra_tables(results: dict[str, Any]) -> list[str]:
    """Tables a benchmark adds below the main one (e.g. the train path's per-stage scaling)."""
    out = []
    for result in results.values():
        for title, text in result.get("tables", []):
            if text:
                out += [f"{title}:", "", text, ""]
    return out


def markdown(report: dict[str, Any]) -> str:
    notes = [f"- {name}: {note}" for name, result in report["benchmarks"].items() for note in result.get("notes", [])]
    return "\n".join([
        f"Machine: {machine_line(report['machine'])}.", "",
        f"`make bench` wall time: {report['wall_s']:.0f} s{' (--quick)' if report['quick'] else ''}.", "",
        table(report["benchmarks"]), "", *extra_tables(report["benchmarks"]),
        *(["Notes:", "", *notes, ""] if notes else []),
    ])


def rewrite_doc(doc: Path, section: str) -> None:
    """Replace what lies between the markers in ``doc`` (appending the markers when absent)."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{START}\n{section.rstrip()}\n{END}"
    if START in text and END in text and text.index(START) < text.index(END):
        text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = doc.with_name(doc.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, doc)


def run_all(names: list[str], quick: bool) -> dict[str, Any]:
    results = {}
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        started = time.perf_counter()
        try:
            result = importlib.import_module(f"bench.{name}").run(quick)
        except Exception:  # one broken benchmark must not hide the others' numbers
            result = {"name": name, "error": traceback.format_exc()}
            print(result["error"], file=sys.stderr)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        results[name] = result
        for r in result.get("rows", []):
            print(f"  {r['benchmark']}: {r['ours']} vs {r['baseline']} -> {r['ratio']} (goal {r['goal']}, "
                  f"met {_met(r['met'])})", flush=True)
        print(f"[bench] {name} done in {result['wall_s']} s", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results", help="folder for bench.json and bench.md")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions")
    parser.add_argument("--no-doc", action="store_true", help="never rewrite BENCHMARKS.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; valid: {list(BENCHMARKS)}")
    names = [n for n in BENCHMARKS if n in names]
    started = time.perf_counter()
    machine = machine_info()
    results = run_all(names, args.quick)
    machine["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {"machine": machine, "quick": args.quick, "benchmarks": results,
              "wall_s": round(time.perf_counter() - started, 1)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    section = markdown(report)
    (out / "bench.md").write_text(section)
    complete = names == list(BENCHMARKS) and not args.quick
    if complete and not args.no_doc:
        rewrite_doc(DOC, section)
        print(f"[bench] table rewritten in {DOC}")
    elif not args.no_doc:
        print("[bench] BENCHMARKS.md left as it is: only a complete run (all benchmarks, no --quick) rewrites it")
    print(f"\n{section}\n[bench] wrote {out / 'bench.json'} and {out / 'bench.md'} in {report['wall_s']} s")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
