import math
from pathlib import Path

import pytest
import torch
from conftest import assert_same_audio, speechlike

from codec import Codec

MODELS = ["tiny", "tiny_causal", "tiny_40hz"]


@pytest.fixture(params=MODELS)
def model(request: pytest.FixtureRequest) -> Codec:
    return request.getfixturevalue(request.param)


def test_hops(tiny: Codec, tiny_40hz: Codec):
    assert (tiny.hop_length, tiny.frame_rate) == (320, 75.0)
    assert (tiny_40hz.hop_length, tiny_40hz.frame_rate) == (600, 40.0)


@pytest.mark.parametrize("hops", [None, 1])
def test_encode_frame_count(model: Codec, hops: int | None):
    hop = model.hop_length
    # Fixed lengths (10 s is in test_ten_seconds_frame_counts) and lengths around the hop.
    lengths = [1, 319, 320, 321] if hops is None else [hop - 1, hop, hop + 1, 3 * hop]
    for n in lengths:
        codes, frames = model.encode(torch.randn(n) * 0.1)
        expected = math.ceil(n / hop)
        assert codes.shape == (1, expected), n
        assert codes.dtype == torch.int64
        assert frames.tolist() == [expected]
        assert model.num_frames(n) == expected
        assert int(codes.min()) >= 0 and int(codes.max()) < model.codebook_size


def test_ten_seconds_frame_counts(tiny: Codec, tiny_40hz: Codec):
    wav = speechlike(24000 * 10)
    assert tiny.encode(wav)[0].shape == (1, 750)
    assert tiny_40hz.encode(wav)[0].shape == (1, 400)


def test_input_shapes_equivalent(tiny: Codec):
    wav = speechlike(1000)
    a = tiny.encode(wav)[0]
    assert torch.equal(a, tiny.encode(wav[None])[0])
    assert torch.equal(a, tiny.encode(wav[None, None])[0])
    with pytest.raises(ValueError, match="mono"):
        tiny.encode(torch.zeros(1, 2, 100))


def test_decode_length_and_trim(model: Codec):
    n = 5 * model.hop_length + 7
    codes, _ = model.encode(speechlike(n))
    audio, lengths = model.decode(codes)
    assert audio.shape == (1, 1, 6 * model.hop_length)
    assert lengths.tolist() == [6 * model.hop_length]
    trimmed, lengths = model.decode(codes, num_samples=torch.tensor([n]))
    assert trimmed.shape == (1, 1, n)
    assert lengths.tolist() == [n]
    torch.testing.assert_close(trimmed, audio[..., :n])
    assert torch.isfinite(audio).all()


def _padded_batch(items: list[torch.Tensor], pad_seed: int = 7) -> torch.Tensor:
    """(B, 1, T_max) with random garbage, not zeros, past each item: padding must not matter."""
    gen = torch.Generator().manual_seed(pad_seed)
    total = max(x.shape[-1] for x in items)
    batch = torch.randn(len(items), 1, total, generator=gen)
    for i, x in enumerate(items):
        batch[i, 0, : x.shape[-1]] = x
    return batch


@pytest.mark.parametrize(
    "name",
    [
        "tiny",
        "tiny_causal",
        "tiny_spectral",
        "tiny_causal_spectral",
        "tiny_pitch",
        "tiny_causal_pitch",
        "tiny_causal_encoder_lookahead",
        "tiny_causal_f0",
        "tiny_causal_f0_smoothed",
    ],
)
def test_batched_encode_equals_single(request: pytest.FixtureRequest, name: str):
    model: Codec = request.getfixturevalue(name)
    sizes = [1, 319, 700, 3333, 4000, 4000]
    items = [speechlike(n, seed=i) for i, n in enumerate(sizes)]
    codes, frames = model.encode(_padded_batch(items), torch.tensor(sizes))
    assert frames.tolist() == [math.ceil(n / model.hop_length) for n in sizes]
    assert codes.shape == (len(sizes), int(frames.max()))
    used = set()
    for i, x in enumerate(items):
        alone, _ = model.encode(x)
        assert torch.equal(codes[i, : frames[i]], alone[0]), f"item {i} (length {sizes[i]})"
        used.update(alone[0].tolist())
    # Guard against a vacuous pass: a collapsed codebook would make every code equal.
    assert len(used) > 5


