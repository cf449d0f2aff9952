"""Codes that carry F0 (`quantizer.f0_scale`): the F0 channel, where the decoder reads it, and
streaming equal to offline decoding."""

import math

import pytest
import torch
from conftest import assert_same_audio, f0_codebook_config, speechlike
from test_streaming import chunk_sizes

from codec import Codec
from codec.config import CodecConfig
from codec.pitch import F0Channel, PitchStreamState


def _tone(f0: float, seconds: float = 0.5, rate: int = 24000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return (0.2 * sum(torch.sin(2 * math.pi * h * f0 * t) / h for h in range(1, 6)))[None, None]


@pytest.mark.parametrize("f0", [90.0, 200.0, 330.0])
def test_f0_channel_finds_a_tone_and_calls_silence_unvoiced(f0: float):
    channel = F0Channel(scale=100.0, hop=320, sample_rate=24000)
    wav = torch.cat([_tone(f0), torch.zeros(1, 1, 9600)], -1)
    hz = channel.to_hz(channel(wav))[0]
    # Frames whose window lies wholly in the tone, then wholly in the silence.
    tone_frames, silent_frames = hz[4:37], hz[-20:]
    assert (tone_frames - f0).abs().max() < 0.01 * f0
    assert (silent_frames == 0).all()
    assert (channel(wav)[0, -20:] < channel.voiced_above).all()


def test_f0_channel_streams_as_offline():
    channel = F0Channel(scale=100.0, hop=320, sample_rate=24000)
    wav = speechlike(320 * 30)[None, None]
    state, out, pos = PitchStreamState(), [], 0
    for n in chunk_sizes(wav.shape[-1], 900, seed=0, singles=330):
        out.append(channel.stream(wav[..., pos : pos + n], state))
        pos += n
    assert torch.equal(torch.cat(out, -1), channel(wav))


def test_each_frame_plays_the_next_tokens_f0(tiny_causal_f0: Codec):
    model = tiny_causal_f0
    wav = speechlike(model.hop_length * 20)
    codes, _ = model.encode(wav)
    latents = model.quantizer.decode(codes)
    assert latents.shape[1] == model.config.encoder.dimension + 1
    channel = latents[:, -1]
    assert (channel > model.f0_channel.voiced_above).any()  # the test signal is voiced
    unvoiced = torch.full_like(channel[:, :1], model.f0_channel.unvoiced)
    expected = model.f0_channel.to_hz(torch.cat([channel[:, 1:], unvoiced], -1))
    with torch.inference_mode():
        assert torch.equal(model.decoder(latents), model.decoder(latents, f0=expected))
        assert not torch.equal(
            model.decoder(latents), model.decoder(latents, f0=model.f0_channel.to_hz(channel))
        )


def test_smoothing_averages_the_neighbours_of_token_f_plus_1():
    channel = F0Channel(scale=100.0, hop=320, sample_rate=24000)
    log = [0.0, 0.02, 0.04, 0.9, 0.06, None, 0.1, 0.1]  # log(F0 / 150 Hz); None: unvoiced
    tokens = torch.tensor([[channel.unvoiced if v is None else 100 * v for v in log]])
    hz = channel.frame_hz(tokens, 6, smoothed=True)[0]
    expected = [
        (0.0 + 0.02 + 0.04) / 3,  # frame 0: tokens 0..2
        (0.02 + 0.04) / 2,  # token 3 is an octave-sized jump: left out
        0.9,  # token 3 itself has no neighbour within reach
        0.06,  # token 3 too far off, token 5 unvoiced
        None,  # token 5 unvoiced
        0.1,
    ]
    for got, want in zip(hz.tolist(), expected, strict=True):
        if want is None:
            assert got == 0
        else:
            assert got == pytest.approx(150 * math.exp(want), rel=1e-5)
    plain = channel.frame_hz(tokens, 6, smoothed=False)
    assert torch.equal(plain, channel.to_hz(tokens[:, 1:7]))


def test_smoothed_code_f0_plays_at_the_decoders_own_voicing(tiny_causal_f0_smoothed: Codec):
    model = tiny_causal_f0_smoothed
    wav = speechlike(model.hop_length * 20)
    latents = model.quantizer.decode(model.encode(wav)[0])
    decoder, channel = model.decoder, latents[:, -1]
    tokens = torch.nn.functional.pad(channel, (0, 2), value=model.f0_channel.unvoiced)
    code_hz = model.f0_channel.frame_hz(tokens, channel.shape[-1], smoothed=True)
    with torch.inference_mode():
        audio, (log_f0, voicing) = decoder(latents, with_pitch=True)
        voiced = voicing > 0
        assert voiced.any() and (~voiced).any() and (code_hz > 0).any()
        expected = torch.where(voiced, torch.where(code_hz > 0, code_hz, log_f0.exp()), 0.0)
        assert torch.equal(audio, decoder(latents, f0=expected))
        assert not torch.equal(audio, decoder(latents, f0=code_hz))


@pytest.mark.parametrize("fixture", ["tiny_causal_f0", "tiny_causal_f0_smoothed"])
@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_decode_equals_offline(request, fixture: str, seed: int):
    model: Codec = request.getfixturevalue(fixture)
    hop = model.hop_length
    codes, _ = model.encode(speechlike(hop * 41, seed=seed))
    offline, _ = model.decode(codes)
    dec = model.streaming_decoder()
    out, pos = [], 0
    for n in chunk_sizes(codes.shape[-1], 7, seed, singles=3):
        out.append(dec.push(codes[:, pos : pos + n]))
        pos += n
        assert sum(p.shape[-1] for p in out) == max(0, pos - 2) * hop
    out.append(dec.flush())
    assert_same_audio(torch.cat(out, dim=-1), offline[:, 0], model)


def test_codes_that_carry_f0_need_the_input_f0(tiny_causal_f0: Codec):
    latents = torch.randn(1, tiny_causal_f0.config.encoder.dimension, 5)
    with pytest.raises(ValueError, match="F0 channel"):
        tiny_causal_f0.quantizer.encode(latents)


@pytest.mark.parametrize(
    "change", [{"decoder": {"lookahead": 0}}, {"decoder": {"excitation": "none"}}]
)
def test_f0_codes_need_a_harmonic_decoder_with_lookahead(change: dict):
    data = f0_codebook_config().model_dump()
    for part, values in change.items():
        data[part].update(values)
    with pytest.raises(ValueError, match="f0_scale"):
        CodecConfig.model_validate(data)


@pytest.mark.parametrize(
    "change", [{"decoder": {"lookahead": 1}}, {"quantizer": {"f0_scale": 0.0}}]
)
def test_smoothed_code_f0_needs_f0_codes_and_two_tokens_ahead(change: dict):
    data = f0_codebook_config(code_f0="smoothed").model_dump()
    for part, values in change.items():
        data[part].update(values)
    with pytest.raises(ValueError, match="code_f0"):
        CodecConfig.model_validate(data)
