"""Request bodies into model inputs: audio to a mono tensor at the model's rate, token ids to
checked codes. Each refusal is an `errors.APIError` whose message a client can act on.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
import soundfile as sf
import torch
from fastapi import Request
from pydantic import ValidationError

from codec.audio import AudioError, read_audio, to_mono
from codec.tokenfile import TokenHeader
from server import errors
from server.registry import ModelRunner
from server.settings import Settings

# 147 covers 44.1 kHz family rates, 588 covers 176.4 kHz; odd rates like 23999 Hz are refused.
MAX_RATE_FACTOR = 1000


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower-cased ("" when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def check_rate(rate: int, target: int) -> None:
    """Refuse (422) an input rate in Hz that cannot be resampled to `target` cheaply."""
    # Resampling cost grows with the reduced ratio: 23999 -> 24000 Hz needs ~10 GB of kernels.
    if not 1000 <= rate <= 384_000 or rate // math.gcd(rate, target) > MAX_RATE_FACTOR:
        raise errors.invalid_audio(
            f"unsupported sample rate {rate} Hz; use a standard rate (8000, 16000, 22050, "
            f"24000, 44100, 48000, ...)"
        )


def prepare_audio(
    data: bytes, runner: ModelRunner, max_seconds: float, limit_name: str = ""
) -> torch.Tensor:
    """An audio file's bytes -> (T,) mono float samples at the model's rate.

    Refuses (422) empty, unreadable or odd-rate audio, and audio over `max_seconds` (from the
    header where it tells the length, before decoding it all).
    """
    if not data:
        raise errors.invalid_audio("request body is empty")
    target = runner.codec.sample_rate

    def too_long(seconds: float) -> errors.APIError:
        return errors.invalid_audio(
            f"audio is {seconds:.1f} s long; the limit{limit_name} is {max_seconds} s"
        )

    try:
        # The header alone tells the length; refuse long audio before decoding all of it.
        info = sf.info(io.BytesIO(data))
    except Exception:  # unreadable: read_audio below gives the user-facing reason
        info = None
    if info is not None and info.samplerate > 0 and info.frames / info.samplerate > max_seconds:
        raise too_long(info.frames / info.samplerate)
    try:
        wav, sr = read_audio(data)
        check_rate(sr, target)
        if wav.shape[-1] / sr > max_seconds:
            raise too_long(wav.shape[-1] / sr)
        return to_mono(wav, sr, target)
    except AudioError as e:
        # libsndfile names the in-memory buffer object; that means nothing to a client.
        message = re.sub(r"<bytes>: |Error opening <[^>]*>: ", "", str(e))
        raise errors.invalid_audio(message) from None


def first_error(e: ValidationError) -> str:
    """The first validation problem as one line, prefixed by where it is ("model: ...")."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err['msg']}" if where else err["msg"]


def checked_codes(
    runner: ModelRunner,
    ids: np.ndarray,
    header: TokenHeader | None,
    codebook_id: str | None,
    settings: Settings,
) -> torch.Tensor:
    """Token ids of any shape -> (F,) int64 codes the runner's model can decode.

    Refuses (422) codes from another model or codebook, ids outside the codebook, and more
    frames than `settings.max_audio_seconds` allows.
    """
    c = runner.codec
    problem = header.mismatch(c, int(ids.size)) if header else None
    if problem is None and codebook_id is not None and codebook_id != c.codebook_id:
        problem = (
            f"codes were encoded with codebook {codebook_id} but model {c.name!r} has codebook "
            f"{c.codebook_id}; decode with the model that encoded them"
        )
    if problem:
        raise errors.invalid_codes(problem)
    codes = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).reshape(-1)
    try:
        c.check_codes(codes)
    except ValueError as e:
        raise errors.invalid_codes(str(e)) from None
    max_frames = int(settings.max_audio_seconds * c.frame_rate)
    if codes.shape[-1] > max_frames:
        raise errors.invalid_codes(
            f"{codes.shape[-1]} frames exceed the limit of {max_frames} "
            f"({settings.max_audio_seconds} s)"
        )
    return codes
