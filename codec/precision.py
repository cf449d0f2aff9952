"""Reduced-precision decoding, shared by the service and batch transcoding.

Only decoding ever runs in reduced precision: encoding stays float32 so that the tokens never
depend on how a server or a job was started (a bf16 encoder changes ~5% of the default model's
codes). On a CPU only bfloat16 is offered, where oneDNN has bf16 kernels (AVX-512 or AMX);
on this machine's AVX512-BF16 CPU it doubles decoding speed (`benchmarks/speed.py
--decode-dtype bfloat16`) at the same PESQ-wb and STOI (`benchmarks/bf16_decode.py`).
torch is imported only inside the functions: the CLI builds its parsers from `DTYPE_NAMES`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

DecodeDtype = Literal["float32", "bfloat16", "float16"]
DTYPE_NAMES: tuple[str, ...] = get_args(DecodeDtype)

log = logging.getLogger("wavtok")


def decode_dtype(name: str, device: torch.device | str) -> torch.dtype | None:
    """The reduced precision to decode in on `device`, or None for float32 (with a warning when
    `name` asked for one the device cannot run)."""
    import torch

    if name not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPE_NAMES)}")
    dtype, device = getattr(torch, name), torch.device(device)
    if dtype == torch.float32:
        return None
    if device.type == "cuda":
        return dtype
    if (
        dtype == torch.bfloat16
        and device.type == "cpu"
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    ):
        return dtype
    log.warning("dtype %s ignored on %s: float32 is used", name, device)
    return None


def decode_autocast(dtype: torch.dtype | None, device: torch.device | str):
    """The context decoding runs under: an autocast to `dtype`, or nothing for None."""
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
