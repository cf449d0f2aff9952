import math

import pytest
import torch

from codec.pitch import PitchBranch, estimate_f0


def _harmonic(f0: float, seconds: float = 0.5, rate: int = 24000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return sum(torch.sin(2 * math.pi * h * f0 * t) / h for h in range(1, 20))


@pytest.mark.parametrize("f0", [80.0, 137.0, 220.0, 350.0])
def test_f0_of_a_harmonic_tone(f0: float):
    est, voiced = estimate_f0(_harmonic(f0)[None], 24000, 320)
    assert est.shape == voiced.shape == (1, 38)  # ceil(12000 / 320)
    inner = est[0, 3:-3]  # the edges see zero padding
    assert bool(voiced[0, 3:-3].all())
    # Within 1%: no octave errors and sub-sample lag interpolation.
    assert (inner / f0 - 1).abs().max() < 0.01


def test_noise_and_silence_are_unvoiced():
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 12000, generator=gen)
    assert estimate_f0(noise, 24000, 320)[1].float().mean() < 0.1
    tone_then_silence = torch.cat([_harmonic(150.0), torch.zeros(12000)])[None]
    f0, voiced = estimate_f0(tone_then_silence, 24000, 320)
    assert bool(voiced[0, 5:30].all()) and not bool(voiced[0, 45:].any())
    assert bool((f0[~voiced] == 0).all())


def test_batch_items_are_independent():
    a, b = _harmonic(110.0), _harmonic(260.0)
    both, _ = estimate_f0(torch.stack([a, b]), 24000, 320)
    alone, _ = estimate_f0(b[None], 24000, 320)
    torch.testing.assert_close(both[1], alone[0])


def test_pitch_branch_reads_a_tone_precisely():
    """The branch's log F0 feature of a steady 180 Hz tone is within 0.5% of it once the
    window is full, and its periodicity is near 1."""
    branch = PitchBranch(dimension=8, hop=320, sample_rate=24000, causal=True)
    t = torch.arange(24000) / 24000
    tone = 0.3 * torch.sin(2 * math.pi * 180.0 * t)
    with torch.no_grad():
        padded = torch.nn.functional.pad(tone[None], (branch.window - branch.hop, 0))
        feats = branch._features(padded.unfold(-1, branch.window, branch.hop))[0, :, 4:]
    log_f0 = feats[0] * branch.log_half + branch.log_mid
    assert torch.allclose(log_f0.exp(), torch.full_like(log_f0, 180.0), rtol=0.005)
    assert (feats[1] > 0.9).all()
    # The soft semitone bins peak at the tone's bin (180 Hz is 19 semitones above 60).
    assert (feats[3:].argmax(0) == 19).all()


def test_median_f0_of_a_voice_and_of_noise():
    from codec.pitch import median_f0

    assert median_f0(_harmonic(210.0, seconds=1.0), 24000) == pytest.approx(210.0, rel=0.01)
    # The same tone at 16 kHz: the frame rate follows the sample rate.
    t = torch.arange(16000) / 16000
    tone16 = sum(torch.sin(2 * math.pi * h * 120.0 * t) / h for h in range(1, 20))
    assert median_f0(tone16, 16000) == pytest.approx(120.0, rel=0.01)
    noise = torch.randn(24000, generator=torch.Generator().manual_seed(0))
    assert median_f0(noise, 24000) is None
    assert median_f0(torch.zeros(24000), 24000) is None
