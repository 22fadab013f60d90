"""`python -m pipelines <command>`: validate, demo-data, extract, train, nightly, serve; recs, similar, runs, report.

Exit codes: 0 success (and `serve` stopped by SIGINT or SIGTERM), 1 an unexpected failure, 2 invalid
configuration or input, an unknown run, user or item (recs, similar), or no usable Prefect server (nothing
written), 3 the store is locked by another extract or train (nothing written; retry when it has finished),
130 interrupted (Ctrl-C) during a run.

`extract`, `train` and `nightly` check the configuration, the input files and the store lock before any
Prefect server starts, so that these errors come back in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import sys
from pathlib import Path

from extractors.base import ExtractorError
from fusion.errors import FusionError
from pipelines.config import ConfigError, PipelineConfig, load_config
from pipelines.contracts import InvalidInputError, validate_catalog, validate_inputs
from pipelines.errors import PipelineError
from pipelines.inspection.open_run import InspectError
from pipelines.orchestration.prefect_server import PrefectAPIError
from pipelines.store.layout import Store, StoreError, StoreLocked
from pipelines.store.parquet_io import InputFileError
from pipelines.train.inputs import TrainInputError
from ranker.errors import RankerError
from ranker.evaluation.splits import SplitError

log = logging.getLogger("pipelines")
EXIT_OK, EXIT_FAILURE, EXIT_INVALID, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
INVALID = (ConfigError, InvalidInputError, InputFileError, TrainInputError, SplitError, PrefectAPIError, InspectError)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config (default: the embedded demo, pipelines/presets/demo.toml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set extract.shard_size=128 (repeatable)")
    parser.add_argument("--engine", choices=("prefect", "local"), default="prefect",
                        help="prefect (default): a Prefect flow; local: the same tasks in this process, no Prefect")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    val = sub.add_parser("validate", help="check the catalog and interactions against the data contract")
    val.add_argument("--catalog", required=True)
    val.add_argument("--interactions")
    val.add_argument("--media-root")
    val.add_argument("--text-columns", default="title,description", help="comma-separated (default: %(default)s)")
    sub.add_parser("extractors", help="list the registered extractors")
    demo = sub.add_parser("demo-data", help="generate the embedded demo catalog (when absent)")
    _add_config_args(demo)
    extract = sub.add_parser("extract", help="embed the catalog into the store")
    _add_config_args(extract)
    extract.add_argument("--rehash", action="store_true", help="read every media file again to hash it, ignoring "
                         "the stat cache (for tools that rewrite files keeping their size and mtime)")
    _add_config_args(sub.add_parser("train", help="fuse, rank, evaluate, publish"))
    nightly = sub.add_parser("nightly", help="extract then train, as one Prefect flow run (what the schedule runs)")
    _add_config_args(nightly)
    serve = sub.add_parser("serve", help="serve the nightly deployment on a cron schedule (runs until stopped)")
    _add_config_args(serve)
    serve.add_argument("--cron", default="0 2 * * *", help="cron schedule (default: %(default)s)")
    serve.add_argument("--timezone", help="IANA zone the cron is read in, e.g. Europe/Paris (default: UTC)")
    serve.add_argument("--name", default="mmrec-nightly")
    _add_inspect_parsers(sub)
    report = sub.add_parser("report", help="(re)write report.html of a published run")
    _add_config_args(report)
    report.add_argument("--run", help="the run folder (default: <store.root>/latest)")
    return parser


def _add_inspect_parsers(sub) -> None:
    """recs, similar, runs: read a published run (the saved model), never retrain."""
    def store_args(parser: argparse.ArgumentParser, with_run: bool = True) -> None:
        parser.add_argument("--config", help="TOML config naming the store (default: the embedded demo)")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a config key, e.g. --set store.root=store/demo (repeatable)")
        if with_run:
            parser.add_argument("--run", help="a run id of the store, a run folder, or latest (default)")
            parser.add_argument("--k", type=int, default=10, help="items shown (default: %(default)s)")

    recs = sub.add_parser("recs", help="a user's recent history and list, with which sources found each item "
                          "and why it ranks there")
    recs.add_argument("--user", required=True)
    recs.add_argument("--ranker", action="store_true", help="the saved ranker's list and contributions even where "
                      "the guard published a source instead (not the published list)")
    store_args(recs)
    similar = sub.add_parser("similar", help="an item's nearest items and the modalities that agree")
    similar.add_argument("--item", required=True)
    store_args(similar)
    store_args(sub.add_parser("runs", help="the store's published runs with their key metrics"), with_run=False)


def cmd_validate(args: argparse.Namespace) -> int:
    report = validate_inputs(args.catalog, args.interactions, media_root=args.media_root,
                             text_columns=tuple(c for c in args.text_columns.split(",") if c))
    print(report.format())
    return 0 if report.ok else 2


def _default_fingerprint(name: str) -> str:
    """Building the default extractor hashes its weights; hub-only models without a local copy say so."""
    from extractors import registry
    from extractors.base import ExtractorError

    try:
        return registry.create(name, device="cpu").fingerprint
    except (ExtractorError, OSError) as exc:
        return f"(no local weights: {type(exc).__name__})"


def cmd_extractors(_: argparse.Namespace) -> int:
    from extractors import registry

    print(f"{'name':<17} {'modality':<11} {'dim':>5}  {'default model':<38} fingerprint")
    for info in registry.available():
        print(f"{info.name:<17} {info.modality:<11} {info.dim:>5}  {info.default_model:<38} "
              f"{_default_fingerprint(info.name)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo.setup import ensure_demo_for

    paths = ensure_demo_for(load_config(args.config, args.overrides), force_enabled=True)
    print(f"demo catalog: {paths.catalog}\ninteractions: {paths.interactions}\nmedia: {paths.media_root}")
    return 0


def _preflight(command: str, cfg: PipelineConfig) -> None:
    """What can fail in seconds, checked before a Prefect server starts: the extractor options, the input files
    (the catalog for extract; both files for train and nightly), the embeddings train needs, the store lock."""
    data, store = cfg.data, Store(Path(cfg.store.root))
    if command == "train" and not any(store.current_path(m).exists() for m in cfg.train.modalities):
        raise TrainInputError(f"no current embeddings in {store.root} for {list(cfg.train.modalities)}. "
                              "Fix: run `make extract` (same CONFIG) first.")
    if command in ("extract", "nightly"):
        from pipelines.extract.flow import extractor_ref

        for modality in cfg.extract.modalities:
            extractor_ref(cfg, modality)
        if data.demo:
            from pipelines.demo.setup import ensure_demo_for

            ensure_demo_for(cfg)
    if command == "extract":
        validate_catalog(data.catalog, media_root=data.media_root, text_columns=data.text_columns)[0].raise_if_errors()
    else:
        report = validate_inputs(data.catalog, data.interactions, media_root=data.media_root,
                                 text_columns=data.text_columns)
        if report.counts.get("interaction_rows") == 0:  # the same words as train itself
            raise TrainInputError(f"{data.interactions}: the interactions file is empty. Fix: check that the "
                                  "night's export ran; nothing can be trained without interactions.")
        report.raise_if_errors()
    with store.lock(f"{command} pre-flight check"):
        pass  # released at once: the run takes it again; this only fails fast when another run holds it


def _prefect_api(args: argparse.Namespace):
    """The Prefect API for a flow run: PREFECT_API_URL, or a temporary server that dies with this process."""
    if getattr(args, "engine", "prefect") == "local" and args.command != "nightly":
        return contextlib.nullcontext()
    from pipelines.orchestration.prefect_server import prefect_api

    return prefect_api()


def cmd_extract(args: argparse.Namespace) -> int:
    from pipelines.extract.flow import extract_flow, format_line, run_extraction

    cfg = load_config(args.config, [*args.overrides, *(["extract.rehash=true"] if args.rehash else [])])
    _preflight("extract", cfg)
    with _prefect_api(args):
        report = extract_flow(cfg) if args.engine == "prefect" else run_extraction(cfg)
    print("\nextraction summary")
    for summary in report["modalities"]:
        print("  " + format_line(summary))
    print(f"  wall time {report['wall_s']}s; summary written to {cfg.store.root}/extract_summary.json")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pipelines.train.flow import run_training, train_flow

    cfg = load_config(args.config, args.overrides)
    _preflight("train", cfg)
    with _prefect_api(args):
        result = train_flow(cfg) if args.engine == "prefect" else run_training(cfg)
    print(json.dumps({"run": result["run_dir"], "wall_s": result["wall_s"]}))
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    from pipelines.orchestration.nightly import nightly_flow

    _preflight("nightly", load_config(args.config, args.overrides))
    with _prefect_api(args):
        print(json.dumps(nightly_flow(args.config, args.overrides)))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the nightly deployment against a real Prefect server until SIGINT or SIGTERM (then exit 0)."""
    from pipelines.orchestration.nightly import nightly_deployment
    from pipelines.orchestration.prefect_server import require_scheduling_server, serve_until_stopped

    deployment = nightly_deployment(args.config, args.overrides, cron=args.cron, name=args.name,
                                    timezone=args.timezone)
    api_url = require_scheduling_server()
    log.info("serving %s (cron %r, %s) against %s", args.name, args.cron, args.timezone or "UTC", api_url)
    stopped_by = serve_until_stopped(deployment)
    log.info("serve stopped (%s)", stopped_by)
    return EXIT_OK


