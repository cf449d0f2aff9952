import math

import pytest
import torch

from codec.losses import (
    BandEnvelopeLoss,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    PesqProxyLoss,
    StoiProxyLoss,
)


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


def test_band_limited_stft_loss_ignores_what_lies_above_its_limit():
    ref = _harmonic(100.0)
    t = torch.arange(ref.shape[-1]) / 24000
    high_tone = 0.3 * torch.sin(2 * math.pi * 5000.0 * t)[None, None]
    low_tone = 0.3 * torch.sin(2 * math.pi * 700.0 * t)[None, None]
    limited, full = MultiResolutionSTFTLoss(max_hz=1500.0), MultiResolutionSTFTLoss()
    # Only the window's far sidelobes of the 5 kHz tone reach the kept bins.
    assert float(limited(ref + high_tone, ref)) < 0.05 * float(full(ref + high_tone, ref))
    assert float(limited(ref + low_tone, ref)) > 0.1


def test_stft_loss_has_gradients():
    stft = MultiResolutionSTFTLoss()
    fake = (0.1 * torch.randn(2, 1, 4800)).requires_grad_()
    stft(fake, torch.randn(2, 1, 4800)).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0


def test_compressed_mel_loss_weighs_loud_sound_above_quiet_where_log_mel_does_not():
    log_mel, compressed = MultiResolutionMelLoss(), MultiResolutionMelLoss(compression=0.3)
    loud = _harmonic(150.0)
    quiet = 0.01 * loud
    assert float(compressed(loud, loud)) == 0.0
    # The same 10% gain error: log-mel scores it the same at any level (above its floor).
    log_ratio = float(log_mel(1.1 * loud, loud)) / float(log_mel(1.1 * quiet, quiet))
    compressed_ratio = float(compressed(1.1 * loud, loud)) / float(compressed(1.1 * quiet, quiet))
    assert log_ratio == pytest.approx(1.0, abs=0.05)
    assert compressed_ratio > 10.0


def test_compressed_mel_loss_has_finite_gradients_on_digital_silence():
    compressed = MultiResolutionMelLoss(compression=0.3)
    fake = torch.zeros(2, 1, 4800, requires_grad=True)
    compressed(fake, 0.1 * torch.randn(2, 1, 4800)).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()


def _modulated_noise(seed: int, rate_hz: float | None, seconds: float = 2.0) -> torch.Tensor:
    """Noise whose level rises and falls at `rate_hz` (None: steady), like syllables."""
    n = int(seconds * 24000)
    noise = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    if rate_hz is None:
        return 0.1 * noise[None]
    t = torch.arange(n) / 24000
    return 0.1 * noise[None] * (1.05 + torch.sin(2 * math.pi * rate_hz * t))


def test_envelope_loss_is_zero_on_identity_and_ignores_overall_gain():
    envelope = BandEnvelopeLoss()
    x = _modulated_noise(0, 4.0)
    assert float(envelope(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(envelope(0.3 * x, x)) == pytest.approx(0.0, abs=1e-5)


def test_envelope_loss_rewards_following_the_reference_envelope():
    envelope = BandEnvelopeLoss()
    ref = _modulated_noise(0, 4.0)
    same_rhythm = float(envelope(_modulated_noise(1, 4.0), ref))
    steady = float(envelope(_modulated_noise(1, None), ref))
    assert same_rhythm < 0.35 and steady > 0.7


def test_envelope_loss_has_gradients_and_survives_silence():
    envelope = BandEnvelopeLoss()
    fake = (0.1 * torch.randn(2, 1, 24000)).requires_grad_()
    envelope(fake, _modulated_noise(0, 4.0, 1.0).expand(2, -1)).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    assert math.isfinite(float(envelope(fake.detach(), torch.zeros(2, 1, 24000))))


def test_envelope_loss_rejects_segments_shorter_than_a_window():
    with pytest.raises(ValueError, match="envelope window"):
        BandEnvelopeLoss()(torch.randn(1, 4800), torch.randn(1, 4800))


def test_pesq_proxy_loss_grows_with_the_disturbance_and_has_gradients():
    pesq = PesqProxyLoss()
    ref = _modulated_noise(0, 4.0, 1.0)[:, None] + 0.3 * _harmonic(120.0)
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    scores = [float(pesq(ref + level * noise, ref)) for level in (0.0, 0.01, 0.1)]
    assert scores[0] < 0.05 < scores[1] < scores[2]
    fake = (ref + 0.05 * noise).expand(2, -1, -1).clone().requires_grad_()
    pesq(fake, ref.expand(2, -1, -1)).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="PESQ window"):
        pesq(torch.randn(1, 4800), torch.randn(1, 4800))


def test_pesq_proxy_loss_leaves_silent_items_out():
    pesq = PesqProxyLoss()
    ref = (_modulated_noise(0, 4.0, 1.0)[:, None] + 0.3 * _harmonic(120.0)).expand(2, -1, -1)
    ref = ref.clone()
    ref[1] = 0.0  # an all-silent crop: torch-pesq alone returns NaN for it
    fake = (ref + 0.05).clone().requires_grad_()
    loss = pesq(fake, ref)
    loss.backward()
    assert math.isfinite(float(loss)) and float(loss) > 0
    assert torch.isfinite(fake.grad).all() and fake.grad[1].abs().sum() == 0
    silent = torch.zeros(1, 1, 24000, requires_grad=True)
    assert float(pesq(silent, torch.zeros(1, 1, 24000))) == 0.0


def test_stoi_proxy_loss_follows_pystoi_and_has_gradients():
    from pystoi import stoi as pystoi

    loss = StoiProxyLoss()
    ref = _modulated_noise(0, 4.0, 1.5)[:, None] + 0.3 * _harmonic(120.0, 1.5)
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    for level in (0.02, 0.3):
        fake = ref + level * noise
        expected = 1 - pystoi(ref.flatten().numpy(), fake.flatten().numpy(), 24000)
        assert float(loss(fake, ref)) == pytest.approx(expected, abs=0.03)
    assert float(loss(ref + 0.02 * noise, ref)) < float(loss(ref + 0.3 * noise, ref))
    fake = torch.cat([ref + 0.1 * noise, torch.zeros_like(ref) + 0.1 * noise]).requires_grad_()
    value = loss(fake, torch.cat([ref, torch.zeros_like(ref)]))  # the silent item counts for 0
    value.backward()
    assert math.isfinite(float(value)) and torch.isfinite(fake.grad).all()
    assert fake.grad[1].abs().sum() == 0 and fake.grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match="STOI window"):
        loss(torch.randn(1, 4800), torch.randn(1, 4800))
