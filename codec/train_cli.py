"""`wavtok train` and `wavtok export`: the command line of training (`codec.train`) and the
export of a run's checkpoint as an inference-only model."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import torch

from codec.checkpoint import list_checkpoints, load_checkpoint
from codec.model import Codec
from codec.train import Trainer
from codec.trainconfig import TrainConfig


def export(run_dir: Path, out: Path, checkpoint: Path | None = None) -> Path:
    """Write the inference model (config + safetensors, no discriminators) of a run's checkpoint."""
    ckpts = [checkpoint] if checkpoint else list_checkpoints(run_dir)
    if not ckpts:
        raise FileNotFoundError(f"{run_dir}: no checkpoints to export")
    state = load_checkpoint(ckpts[-1])
    cfg = TrainConfig.model_validate(state["config"])
    # The exported model is named after its directory, which is how users refer to it.
    codec = Codec.from_config(cfg.codec_config().model_copy(update={"name": out.name}))
    codec.load_state_dict(state["codec"])
    codec.save_pretrained(out)
    summary = {
        "checkpoint": ckpts[-1].name,
        "step": int(state["step"]),
        "audio_hours_seen": round(float(state["audio_seconds_seen"]) / 3600, 2),
        "train_config": state["config"],
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return ckpts[-1]


def with_total_steps(cfg: TrainConfig, steps: int) -> TrainConfig:
    """`cfg` run for `steps` in all; a generator-only recipe (warm-up covering the whole run)
    stays generator-only rather than starting the discriminators at its old length."""
    update = {"steps": steps}
    if cfg.warmup_steps >= cfg.steps:
        update["warmup_steps"] = steps
    return cfg.model_copy(update=update)


def _run_train(args: argparse.Namespace) -> int:
    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    if args.steps:
        cfg = with_total_steps(cfg, args.steps)
    run_dir = Path(args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    trainer = Trainer(cfg, [Path(d) for d in args.data], run_dir, device)
    resumed = not args.no_resume and trainer.resume_if_possible()
    if args.init_from and not resumed:
        trainer.init_from(args.init_from)

    def request_stop(signum, _frame):
        trainer.log(f"signal {signum}: checkpointing at the end of this step")
        trainer.stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    params = sum(p.numel() for p in trainer.codec.parameters())
    trainer.log(
        f"training {cfg.codec_config().name} ({params / 1e6:.2f} M params) on {device}, "
        f"{trainer.data.hours:.2f} h of audio, world size {trainer.world}"
    )
    trainer.fit(args.max_steps)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    used = export(
        Path(args.run_dir), Path(args.out), Path(args.checkpoint) if args.checkpoint else None
    )
    print(f"exported {used} -> {args.out}", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a codec (resumes from RUN_DIR's last checkpoint)"
    )
    p.add_argument("--config", help="training config YAML (see codec/configs/train/)")
    p.add_argument("--data", nargs="+", required=True, help="prepared data folders or manifests")
    p.add_argument("--out", required=True, help="run directory (checkpoints, tensorboard)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument(
        "--steps",
        type=int,
        help="override the config's total steps (a generator-only recipe stays so)",
    )
    p.add_argument("--max-steps", type=int, help="stop after this step in this invocation")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument(
        "--init-from",
        metavar="NAME|DIR",
        help="start a new run from a trained model's weights (ignored when resuming)",
    )
    p.set_defaults(func=_run_train)
    e = subparsers.add_parser("export", help="write the inference model of a training run")
    e.add_argument("run_dir")
    e.add_argument("--out", required=True, help="e.g. models/NAME")
    e.add_argument("--checkpoint", help="a specific checkpoint directory (default: the latest)")
    e.set_defaults(func=_run_export)
