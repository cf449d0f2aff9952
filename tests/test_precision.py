import logging
import math

import pytest
import torch

from codec import precision
from codec.precision import autocast_error, checked_decode_dtype, spectral_error


def _tone(seconds: float = 1.0, rate: int = 24000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return (0.3 * torch.sin(2 * math.pi * 220.0 * t))[None, None]


def test_spectral_error_is_zero_on_identity_and_about_one_on_unrelated_audio():
    tone = _tone()
    noise = 0.3 * torch.randn(tone.shape, generator=torch.Generator().manual_seed(0))
    assert spectral_error(tone, tone) == 0.0
    assert spectral_error(1.01 * tone, tone) == pytest.approx(0.01, abs=1e-3)
    assert spectral_error(noise, tone) > 0.9


class _Decoder:
    """A stand-in codec whose decode may go wrong under an autocast, as a faulty bf16 kernel
    does: the check must be about the output, not about what the device claims to support."""

    name, device, codebook_size, sample_rate = "stand-in", torch.device("cpu"), 16, 24000

    def __init__(self, wrong_under_autocast: bool) -> None:
        self.wrong = wrong_under_autocast

    def decode(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = codes.shape[-1]
        wav = _tone(frames / 75)[..., : frames * 320] * (1 + codes.float().mean() / 100)
        if self.wrong and torch.is_autocast_enabled("cpu"):
            wav = torch.randn(wav.shape, generator=torch.Generator().manual_seed(1))
        return wav, torch.tensor([wav.shape[-1]])


@pytest.fixture
def bf16_claimed(monkeypatch):
    """The device claims bf16 support, whatever this CPU has."""
    monkeypatch.setattr(precision, "decode_dtype", lambda name, device: torch.bfloat16)


def test_a_model_that_decodes_wrongly_in_bf16_decodes_in_float32_with_a_warning(
    bf16_claimed, caplog
):
    with caplog.at_level(logging.WARNING, logger="wavtok"):
        assert checked_decode_dtype("bfloat16", _Decoder(wrong_under_autocast=True)) is None
    assert "decodes wrongly" in caplog.text and "float32 is used" in caplog.text


def test_a_model_that_decodes_right_in_bf16_keeps_it(bf16_claimed, caplog):
    with caplog.at_level(logging.WARNING, logger="wavtok"):
        assert checked_decode_dtype("bfloat16", _Decoder(wrong_under_autocast=False)) is (
            torch.bfloat16
        )
    assert caplog.text == ""


def test_float32_needs_no_check():
    assert checked_decode_dtype("float32", _Decoder(wrong_under_autocast=True)) is None


def test_autocast_error_runs_the_function_both_ways():
    seen: list[bool] = []

    def run() -> torch.Tensor:
        seen.append(torch.is_autocast_enabled("cpu"))
        return _tone()

    assert autocast_error(run, torch.bfloat16, "cpu") == 0.0
    assert seen == [False, True]
