import math

import pytest
import torch

from codec.config import CodecConfig
from codec.layers import ISTFTHead


def _zero_phase_head(n_fft: int = 16, hop: int = 4) -> ISTFTHead:
    head = ISTFTHead(dim=8, n_fft=n_fft, hop=hop, causal=True, phase="increment")
    with torch.no_grad():
        half = head.out.out_features // 2
        head.out.weight[half:].zero_()
        head.out.bias[half:].zero_()
    return head


def test_zero_increment_gives_bin_centre_phase_advance():
    n_fft, hop, frames = 16, 4, 9
    head = _zero_phase_head(n_fft, hop)
    offsets = torch.zeros(1, frames, n_fft // 2 + 1)
    phase = head._integrate_phase(offsets, {})
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    t = torch.arange(1, frames + 1, dtype=torch.float64)[:, None]
    expected = torch.remainder(t * 2 * math.pi * k * hop / n_fft, 2 * math.pi)
    diff = torch.remainder(phase[0].double() - expected + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-5


def test_phase_sum_over_chunks_equals_one_pass_over_many_frames():
    head = ISTFTHead(dim=8, n_fft=16, hop=4, causal=True, phase="increment")
    gen = torch.Generator().manual_seed(0)
    offsets = torch.randn(2, 20000, 9, generator=gen) * 3
    whole = head._integrate_phase(offsets, {})
    state: dict = {}
    parts = [head._integrate_phase(offsets[:, i : i + 777], state) for i in range(0, 20000, 777)]
    chunked = torch.cat(parts, dim=1)
    diff = torch.remainder(whole.double() - chunked.double() + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-5
    assert whole.min() >= 0 and whole.max() < 2 * math.pi + 1e-6


def _stream_in_chunks(head: ISTFTHead, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, C, F) features streamed through `head` `chunk` frames at a time -> (B, F * H)."""
    state: dict = {}
    frames = x.shape[-1]
    return torch.cat(
        [head.stream(x[..., i : i + chunk], state) for i in range(0, frames, chunk)], -1
    )


def test_increment_head_streams_like_offline():
    head = ISTFTHead(dim=8, n_fft=16, hop=4, causal=True, phase="increment").eval()
    x = torch.randn(1, 8, 30, generator=torch.Generator().manual_seed(1))
    offline = head(x)
    streamed = _stream_in_chunks(head, x, 7)
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=1e-4)


def test_increment_phase_needs_causal():
    with pytest.raises(ValueError, match="causal"):
        ISTFTHead(dim=8, n_fft=16, hop=4, causal=False, phase="increment")
    data = CodecConfig.named("wavtok-tiny").model_dump()
    data["decoder"]["phase"] = "increment"
    with pytest.raises(ValueError, match="needs a causal model"):
        CodecConfig.model_validate(data)
    data["decoder"]["phase"] = "cumulative"
    with pytest.raises(ValueError):
        CodecConfig.model_validate(data)


def _clicking_head(noise_above_hz: float | None) -> ISTFTHead:
    """A causal head whose own part is the same click in every frame (constant phases), as a
    trained head's noise band tends to be: a buzz at the frame rate."""
    head = ISTFTHead(
        dim=64, n_fft=64, hop=16, causal=True, noise_above_hz=noise_above_hz, sample_rate=1600
    )
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias.zero_()
    return head.eval()


@pytest.mark.parametrize("noise_above_hz, steady", [(0.0, True), (None, False)])
def test_noise_phases_remove_the_frame_rate_buzz(noise_above_hz, steady):
    head = _clicking_head(noise_above_hz)
    x = torch.randn(1, 64, 2000, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        audio = head(x)[:, 16 * 8 :]
    power = audio.pow(2).reshape(-1, 16).mean(dim=0)  # mean power per position in the hop
    swing_db = 10 * torch.log10(power.max() / power.min())
    assert (swing_db < 1.5) if steady else (swing_db > 10.0), float(swing_db)


def test_noise_phases_are_fixed_and_spread():
    head = _clicking_head(0.0)
    a, b = head._noise_phases(5, 300, torch.device("cpu")), head._noise_phases(5, 300, "cpu")
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() < 2 * math.pi
    assert torch.cos(a).mean().abs() < 0.05 and torch.sin(a).mean().abs() < 0.05
    # Consecutive frames' phases are unrelated (no coherent click left).
    assert torch.cos(a[1:] - a[:-1]).mean().abs() < 0.05


def test_noise_phases_above_nyquist_change_nothing():
    from codec.excitation import HarmonicSource

    x = torch.randn(1, 8, 40, generator=torch.Generator().manual_seed(8))
    outs = {}
    for above in (None, 1e6):
        torch.manual_seed(0)
        source = HarmonicSource(dim=8, n_fft=64, hop=16, sample_rate=1600)
        head = ISTFTHead(
            8, 64, 16, True, harmonic_source=source, noise_above_hz=above, sample_rate=1600
        )
        with torch.no_grad():
            outs[above] = head.eval()(x)
    torch.testing.assert_close(outs[None], outs[1e6])


def test_noise_phase_head_streams_like_offline():
    from codec.excitation import HarmonicSource

    source = HarmonicSource(dim=8, n_fft=64, hop=16, sample_rate=1600)
    head = ISTFTHead(
        8, 64, 16, True, harmonic_source=source, noise_above_hz=300.0, sample_rate=1600
    ).eval()
    x = torch.randn(2, 8, 45, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        offline = head(x)
        streamed = _stream_in_chunks(head, x, 7)
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=1e-4)


def test_noise_phases_need_causal():
    with pytest.raises(ValueError, match="causal"):
        ISTFTHead(dim=8, n_fft=16, hop=4, causal=False, noise_above_hz=100.0)
    data = CodecConfig.named("wavtok-tiny").model_dump()
    data["decoder"]["noise_above_hz"] = 4000.0
    with pytest.raises(ValueError, match="noise_above_hz needs a causal model"):
        CodecConfig.model_validate(data)
