"""Halve a model's weights for the trip back from the device machine, and restore them here.

The `device` tool returns at most 64 MiB, 16 MiB a file: one fp32 model of the default's size
(29 MB) needs two files and three do not fit. `pack` stores each float tensor as fp16 scaled
by its own largest magnitude, which maps to 2^15 (a per-tensor scale, so no value overflows,
and none falls into fp16's subnormal range unless it is 2^29 times smaller than its tensor's
largest); `unpack` writes fp32 again. Lossy (error <= 2^-12 of each tensor's largest value):
evaluate what `unpack` wrote, since that is what ships.

    python scripts/transport_weights.py pack model.safetensors small.safetensors
    python scripts/transport_weights.py unpack small.safetensors model.safetensors
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import load_file, save_file

SCALE_SUFFIX = ".__fp16_scale__"


def pack(src: str, dst: str) -> None:
    out: dict[str, torch.Tensor] = {}
    for name, t in load_file(src).items():
        if t.is_floating_point() and t.numel() > 1 and torch.isfinite(t).all():
            scale = t.abs().max().clamp(min=1e-30) / 32768.0
            out[name] = (t / scale).half()
            out[name + SCALE_SUFFIX] = scale.reshape(1).float()
        else:
            out[name] = t
    save_file(out, dst)


def unpack(src: str, dst: str) -> None:
    packed = load_file(src)
    out = {}
    for name, t in packed.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = packed.get(name + SCALE_SUFFIX)
        out[name] = (t.float() * scale).contiguous() if scale is not None else t
    save_file(out, dst)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit("usage: transport_weights.py pack|unpack SRC DST")
    {"pack": pack, "unpack": unpack}[sys.argv[1]](sys.argv[2], sys.argv[3])
