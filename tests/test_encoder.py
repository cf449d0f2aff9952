import math

import pytest
import torch
from conftest import ENCODER_BRANCHES, speechlike

from codec import Codec
from codec.config import CodecConfig
from codec.encoder import Encoder, SpectralBranch


def test_spectral_analysis_resolves_a_harmonic():
    """A 375 Hz tone lands in bin 20 (18.75 Hz bins at hop 320) with unit gain per amplitude."""
    branch = SpectralBranch(bins=40, dimension=8, hop=320, causal=True)
    # The analysis is fixed: neither trained nor stored with the weights.
    assert not list(branch.analysis.parameters())
    assert not any(key.startswith("analysis.") for key in branch.state_dict())
    t = torch.arange(24000) / 24000
    tone = 0.25 * torch.sin(2 * math.pi * 375.0 * t)
    with torch.no_grad():
        frames = branch.analysis(tone[None, None])
        magnitude = branch._log_magnitudes(frames).exp()[0, :, 2:]  # skip the window's start-up
    assert (magnitude.argmax(dim=0) == 19).all()  # bins start at 1 x 18.75 Hz
    assert torch.allclose(magnitude[19], torch.full_like(magnitude[19], 0.25), rtol=0.05)
    # Two harmonics 100 Hz apart stay apart: the bin between them is far weaker.
    pair = tone + 0.25 * torch.sin(2 * math.pi * 475.0 * t)
    with torch.no_grad():
        mags = branch._log_magnitudes(branch.analysis(pair[None, None])).exp()[0, :, 2:]
    assert (mags[22] < 0.3 * mags[19]).all()


@pytest.mark.parametrize("branch", ["spectral", "pitch"])
@pytest.mark.parametrize("causal", [True, False])
def test_encoder_branch_starts_as_a_no_op(branch: str, causal: bool):
    """A new branch adds exactly zero, so growing a trained encoder with it changes nothing."""
    name = "wavtok-tiny-causal" if causal else "wavtok-tiny"
    field, value = ENCODER_BRANCHES[branch]
    plain_cfg = CodecConfig.named(name)
    grown_cfg = plain_cfg.model_copy(
        update={"encoder": plain_cfg.encoder.model_copy(update={field: value})}
    )
    plain = Encoder(plain_cfg.encoder, causal)
    grown = Encoder(grown_cfg.encoder, causal)
    missing = grown.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith(f"{branch}.") for key in missing)
    wav = speechlike(320 * 20)[None, None]
    with torch.no_grad():
        assert torch.equal(grown(wav), plain(wav))
        getattr(grown, branch).project.weight.fill_(0.1)
        assert not torch.allclose(grown(wav), plain(wav))


@pytest.mark.parametrize("name", ["tiny_causal_spectral", "tiny_causal_pitch"])
def test_causal_branch_ignores_the_future(request: pytest.FixtureRequest, name: str):
    """Frame i of a causal encoder depends on samples before (i + 1) * hop only."""
    model: Codec = request.getfixturevalue(name)
    hop = model.hop_length
    wav = speechlike(hop * 12)[None, None]
    later = wav.clone()
    later[..., hop * 8 :] = 0.3
    with torch.no_grad():
        a = model.encoder(wav)
        b = model.encoder(later)
    assert torch.equal(a[..., :8], b[..., :8])
    assert not torch.allclose(a[..., 8:], b[..., 8:])


@pytest.mark.parametrize("bins", [-1, 2 * 320 + 1])
def test_spectral_bins_out_of_range_rejected(bins: int):
    data = CodecConfig.named("wavtok-tiny-causal").model_dump()
    data["encoder"]["spectral_bins"] = bins
    with pytest.raises(ValueError, match="spectral_bins"):
        CodecConfig.model_validate(data)
