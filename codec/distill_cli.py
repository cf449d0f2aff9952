"""`wavtok distill label|train`: the command line of search distillation (`codec.distill`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run_label(args: argparse.Namespace) -> int:
    from codec.distill import label_data
    from codec.model import Codec
    from codec.search import settings_from

    codec = Codec.from_pretrained(args.model, args.device)
    settings = settings_from(args.search, codec.config)
    if settings is None:
        raise ValueError("--search must be at least 1")
    count = label_data(codec, Path(args.data), Path(args.out), settings, args.max_segments, _log)
    _log(f"{count} segments labelled in {args.out}")
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from codec.config import load_yaml_mapping
    from codec.distill import DistillConfig, distill_encoder
    from codec.model import Codec

    cfg = DistillConfig()
    if args.config:
        cfg = DistillConfig.model_validate(load_yaml_mapping(args.config, "distill config"))
    if args.steps:
        cfg = cfg.model_copy(update={"steps": args.steps})
    codec = Codec.from_pretrained(args.model, args.device)
    stop = {"requested": False}

    def request_stop(signum, _frame):
        _log(f"signal {signum}: checkpointing at the end of this step")
        stop["requested"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    run_dir = Path(args.out)
    result = distill_encoder(
        codec, Path(args.data), Path(args.labels), cfg, run_dir, _log, lambda: stop["requested"]
    )
    _log(
        f"step {result['step']}: held-out accuracy {result['accuracy']:.3f} "
        f"(start {result['accuracy_start']:.3f})"
    )
    if args.export:
        out = Path(args.export)
        # The model is named after its folder, as `wavtok export` names it.
        exported = Codec.from_config(codec.config.model_copy(update={"name": out.name}))
        exported.load_state_dict(codec.state_dict())
        exported.save_pretrained(out)
        summary = {
            "distilled_from": codec.name,
            "labels": json.loads((Path(args.labels) / "labels.json").read_text("utf-8")),
            "distill_config": cfg.model_dump(),
            **result,
        }
        (out / "distill.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
        _log(f"exported -> {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "distill", help="teach a model's encoder the tokens that search encoding finds"
    )
    sub = p.add_subparsers(dest="distill_command", required=True)
    lab = sub.add_parser("label", help="search-encode a prepared folder's segments (resumable)")
    lab.add_argument("--model", default=None, help="model name or folder (default: the default)")
    lab.add_argument("--data", required=True, help="a folder from `wavtok data prepare`")
    lab.add_argument("--out", required=True, help="labels folder")
    lab.add_argument("--search", type=int, default=8, metavar="N", help="candidates (8)")
    lab.add_argument("--max-segments", type=int, help="stop once this many are labelled")
    lab.add_argument("--device", default="cpu")
    lab.set_defaults(func=_run_label)
    tr = sub.add_parser("train", help="train the encoder on labels (resumes from --out)")
    tr.add_argument("--model", default=None, help="model name or folder (default: the default)")
    tr.add_argument("--data", required=True, help="the folder the labels were made from")
    tr.add_argument("--labels", required=True, help="labels folder from `wavtok distill label`")
    tr.add_argument("--out", required=True, help="run directory (checkpoints)")
    tr.add_argument("--config", help="DistillConfig YAML")
    tr.add_argument("--steps", type=int, help="override the config's steps")
    tr.add_argument("--export", metavar="DIR", help="write the distilled model here at the end")
    tr.add_argument("--device", default="cpu")
    tr.set_defaults(func=_run_train)