def _opened(args: argparse.Namespace):
    from pipelines.inspection.open_run import open_run

    if args.k < 1:
        raise InspectError(f"--k {args.k}: ask for at least one item")
    logging.getLogger().setLevel(logging.WARNING)  # loading a run logs its steps; the answer is the output
    return open_run(load_config(args.config, args.overrides), args.run)


def cmd_recs(args: argparse.Namespace) -> int:
    from pipelines.inspection.recs import format_recs

    print(format_recs(_opened(args), args.user, args.k, ranker=args.ranker))
    return EXIT_OK


def cmd_similar(args: argparse.Namespace) -> int:
    from pipelines.inspection.similar import format_similar

    print(format_similar(_opened(args), args.item, args.k))
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from pipelines.inspection.runs import format_runs

    print(format_runs(Store(Path(load_config(args.config, args.overrides).store.root))))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines.report_html import write_report_html

    cfg = load_config(args.config, args.overrides)
    run = Path(args.run) if args.run else Path(cfg.store.root) / "latest"
    if not (run / "metrics.json").is_file():
        raise PipelineError(f"{run} holds no metrics.json: not a published run. Fix: pass --run store/<name>/runs/<id> "
                            "or train first (`make train`).")
    print(write_report_html(run, Path(cfg.store.root), cfg.data.catalog))
    return EXIT_OK


COMMANDS = {"validate": cmd_validate, "extractors": cmd_extractors, "demo-data": cmd_demo,
            "extract": cmd_extract, "train": cmd_train, "nightly": cmd_nightly, "serve": cmd_serve,
            "recs": cmd_recs, "similar": cmd_similar, "runs": cmd_runs,
            "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "faiss.loader"):  # per-request and loader chatter drowns the progress lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except INVALID as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED if is_lock_conflict(exc) else EXIT_FAILURE
    except (PipelineError, RankerError, FusionError, ExtractorError) as exc:  # each package's base: a known failure
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"error: {exc.strerror}", file=sys.stderr)  # the write wrapper's message names the file and the fix
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): nothing half-written is visible; a rerun resumes where this one stopped",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def is_lock_conflict(exc: StoreError) -> bool:
    """Another extract or train holds the store."""
    return isinstance(exc, StoreLocked)


if __name__ == "__main__":
    sys.exit(main())
