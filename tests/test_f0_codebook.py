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


@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_decode_equals_offline(tiny_causal_f0: Codec, seed: int):
    model, hop = tiny_causal_f0, tiny_causal_f0.hop_length
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