@pytest.mark.parametrize(
    "name",
    [
        "tiny",
        "tiny_causal",
        "tiny_causal_phaseinc",
        "tiny_causal_harmonic",
        "tiny_causal_lookahead",
        "tiny_causal_f0",
        "tiny_causal_f0_smoothed",
    ],
)
def test_batched_decode_equals_single(request: pytest.FixtureRequest, name: str):
    model: Codec = request.getfixturevalue(name)
    gen = torch.Generator().manual_seed(3)
    frames = torch.tensor([1, 4, 9, 13])
    codes = torch.randint(0, model.codebook_size, (4, 13), generator=gen)
    samples = frames * model.hop_length - torch.tensor([0, 5, 100, 319])
    audio, lengths = model.decode(codes, frames, num_samples=samples)
    assert lengths.tolist() == samples.tolist()
    assert audio.shape == (4, 1, int(samples.max()))
    for i in range(4):
        alone, _ = model.decode(codes[i : i + 1, : frames[i]])
        n = int(samples[i])
        assert_same_audio(audio[i, 0, :n], alone[0, 0, :n], model)


def test_save_and_load_exact(tmp_path: Path, tiny_causal: Codec):
    tiny_causal.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.yaml", "model.safetensors"}
    loaded = Codec.from_pretrained(tmp_path / "m")
    assert not loaded.training
    assert loaded.config == tiny_causal.config
    a, b = tiny_causal.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    wav = speechlike(5000)
    codes = tiny_causal.encode(wav)[0]
    assert torch.equal(codes, loaded.encode(wav)[0])
    assert torch.equal(tiny_causal.decode(codes)[0], loaded.decode(codes)[0])


def test_bad_codes_raise(tiny: Codec):
    with pytest.raises(ValueError, match="must lie in"):
        tiny.decode(torch.tensor([[0, tiny.codebook_size]]))
    with pytest.raises(ValueError, match="must lie in"):
        tiny.decode(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="integers"):
        tiny.decode(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="empty"):
        tiny.decode(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="lengths"):
        tiny.decode(torch.zeros(2, 3, dtype=torch.long), torch.tensor([3, 4]))


def test_bad_audio_raises(tiny: Codec):
    with pytest.raises(ValueError, match="empty"):
        tiny.encode(torch.zeros(0))
    with pytest.raises(ValueError, match="lengths"):
        tiny.encode(torch.zeros(2, 1, 100), torch.tensor([100, 101]))
    with pytest.raises(ValueError, match="lengths"):
        tiny.encode(torch.zeros(2, 1, 100), torch.tensor([0, 50]))


def test_missing_model_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WAVTOK_MODELS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="'no-such-model' not found.*no model is shipped"):
        Codec.from_pretrained("no-such-model")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("name: half\n")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        Codec.from_pretrained(tmp_path / "half")
    (tmp_path / "half" / "MODEL_CARD.md").write_text("# half\nRun `make model-half`.\n")
    with pytest.raises(FileNotFoundError, match="no model.safetensors.*MODEL_CARD.md says how"):
        Codec.from_pretrained("half")


def test_training_pass_encodes_in_float32_under_an_autocast(tiny_causal: Codec):
    """Only the decoder follows a bf16 autocast: the codes are the float32 encoder's, as at
    inference, whatever a CPU's bf16 convolutions do."""
    wav = speechlike(24000, seed=4)[None, None]
    model = tiny_causal.eval()
    with torch.no_grad():
        reference = model(wav)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(wav)
    assert mixed.vq.lookup.dtype == torch.float32
    assert torch.equal(mixed.vq.codes, reference.vq.codes)
    assert torch.equal(mixed.vq.codes, model.encode(wav)[0])
