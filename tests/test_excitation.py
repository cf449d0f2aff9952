import math

import pytest
import torch

from codec.excitation import HarmonicSource


def _unit_gain_source(n_fft: int = 64, hop: int = 16, rate: int = 1600) -> HarmonicSource:
    source = HarmonicSource(dim=4, n_fft=n_fft, hop=hop, sample_rate=rate)
    with torch.no_grad():
        source.gain.weight.zero_()
        source.gain.bias.zero_()
    return source


def _pulses(source: HarmonicSource, f0: torch.Tensor, state: dict) -> torch.Tensor:
    """Time-domain pulse train of each frame (B, F, N), with a rectangular window."""
    x = torch.zeros(f0.shape[0], 4, f0.shape[1])
    with torch.no_grad():
        spectrum = source(x, torch.ones(source.n_fft), state, f0)
    return torch.fft.irfft(spectrum, n=source.n_fft, dim=-1)


def test_consecutive_frames_continue_one_pulse_train():
    source = _unit_gain_source()
    f0 = torch.tensor([[130.0, 130.0, 130.0, 130.0]])
    frames = _pulses(source, f0, {})
    hop = source.hop
    for f in range(3):
        torch.testing.assert_close(frames[0, f, hop:], frames[0, f + 1, :-hop], atol=1e-4, rtol=0)
    # Unit power, harmonics below Nyquist only.
    assert abs(float(frames[0, 0].pow(2).mean()) - 1.0) < 0.2


def test_unvoiced_frames_are_silent_and_keep_the_phase():
    source = _unit_gain_source()
    frames = _pulses(source, torch.tensor([[0.0, 0.0]]), {})
    assert float(frames.abs().max()) == 0.0


def test_chunked_state_matches_one_pass():
    source = _unit_gain_source()
    gen = torch.Generator().manual_seed(0)
    f0 = torch.rand(2, 30, generator=gen) * 200 + 80
    f0[:, 10:13] = 0
    whole = _pulses(source, f0, {})
    state: dict = {}
    parts = [_pulses(source, f0[:, i : i + 7], state) for i in range(0, 30, 7)]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-4, rtol=0)


def test_predicted_pitch_stays_in_range():
    source = HarmonicSource(dim=4, n_fft=64, hop=16, sample_rate=1600)
    with torch.no_grad():
        source.pitch.bias.copy_(torch.tensor([100.0, 1.0]))
        log_f0, voicing = source.predict(torch.zeros(1, 4, 3))
    assert torch.allclose(log_f0, torch.full_like(log_f0, math.log(500.0)))
    torch.testing.assert_close(source.f0_from(torch.zeros(1, 4, 3)), torch.full((1, 3), 500.0))
    assert bool((voicing > 0).all())


def test_needs_a_causal_head():
    from codec.layers import ISTFTHead

    with pytest.raises(ValueError, match="causal"):
        ISTFTHead(4, 64, 16, causal=False, harmonic_source=_unit_gain_source())
