import dataclasses

import pytest
import torch
from conftest import assert_same_audio, encoder_lookahead_codec, lookahead_codec, speechlike

from codec import Codec
from codec.config import CodecConfig


def chunk_sizes(total: int, high: int, seed: int, singles: int = 0) -> list[int]:
    """Random chunk sizes in [1, high] summing to `total`, starting with `singles` ones."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [1] * min(singles, total)
    left = total - sum(sizes)
    while left > 0:
        n = min(left, int(torch.randint(1, high + 1, (1,), generator=gen)))
        sizes.append(n)
        left -= n
    return sizes


def state_numel(obj) -> int:
    """Total elements of every tensor reachable from a state object."""
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if dataclasses.is_dataclass(obj):
        return sum(state_numel(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return sum(state_numel(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(state_numel(v) for v in obj)
    return 0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "name",
    [
        "tiny_causal",
        "tiny_causal_spectral",
        "tiny_causal_pitch",
        "tiny_causal_f0",
        "tiny_causal_f0_smoothed",
    ],
)
def test_streamed_encode_equals_offline(request: pytest.FixtureRequest, name: str, seed: int):
    model: Codec = request.getfixturevalue(name)
    hop = model.hop_length
    wav = speechlike(40 * hop + 123, seed=seed)
    offline, _ = model.encode(wav)
    assert offline.unique().numel() > 5  # diverse codes, so equality means something
    enc = model.streaming_encoder()
    # Some single samples, then chunks both below and well above the hop.
    sizes = chunk_sizes(wav.numel(), 3 * hop, seed, singles=hop + 5)
    assert max(sizes) > hop
    out, pos = [], 0
    for n in sizes:
        out.append(enc.push(wav[pos : pos + n]))
        pos += n
        # Only whole frames are final: as many ids as hops fully received.
        assert sum(c.shape[-1] for c in out) == pos // hop
    out.append(enc.flush())
    streamed = torch.cat(out, dim=-1)
    assert torch.equal(streamed, offline)
    assert enc.state.frames_out == offline.shape[-1]


@pytest.mark.parametrize("lookahead", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_encode_with_lookahead_equals_offline(lookahead: int, seed: int):
    model = encoder_lookahead_codec(lookahead, seed)
    hop = model.hop_length
    wav = speechlike(40 * hop + 123, seed=seed)
    offline, _ = model.encode(wav)
    assert offline.unique().numel() > 5
    enc = model.streaming_encoder()
    assert enc.latency_ms == pytest.approx((1 + lookahead) * 1000 * hop / 24000)
    out, pos = [], 0
    for n in chunk_sizes(wav.numel(), 3 * hop, seed, singles=hop + 5):
        out.append(enc.push(wav[pos : pos + n]))
        pos += n
        # A frame's id comes out once `lookahead` later frames have fully arrived.
        assert sum(c.shape[-1] for c in out) == max(0, pos // hop - lookahead)
    out.append(enc.flush())
    assert torch.equal(torch.cat(out, dim=-1), offline)
    assert enc.state.frames_out == offline.shape[-1]
    with pytest.raises(RuntimeError, match="flushed"):
        enc.push(wav[:10])


def test_encoder_lookahead_on_a_stream_shorter_than_it(tiny_causal_encoder_lookahead: Codec):
    """One frame of audio: nothing is final before the flush, which returns its id."""
    model = tiny_causal_encoder_lookahead
    wav = speechlike(model.hop_length - 7)
    enc = model.streaming_encoder()
    assert enc.push(wav).shape == (1, 0)
    assert torch.equal(enc.flush(), model.encode(wav)[0])


def test_encoder_lookahead_reads_exactly_the_next_frames(tiny_causal_encoder_lookahead: Codec):
    model, hop = tiny_causal_encoder_lookahead, tiny_causal_encoder_lookahead.hop_length
    wav = speechlike(20 * hop, seed=4)[None, None]
    base = model.encoder(wav)
    frame = 10
    for later, should_change in ((1, True), (2, True), (3, False)):
        changed = wav.clone()
        start = (frame + later) * hop
        changed[..., start : start + hop] += 0.3
        moved = not torch.allclose(model.encoder(changed)[..., frame], base[..., frame])
        assert moved == should_change, later


def test_zero_encoder_lookahead_encodes_as_causal(tiny_causal_encoder_lookahead: Codec):
    data = tiny_causal_encoder_lookahead.config.model_dump()
    data["encoder"]["lookahead"] = 0
    causal = Codec.from_config(CodecConfig.model_validate(data))
    state = tiny_causal_encoder_lookahead.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("encoder.future.")}
    causal.load_state_dict(state)
    fresh = Codec.from_config(tiny_causal_encoder_lookahead.config)  # future built as zero
    fresh.load_state_dict(state, strict=False)
    wav = speechlike(17 * causal.hop_length + 5, seed=2)
    assert torch.equal(fresh.eval().encode(wav)[0], causal.eval().encode(wav)[0])


def test_flush_on_hop_boundary_adds_nothing(tiny_causal: Codec):
    hop = tiny_causal.hop_length
    wav = speechlike(4 * hop)
    enc = tiny_causal.streaming_encoder()
    codes = enc.push(wav)
    assert codes.shape == (1, 4)
    assert enc.flush().shape == (1, 0)
    assert torch.equal(codes, tiny_causal.encode(wav)[0])


@pytest.mark.parametrize("name", ["tiny_causal", "tiny_causal_phaseinc", "tiny_causal_harmonic"])
@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_decode_matches_offline(request: pytest.FixtureRequest, name: str, seed: int):
    tiny_causal: Codec = request.getfixturevalue(name)
    gen = torch.Generator().manual_seed(seed)
    # Longer than the attention window (8 frames) and the conv receptive field.
    codes = torch.randint(0, tiny_causal.codebook_size, (1, 41), generator=gen)
    offline, _ = tiny_causal.decode(codes)
    dec = tiny_causal.streaming_decoder()
    out, pos = [], 0
    for n in chunk_sizes(codes.shape[-1], 7, seed, singles=3):
        piece = dec.push(codes[:, pos : pos + n])
        assert piece.shape == (1, n * tiny_causal.hop_length)
        out.append(piece)
        pos += n
    out.append(dec.flush())
    assert_same_audio(torch.cat(out, dim=-1), offline[:, 0], tiny_causal)


@pytest.mark.parametrize("lookahead", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_decode_with_lookahead_matches_offline(lookahead: int, seed: int):
    model = lookahead_codec(lookahead, seed)
    hop = model.hop_length
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, model.codebook_size, (1, 41), generator=gen)
    offline, _ = model.decode(codes)
    dec = model.streaming_decoder()
    assert dec.latency_ms == pytest.approx(lookahead * 1000 * hop / 24000)
    out, pos = [], 0
    for n in chunk_sizes(codes.shape[-1], 7, seed, singles=3):
        piece = dec.push(codes[:, pos : pos + n])
        pos += n
        out.append(piece)
        # A frame's samples come out once `lookahead` later codes have arrived.
        assert sum(p.shape[-1] for p in out) == max(0, pos - lookahead) * hop
    out.append(dec.flush())
    assert_same_audio(torch.cat(out, dim=-1), offline[:, 0], model)
    with pytest.raises(RuntimeError, match="flushed"):
        dec.flush()


def test_lookahead_reads_exactly_the_next_codes(tiny_causal_lookahead: Codec):
    model, hop = tiny_causal_lookahead, tiny_causal_lookahead.hop_length
    gen = torch.Generator().manual_seed(5)
    codes = torch.randint(0, model.codebook_size, (1, 20), generator=gen)
    base = model.decode(codes)[0][0, 0]
    frame = 10
    for later, should_change in ((1, True), (2, True), (3, False)):
        changed = codes.clone()
        changed[0, frame + later] = (changed[0, frame + later] + 1) % model.codebook_size
        audio = model.decode(changed)[0][0, 0]
        moved = not torch.allclose(audio[: (frame + 1) * hop], base[: (frame + 1) * hop])
        assert moved == should_change, later


def test_zero_lookahead_weights_decode_as_causal(tiny_causal_lookahead: Codec):
    data = tiny_causal_lookahead.config.model_dump()
    data["decoder"]["lookahead"] = 0
    causal = Codec.from_config(CodecConfig.model_validate(data))
    state = {k: v for k, v in tiny_causal_lookahead.state_dict().items() if "embed_future" not in k}
    causal.load_state_dict(state)
    causal.eval()
    fresh = Codec.from_config(tiny_causal_lookahead.config)  # embed_future built as zero
    fresh.load_state_dict(state, strict=False)
    fresh.eval()
    codes = torch.randint(
        0, causal.codebook_size, (2, 15), generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(fresh.decode(codes)[0], causal.decode(codes)[0])


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_lookahead_needs_a_causal_model(part: str):
    data = CodecConfig.named("wavtok-tiny").model_dump()
    data[part]["lookahead"] = 1
    with pytest.raises(ValueError, match=f"{part}.lookahead needs a causal model"):
        CodecConfig.model_validate(data)


def test_streaming_latency_adds_both_lookaheads():
    data = CodecConfig.named("wavtok-tiny-causal").model_dump()
    data["encoder"]["lookahead"], data["decoder"]["lookahead"] = 2, 1
    cfg = CodecConfig.model_validate(data)
    assert cfg.streaming_latency_ms == pytest.approx(4 * cfg.frame_ms)


def test_stream_encode_then_decode_batch_of_two(tiny_causal: Codec):
    hop = tiny_causal.hop_length
    wav = torch.stack([speechlike(9 * hop, seed=3), speechlike(9 * hop, seed=4)])
    enc = tiny_causal.streaming_encoder(batch_size=2)
    codes = torch.cat([enc.push(wav[:, : 5 * hop + 1]), enc.push(wav[:, 5 * hop + 1 :])], -1)
    codes = torch.cat([codes, enc.flush()], dim=-1)
    assert torch.equal(codes, tiny_causal.encode(wav[:, None])[0])
    dec = tiny_causal.streaming_decoder(batch_size=2)
    audio = torch.cat([dec.push(codes[:, :4]), dec.push(codes[:, 4:])], dim=-1)
    assert (audio - tiny_causal.decode(codes)[0][:, 0]).abs().max() <= 1e-4


def test_non_causal_refuses_to_stream(tiny: Codec):
    with pytest.raises(ValueError, match="not causal"):
        tiny.streaming_encoder()
    with pytest.raises(ValueError, match="not causal"):
        tiny.streaming_decoder()


def test_latency(tiny_causal: Codec):
    enc, dec = tiny_causal.streaming_encoder(), tiny_causal.streaming_decoder()
    assert enc.latency_ms == pytest.approx(1000 * 320 / 24000)
    assert dec.latency_ms == 0.0


def test_push_after_flush_raises(tiny_causal: Codec):
    enc = tiny_causal.streaming_encoder()
    enc.push(speechlike(100))
    enc.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        enc.push(speechlike(100))
    dec = tiny_causal.streaming_decoder()
    dec.push(torch.tensor([[1, 2]]))
    dec.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        dec.push(torch.tensor([[1, 2]]))


def test_bad_chunks_raise(tiny_causal: Codec):
    enc = tiny_causal.streaming_encoder(batch_size=1)
    with pytest.raises(ValueError, match="expected"):
        enc.push(torch.zeros(2, 100))
    dec = tiny_causal.streaming_decoder()
    with pytest.raises(ValueError, match="must lie in"):
        dec.push(torch.tensor([[tiny_causal.codebook_size]]))


def test_state_stays_bounded(tiny_causal: Codec):
    """Per-chunk cost is bounded: carried state does not grow with the stream's history."""
    hop = tiny_causal.hop_length
    enc, dec = tiny_causal.streaming_encoder(), tiny_causal.streaming_decoder()
    wav = speechlike(60 * hop, seed=5)
    enc_sizes, dec_sizes = [], []
    for i in range(60):
        codes = enc.push(wav[i * hop : (i + 1) * hop])
        dec.push(codes)
        enc_sizes.append(state_numel(enc.state))
        dec_sizes.append(state_numel(dec.state))
    assert enc_sizes[-1] > 0 and dec_sizes[-1] > 0
    # The attention context fills within its window (8 frames); afterwards nothing grows.
    assert len(set(enc_sizes[10:])) == 1, enc_sizes
    assert len(set(dec_sizes[10:])) == 1, dec_sizes
