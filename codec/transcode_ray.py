"""`wavtok transcode ... --ray [ADDRESS]`: the same job as a Ray Data pipeline.

    from_items(input paths, length-bucketed order)
      -> map(load_row)                  read, checksum, decode + resample: CPU tasks
      -> map_batches(ModelActor, ...)   model compute -> output bytes: an actor pool,
                                        one GPU per actor with --device cuda
      -> iter_batches on the driver     atomic writes + manifest (`Sink`), as locally

Inputs must be readable at the same paths on every node (a shared filesystem). The model's
weights travel through the object store, so workers need the package but not the model files.
Only the driver writes, so OUT_DIR need only exist there.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from codec.search import SearchSettings
from codec.transcode_core import Item, Loaded, ModelInfo, Processor, Result, Sink, load_item


def _load_row(row: dict[str, Any], mode: str, info: dict[str, Any]) -> dict[str, Any]:
    """Ray task: one input path -> its samples (float32 bytes) or codes (int64 bytes)."""
    x = load_item(Item(int(row["index"]), "", str(row["src"]), ""), mode, ModelInfo(**info))
    return {
        "index": x.item.index,
        "input_sha256": x.input_sha256,
        "data": b"" if x.data is None else np.ascontiguousarray(x.data).tobytes(),
        "num_samples": x.num_samples,
        "error": x.error or "",
        "permanent": x.permanent,
        "source_model": x.source_model,
    }


class ModelActor:
    """Ray actor: builds the codec once from config + weights, then processes batches."""

    def __init__(
        self,
        blob: Any,
        mode: str,
        device: str,
        threads: int,
        decode_dtype: str = "float32",
        search: SearchSettings | None = None,
    ) -> None:
        import ray
        import safetensors.torch
        import torch

        from codec.config import CodecConfig
        from codec.model import Codec

        if isinstance(blob, ray.ObjectRef):
            blob = ray.get(blob)
        torch.set_num_threads(threads)
        codec = Codec(CodecConfig.model_validate(blob["config"]))
        codec.load_state_dict(safetensors.torch.load(blob["weights"]), strict=True)
        self.process = Processor(codec.to(device).eval(), mode, decode_dtype, search)
        self.dtype = np.int64 if mode == "decode" else np.float32

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = []
        for i, index in enumerate(batch["index"]):
            error = str(batch["error"][i]) or None
            # Copy: Ray hands out read-only buffers, which torch.from_numpy warns about.
            data = None if error else np.frombuffer(batch["data"][i], dtype=self.dtype).copy()
            loaded.append(
                Loaded(
                    Item(int(index), "", "", ""),
                    str(batch["input_sha256"][i]),
                    data,
                    int(batch["num_samples"][i]),
                    error,
                    bool(batch["permanent"][i]),
                    str(batch["source_model"][i]),
                )
            )
        results = self.process(loaded)

        def column(values: list, dtype: Any = object) -> np.ndarray:
            out = np.empty(len(values), dtype=dtype)
            out[:] = values
            return out

        return {
            "index": column([r.item.index for r in results], np.int64),
            "input_sha256": column([r.input_sha256 for r in results]),
            "payload": column([r.payload for r in results]),
            "num_samples": column([r.num_samples for r in results], np.int64),
            "num_frames": column([r.num_frames for r in results], np.int64),
            "error": column([r.error or "" for r in results]),
            "permanent": column([r.permanent for r in results], bool),
            "source_model": column([r.source_model for r in results]),
        }


def _results(batch: dict[str, np.ndarray], items: dict[int, Item]) -> list[Result]:
    return [
        Result(
            items[int(index)],
            str(batch["input_sha256"][i]),
            bytes(batch["payload"][i]),
            int(batch["num_samples"][i]),
            int(batch["num_frames"][i]),
            str(batch["error"][i]) or None,
            bool(batch["permanent"][i]),
            str(batch["source_model"][i]),
        )
        for i, index in enumerate(batch["index"])
    ]


def run_ray(
    batches: list[list[Item]],
    mode: str,
    model_dir: Path,
    info: ModelInfo,
    args: argparse.Namespace,
    sink: Sink,
    search: SearchSettings | None = None,
) -> None:
    """Run `batches` (their concatenation keeps the length bucketing) on Ray; uses the Ray
    instance already initialised in this process, else `ray.init(address=args.ray)` (a new
    local instance for "local"), which it then shuts down."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install 'ray[data]'") from None
    import torch

    from codec.config import CodecConfig
    from codec.model import CONFIG_FILE, WEIGHTS_FILE

    items = {it.index: it for batch in batches for it in batch}
    if not items:
        return
    own = not ray.is_initialized()
    if own:
        address = None if args.ray == "local" else args.ray
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    try:
        cuda = torch.device(args.device).type == "cuda"
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if cuda and gpus == 0:
            raise ValueError(f"--device {args.device}: the Ray cluster has no GPUs")
        actors = args.actors or (gpus if cuda else 1)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours is on stderr already
        blob = ray.put(
            {
                "config": CodecConfig.from_yaml(model_dir / CONFIG_FILE).model_dump(),
                "weights": (model_dir / WEIGHTS_FILE).read_bytes(),
            }
        )
        rows = [{"index": it.index, "src": it.src} for batch in batches for it in batch]
        blocks = max(1, math.ceil(len(rows) / args.batch_size))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        # Loading is mostly file reads and libsndfile, so two tasks share a core. The differing
        # CPU request also keeps Ray from fusing it into the model actors (it fuses maps that
        # ask for the same resources), which would serialise loading with the model.
        ds = ds.map(_load_row, fn_kwargs={"mode": mode, "info": asdict(info)}, num_cpus=0.5)
        ds = ds.map_batches(
            ModelActor,
            fn_constructor_kwargs={
                "blob": blob,
                "mode": mode,
                "device": args.device,
                "threads": 1,
                "decode_dtype": args.decode_dtype,
                "search": search,
            },
            batch_size=args.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=1 if cuda else 0,
            num_cpus=0 if cuda else 1,
        )
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            sink.write(_results(out, items))
    finally:
        if own:
            ray.shutdown()
