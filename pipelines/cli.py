"""`python -m pipelines <command>`: validate, extractors, demo-data, extract, train.

Exit codes: 0 success, 2 invalid input or configuration (nothing written), 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipelines.config import ConfigError, load_config
from pipelines.contracts import InvalidInputError, validate_inputs
from pipelines.parquet_io import InputFileError
from pipelines.store import StoreError
from pipelines.train_data import TrainInputError
from ranker.splits import SplitError

log = logging.getLogger("pipelines")


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
    for name, text in (("extract", "embed the catalog into the store"), ("train", "fuse, rank, evaluate, publish")):
        _add_config_args(sub.add_parser(name, help=text))
    nightly = sub.add_parser("nightly", help="extract then train, as one Prefect flow run (what the schedule runs)")
    _add_config_args(nightly)
    serve = sub.add_parser("serve", help="serve the nightly deployment on a cron schedule (runs until stopped)")
    _add_config_args(serve)
    serve.add_argument("--cron", default="0 2 * * *", help="cron schedule (default: %(default)s)")
    serve.add_argument("--name", default="mmrec-nightly")
    return parser


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
    from pipelines.demo_setup import ensure_demo_for

    paths = ensure_demo_for(load_config(args.config, args.overrides), force_enabled=True)
    print(f"demo catalog: {paths.catalog}\ninteractions: {paths.interactions}\nmedia: {paths.media_root}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from pipelines.extract import extract_flow, format_line, run_extraction

    cfg = load_config(args.config, args.overrides)
    report = extract_flow(cfg) if args.engine == "prefect" else run_extraction(cfg)
    print("\nextraction summary")
    for summary in report["modalities"]:
        print("  " + format_line(summary))
    print(f"  wall time {report['wall_s']}s; summary written to {cfg.store.root}/extract_summary.json")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pipelines.train import run_training, train_flow

    cfg = load_config(args.config, args.overrides)
    result = train_flow(cfg) if args.engine == "prefect" else run_training(cfg)
    print(json.dumps({"run": result["run_dir"], "wall_s": result["wall_s"]}))
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    from pipelines.nightly import nightly_flow

    print(json.dumps(nightly_flow(args.config, args.overrides)))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from prefect import serve

    from pipelines.nightly import nightly_deployment

    serve(nightly_deployment(args.config, args.overrides, cron=args.cron, name=args.name))
    return 0


COMMANDS = {"validate": cmd_validate, "extractors": cmd_extractors, "demo-data": cmd_demo,
            "extract": cmd_extract, "train": cmd_train, "nightly": cmd_nightly, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "faiss.loader"):  # per-request and loader chatter drowns the progress lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, InvalidInputError, InputFileError, TrainInputError, SplitError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
