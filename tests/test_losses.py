import math

import torch

from codec.losses import MultiResolutionMelLoss, MultiResolutionSTFTLoss


def _harmonic(f0: float, seconds: float = 1.0, rate: int = 24000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return sum(torch.sin(2 * math.pi * h * f0 * t) / h for h in range(1, 30))[None, None]


def test_stft_loss_zero_on_identity_and_finite_on_silence():
    stft = MultiResolutionSTFTLoss()
    x = _harmonic(100.0)
    assert float(stft(x, x)) == 0.0
    assert math.isfinite(float(stft(torch.zeros_like(x), x)))
    assert math.isfinite(float(stft(x, torch.zeros_like(x))))


def test_stft_loss_weighs_a_pitch_error_more_than_the_mel_loss_does():
    mel, stft = MultiResolutionMelLoss(), MultiResolutionSTFTLoss()
    ref, off_pitch = _harmonic(100.0), _harmonic(103.0)
    noise = 0.05 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))
    # Each loss's pitch error relative to its error on noise: linear bins resolve the harmonics.
    mel_ratio = float(mel(off_pitch, ref)) / float(mel(noise, ref))
    stft_ratio = float(stft(off_pitch, ref)) / float(stft(noise, ref))
    assert stft_ratio > 1.3 * mel_ratio


def test_stft_loss_has_gradients():
    stft = MultiResolutionSTFTLoss()
    fake = (0.1 * torch.randn(2, 1, 4800)).requires_grad_()
    stft(fake, torch.randn(2, 1, 4800)).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
