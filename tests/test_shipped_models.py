"""Every model shipped in models/: it loads, its card names it and its codebook, and it codes
audio as the library promises (lengths, batching, streaming equal to offline)."""

from pathlib import Path

import pytest
import torch
from conftest import assert_same_audio, speechlike

from codec import Codec
from codec.model import CONFIG_FILE, DEFAULT_MODEL, WEIGHTS_FILE, models_dir

SHIPPED = sorted(p.parent for p in models_dir().glob(f"*/{WEIGHTS_FILE}"))


def test_the_default_is_shipped():
    assert DEFAULT_MODEL in [p.name for p in SHIPPED]


@pytest.fixture(scope="module", params=SHIPPED, ids=lambda p: p.name)
def shipped(request) -> tuple[Path, Codec]:
    torch.set_num_threads(2)
    return request.param, Codec.from_pretrained(request.param)


def test_card_names_the_model_and_its_codebook(shipped):
    path, model = shipped
    assert (path / CONFIG_FILE).is_file() and model.name == path.name
    card = (path / "MODEL_CARD.md").read_text()
    assert card.startswith(f"# {model.name}")
    assert model.codebook_id in card


def test_round_trip_lengths_and_batching(shipped):
    _, model = shipped
    wav = speechlike(24000 + 123)
    with torch.inference_mode():
        codes, code_lengths = model.encode(wav)
        assert codes.shape == (1, model.num_frames(wav.numel())) and int(code_lengths) == 76
        audio, lengths = model.decode(codes, num_samples=torch.tensor([wav.numel()]))
        assert int(lengths[0]) == wav.numel() and torch.isfinite(audio).all()
        short = speechlike(12000, seed=1)
        batch = torch.zeros(2, 1, wav.numel())
        batch[0, 0], batch[1, 0, : short.numel()] = wav, short
        both, both_lengths = model.encode(batch, torch.tensor([wav.numel(), short.numel()]))
        assert torch.equal(both[0], codes[0])
        alone, _ = model.encode(short)
        assert torch.equal(both[1, : int(both_lengths[1])], alone[0])


def test_streamed_decode_equals_offline(shipped):
    _, model = shipped
    if not model.causal:
        pytest.skip("offline-only model: no streaming")
    with torch.inference_mode():
        codes, _ = model.encode(speechlike(24000, seed=2))
        offline, _ = model.decode(codes)
        decoder = model.streaming_decoder()
        parts = [decoder.push(codes[:, i : i + 7]) for i in range(0, codes.shape[-1], 7)]
        parts.append(decoder.flush())
    assert_same_audio(torch.cat(parts, -1), offline[:, 0], model)
