"""Reduced-precision decoding, shared by the service and batch transcoding.

Only decoding ever runs in reduced precision: encoding stays float32 so that the tokens never
depend on how a server or a job was started (a bf16 encoder changes ~5% of the default model's
codes). On a CPU only bfloat16 is offered, where oneDNN has bf16 kernels (AVX-512 or AMX);
on an AVX512-BF16 CPU it doubles decoding speed (`benchmarks/speed.py
--decode-dtype bfloat16`) at the same PESQ-wb and STOI (`benchmarks/bf16_decode.py`).

Reduced precision is checked before it is used: some CPUs' oneDNN bf16 convolutions give wrong
results for some layer shapes (an AMX CPU with torch 2.14.1: any Conv1d with 8 input channels
and a kernel of 8 or 16, such as SEANet's first downsampling layer, is ~100% off). So a model
decodes a fixed token sequence both ways first (`checked_decode_dtype`), and the trainer runs
the same check on its model (`training_autocast_error`); a mismatch falls back to float32 with
a warning.
torch is imported only inside the functions: the CLI builds its parsers from `DTYPE_NAMES`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

DecodeDtype = Literal["float32", "bfloat16", "float16"]
DTYPE_NAMES: tuple[str, ...] = get_args(DecodeDtype)
# Relative error of STFT magnitudes beyond which reduced precision counts as wrong. Rounding
# gives ~0.01-0.05 on trained models; a broken kernel ~1.
MAX_SPECTRAL_ERROR = 0.25
CHECK_FRAMES = 75  # tokens decoded by `checked_decode_dtype` (1 s at 75 Hz)

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


def spectral_error(test: torch.Tensor, reference: torch.Tensor) -> float:
    """(..., T) waveforms -> the relative L2 error of `test`'s STFT magnitudes (1,024-point
    Hann, hop 256) against `reference`'s: 0 when equal, ~1 when unrelated."""
    import torch

    def magnitudes(wav: torch.Tensor) -> torch.Tensor:
        wav = wav.detach().float().reshape(-1, wav.shape[-1])
        window = torch.hann_window(1024, device=wav.device)
        return torch.stft(wav, 1024, 256, window=window, return_complex=True).abs()

    ref = magnitudes(reference)
    return float((magnitudes(test) - ref).norm() / ref.norm().clamp(min=1e-8))


def autocast_error(
    run: Callable[[], torch.Tensor], dtype: torch.dtype, device: torch.device | str
) -> float:
    """`run()` -> a waveform (..., T); its `spectral_error` when run under an autocast to `dtype`
    against a float32 run. `run` must be deterministic (a model in eval mode)."""
    import torch

    with torch.no_grad():
        reference = run()
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
            test = run()
    return spectral_error(test, reference)


def training_autocast_error(codec, dtype: torch.dtype) -> float:
    """`autocast_error` of a codec's training pass (`codec(wav).audio`, run in eval mode, then
    train mode restored) on a fixed 1 s test signal: a 150 Hz tone plus seeded noise."""
    import math

    import torch

    rate, device, training = codec.sample_rate, codec.device, codec.training
    t = torch.arange(rate) / rate
    noise = torch.randn(rate, generator=torch.Generator().manual_seed(0))
    wav = (0.3 * torch.sin(2 * math.pi * 150.0 * t) + 0.05 * noise)[None, None].to(device)
    codec.eval()
    try:
        return autocast_error(lambda: codec(wav).audio, dtype, device)
    finally:
        codec.train(training)


def checked_decode_dtype(name: str, codec) -> torch.dtype | None:
    """`decode_dtype(name, codec.device)`, kept only if `codec` decodes a fixed pseudo-random
    token sequence (1 s) in it like in float32 (`MAX_SPECTRAL_ERROR`); otherwise None, with a
    warning."""
    import torch

    dtype = decode_dtype(name, codec.device)
    if dtype is None:
        return None
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, codec.codebook_size, (1, CHECK_FRAMES), generator=generator)
    error = autocast_error(lambda: codec.decode(codes.to(codec.device))[0], dtype, codec.device)
    if error > MAX_SPECTRAL_ERROR:
        log.warning(
            "dtype %s ignored: %s decodes wrongly in it on %s (spectral error %.2f against "
            "float32; a faulty reduced-precision kernel): float32 is used",
            name, codec.name, codec.device, error,
        )  # fmt: skip
        return None
    return dtype
