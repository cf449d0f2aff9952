"""Training checkpoints without pickle: every tensor goes to `state.safetensors`, everything
else (step, optimiser hyper-parameters, configs) to `state.json`, and a checkpoint directory is
published by an atomic rename, so a crash never leaves a half-written one behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_TENSOR = "__tensor__"
_INT_KEYS = "__int_keys__"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        # Optimiser state is keyed by int parameter ids; JSON would turn them into strings.
        int_keys = all(isinstance(k, int) for k in obj) and bool(obj)
        out = {str(k): _flatten(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        if int_keys:
            out[_INT_KEYS] = True
        return out
    if isinstance(obj, list | tuple):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot checkpoint {type(obj).__name__} at {prefix}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        int_keys = obj.pop(_INT_KEYS, False)
        return {(int(k) if int_keys else k): _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write `run_dir/checkpoints/step-XXXXXXXX/` atomically and keep only the newest `keep_last`."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    meta = _flatten(state, "s", tensors)
    save_file(tensors, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = run_dir / "checkpoints"
    return sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())


def load_checkpoint(path: Path) -> dict[str, Any]:
    tensors = load_file(str(path / "state.safetensors"))
    meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    return _unflatten(meta, tensors)
