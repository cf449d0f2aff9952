"""Shared fixtures: tiny seeded models (causal and not), a saved model dir, a real speech clip.

Tiny models are built once per session and must be treated as read-only by tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from codec import Codec
from codec.config import CodecConfig

# Tiny models gain nothing from intra-op threads, and on a busy shared CPU the threads' barrier
# waits made single-sample streaming pushes ~100x slower.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
LIBRITTS = Path(__file__).resolve().parents[1].parent / "shared/data/test/libritts_test_clean"
TRAIN_CLIPS = ROOT.parent / "shared/data/train/speech/cmu_arctic"
TINY_TRAIN = ROOT / "codec/configs/train/tiny-test.yaml"


def speechlike(num_samples: int, seed: int = 0, sample_rate: int = 24000) -> torch.Tensor:
    """(T,) float32 test signal: a few gliding harmonics plus noise bursts, peak below 0.5."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples, dtype=torch.float64) / sample_rate
    f0 = 120.0 + 60.0 * torch.sin(2 * torch.pi * 1.5 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / sample_rate
    wav = sum(torch.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * torch.sin(2 * torch.pi * 3.0 * t)
    noise = torch.randn(num_samples, generator=gen, dtype=torch.float64)
    out = 0.15 * wav * envelope + 0.05 * noise
    return out.float()


def prime_codebook(model: Codec, seed: int = 0) -> None:
    """Run the quantizer's k-means init on encoder output so codes are diverse.

    An untrained codebook is all zeros (k-means init is pending), so every frame would map to
    id 0 and equality tests could not fail.
    """
    torch.manual_seed(seed)
    batch = torch.stack([speechlike(320 * 64, seed + i) for i in range(2)])[:, None]
    model.eval()
    with torch.no_grad():
        latents = model.encoder(batch)
        quantizer = model.quantizer
        norm = quantizer.pre_norm
        # Cumulative averaging makes the running statistics those of this batch exactly.
        momentum = getattr(norm, "momentum", None)
        if isinstance(norm, torch.nn.BatchNorm1d):
            norm.momentum = None
        quantizer.train()
        quantizer(latents, None if model.f0_channel is None else model.f0_channel(batch))
        quantizer.eval()
        if isinstance(norm, torch.nn.BatchNorm1d):
            norm.momentum = momentum
        # With fewer frames than codes, k-means repeats rows; exact duplicates make the chosen
        # id depend on float rounding (batch size), so spread them apart.
        book = quantizer.vq._codebook
        book.embed.add_(0.05 * book.embed.std() * torch.randn_like(book.embed))
        book.embed_avg.copy_(book.embed * book.cluster_size[:, None])
    assert quantizer.initialised


def assert_same_audio(actual: torch.Tensor, expected: torch.Tensor, model: Codec) -> None:
    """Decoded audio equal up to float rounding.

    A harmonic source synthesises sharp pulse trains whose phase integrates F0, so an F0 that
    differs in its last float32 bit (a different batch shape or chunking changes the rounding
    of the layers before it) moves samples near the pulses by up to ~1e-2. Those models are
    compared by signal-to-error ratio: rounding gives 40-140 dB, a frame out of place ~0 dB.
    """
    assert actual.shape == expected.shape
    if model.decoder.head.source is None:
        assert (actual - expected).abs().max() <= 1e-4
        return
    error = float(((actual - expected) ** 2).sum())
    signal_energy = float((expected**2).sum())
    assert error == 0 or 10 * math.log10(signal_energy / error) >= 30


def make_codec(
    cfg: CodecConfig | str, seed: int = 0, before_priming: Callable[[Codec], None] | None = None
) -> Codec:
    """A seeded untrained model in eval mode with a k-means-initialised codebook;
    `before_priming` may change the encoder first, since the codebook is fitted to its output."""
    torch.manual_seed(seed)
    model = Codec.from_config(cfg)
    if before_priming is not None:
        with torch.no_grad():
            before_priming(model)
    prime_codebook(model, seed)
    return model.eval()


def config_40hz() -> CodecConfig:
    """The tiny non-causal config at hop 600 (40 frames/s)."""
    data = CodecConfig.named("wavtok-tiny").model_dump()
    data["name"] = "wavtok-tiny-40hz"
    data["encoder"]["ratios"] = [8, 5, 5, 3]
    return CodecConfig.model_validate(data)


@pytest.fixture(scope="session")
def tiny_causal() -> Codec:
    return make_codec("wavtok-tiny-causal")


@pytest.fixture(scope="session")
def tiny_causal_phaseinc() -> Codec:
    """`tiny_causal` with the phase-increment iSTFT head."""
    data = CodecConfig.named("wavtok-tiny-causal").model_dump()
    data["name"], data["decoder"]["phase"] = "wavtok-tiny-causal-phaseinc", "increment"
    return make_codec(CodecConfig.model_validate(data))


@pytest.fixture(scope="session")
def tiny_causal_harmonic() -> Codec:
    """`tiny_causal` with the harmonic source, its pitch head biased to voiced frames."""
    data = CodecConfig.named("wavtok-tiny-causal").model_dump()
    data["name"], data["decoder"]["excitation"] = "wavtok-tiny-causal-harmonic", "harmonic"
    model = make_codec(CodecConfig.model_validate(data))
    with torch.no_grad():
        model.decoder.head.source.pitch.weight.normal_(0, 1.0)
        model.decoder.head.source.pitch.bias[1] = 0.5
        model.decoder.head.source.gain.bias.zero_()
    return model


def lookahead_codec(lookahead: int = 2, seed: int = 0) -> Codec:
    """`tiny_causal` with a decoder lookahead whose weights are not zero (as after training),
    so that each frame's audio depends on the next `lookahead` codes. (Without the harmonic
    source, whose harmonic count and voicing are step functions of F0: with random weights a
    frame near a step can flip on float rounding and spoil exact comparisons.)"""
    data = CodecConfig.named("wavtok-tiny-causal").model_dump()
    data["name"] = f"wavtok-tiny-causal-lookahead{lookahead}"
    data["decoder"]["lookahead"] = lookahead
    model = make_codec(CodecConfig.model_validate(data), seed)
    with torch.no_grad():
        model.decoder.embed_future.weight.normal_(0, 0.5)
    return model


def f0_codebook_config(f0_scale: float = 4.0, code_f0: str = "next_token") -> CodecConfig:
    """`tiny_causal` with a harmonic source, a decoder lookahead of 2 and codes that carry F0."""
    data = CodecConfig.named("wavtok-tiny-causal").model_dump()
    data["name"] = "wavtok-tiny-causal-f0"
    data["decoder"].update(excitation="harmonic", lookahead=2, code_f0=code_f0)
    data["quantizer"]["f0_scale"] = f0_scale
    return CodecConfig.model_validate(data)


def f0_codec(code_f0: str) -> Codec:
    model = make_codec(f0_codebook_config(code_f0=code_f0))
    with torch.no_grad():
        model.decoder.embed_future.weight.normal_(0, 0.5)
        model.decoder.head.source.gain.bias.zero_()
        # Voicing logits of either sign, so that the decoder's own voicing decides something.
        model.decoder.head.source.pitch.weight.mul_(100)
    return model


@pytest.fixture(scope="session")
def tiny_causal_f0() -> Codec:
    return f0_codec("next_token")


@pytest.fixture(scope="session")
def tiny_causal_f0_smoothed() -> Codec:
    return f0_codec("smoothed")


@pytest.fixture(scope="session")
def tiny_causal_lookahead() -> Codec:
    return lookahead_codec(2)


def encoder_lookahead_codec(lookahead: int = 2, seed: int = 0) -> Codec:
    """`tiny_causal_spectral` with an encoder lookahead whose weights are not zero (as after
    training), so that each frame's code depends on the next `lookahead` frames' audio."""
    data = CodecConfig.named("wavtok-tiny-causal").model_dump()
    data["name"] = f"wavtok-tiny-causal-spectral-enclookahead{lookahead}"
    data["encoder"]["spectral_bins"], data["encoder"]["lookahead"] = 24, lookahead

    def untrained_to_trained(model: Codec) -> None:
        model.encoder.spectral.project.weight.normal_(0, 0.5)
        model.encoder.future.weight.normal_(0, 0.5)

    return make_codec(CodecConfig.model_validate(data), seed, untrained_to_trained)


@pytest.fixture(scope="session")
def tiny_causal_encoder_lookahead() -> Codec:
    return encoder_lookahead_codec(2)


# Encoder branches: the config field that adds each, and its value in tests.
ENCODER_BRANCHES = {"spectral": ("spectral_bins", 24), "pitch": ("pitch_branch", True)}


def branch_codec(base: str, branch: str, seed: int = 0) -> Codec:
    """The `base` tiny config with an encoder `branch` ("spectral" or "pitch") whose projection is
    not zero (as after training), so that it shapes the codes."""
    field, value = ENCODER_BRANCHES[branch]
    data = CodecConfig.named(base).model_dump()
    data["name"], data["encoder"][field] = f"{base}-{branch}", value
    return make_codec(
        CodecConfig.model_validate(data),
        seed,
        lambda model: getattr(model.encoder, branch).project.weight.normal_(0, 0.5),
    )


@pytest.fixture(scope="session")
def tiny_causal_pitch() -> Codec:
    return branch_codec("wavtok-tiny-causal", "pitch")


@pytest.fixture(scope="session")
def tiny_pitch() -> Codec:
    """Non-causal: the branch's window is centred on each frame."""
    return branch_codec("wavtok-tiny", "pitch")


@pytest.fixture(scope="session")
def tiny_causal_spectral() -> Codec:
    return branch_codec("wavtok-tiny-causal", "spectral")


@pytest.fixture(scope="session")
def tiny_spectral() -> Codec:
    """Non-causal: the branch's window is centred on each frame."""
    return branch_codec("wavtok-tiny", "spectral")


@pytest.fixture(scope="session")
def tiny() -> Codec:
    return make_codec("wavtok-tiny")


@pytest.fixture(scope="session")
def tiny_40hz() -> Codec:
    return make_codec(config_40hz())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_causal: Codec) -> Path:
    """A saved copy of `tiny_causal` (config.yaml + model.safetensors)."""
    path = tmp_path_factory.mktemp("models") / "wavtok-tiny-causal"
    tiny_causal.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def libritts_clip() -> Path:
    """The shortest LibriTTS test-clean clip (24 kHz mono wav), to keep tests fast."""
    if not LIBRITTS.is_dir():
        pytest.skip(f"LibriTTS test data not found at {LIBRITTS}")
    clips = sorted(LIBRITTS.glob("*.wav"), key=lambda p: (p.stat().st_size, p.name))
    if not clips:
        pytest.skip(f"no .wav clips in {LIBRITTS}")
    return clips[0]


@pytest.fixture
def signal() -> Callable[..., torch.Tensor]:
    """`speechlike` as a fixture, for tests that need deterministic audio."""
    return speechlike


def tiny_train_config():
    """The tiny training recipe, on one thread and without a quick eval."""
    from codec.trainconfig import TrainConfig

    return TrainConfig.from_yaml(TINY_TRAIN).model_copy(update={"threads": 1, "eval_data": None})


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real training clips prepared (`wavtok data prepare`) into 2 s segments."""
    import shutil

    from codec.data import prepare

    if not TRAIN_CLIPS.is_dir():
        pytest.skip(f"{TRAIN_CLIPS} is absent")
    src = tmp_path_factory.mktemp("src")
    for clip in sorted(TRAIN_CLIPS.glob("*.wav"))[:2]:
        shutil.copy(clip, src / clip.name)
    out = tmp_path_factory.mktemp("prepared")
    stats = prepare([src], out, segment_seconds=2.0)
    assert stats["segments"] >= 2
    return out


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The transcode tests' corpus (`transcode_corpus.make_corpus`); treat as read-only."""
    from transcode_corpus import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def reference(corpus: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus encoded locally by the tiny causal model; treat as read-only."""
    from transcode_corpus import encode_reference

    return encode_reference(corpus, tiny_model_dir, tmp_path_factory.mktemp("reference"))
