"""Typed model configuration: one pydantic tree, loadable from YAML, with named presets.

A config fully determines the architecture; `Codec.from_config(cfg)` builds it untrained and
`Codec.from_pretrained(dir)` reads `config.yaml` plus `model.safetensors`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_DIR = Path(__file__).parent / "configs"


def load_yaml_mapping(path: str | Path, kind: str) -> dict:
    """A YAML mapping from `path`; an `extends: other.yaml` key (relative to the file) starts
    from that file's mapping and overrides it key by key, nested mappings merged, so a variant
    states only what it changes."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a {kind} must be a YAML mapping")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merged(load_yaml_mapping(path.parent / parent, kind), data)


def _merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both_maps else value
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EncoderConfig(_Strict):
    """SEANet encoder (from the `encodec` package)."""

    n_filters: int = 32
    dimension: int = 512
    # Downsampling ratios, listed from the latent side as `encodec` expects; the product is the hop.
    ratios: list[int] = Field(default_factory=lambda: [8, 5, 4, 2])
    n_residual_layers: int = 1
    lstm_layers: int = 2
    # Linear-frequency bins (from 1 x 18.75 Hz at hop 320) of a parallel branch that reads a
    # 4-hop windowed spectrum, fine enough to resolve the voice's harmonics, and adds its
    # projection to SEANet's output; 0: no branch. See `SpectralBranch` in codec/encoder.py.
    spectral_bins: int = 0
    # A parallel branch that adds each frame's autocorrelation period, periodicity and level
    # (a fixed analysis, `PitchBranch` in codec/pitch.py) to SEANet's output, so the tokens can
    # carry F0 more precisely than SEANet finds it.
    pitch_branch: bool = False
    # Latent frames after its own that each frame's latent may read (causal models only): a
    # conv over frames f+1..f+lookahead is added to SEANet's output before the quantizer, so a
    # token can anticipate the audio just after its frame. Adds lookahead frames of streaming
    # latency (13.3 ms each at 75 Hz); 0 keeps encoding strictly causal.
    lookahead: int = Field(0, ge=0, le=4)


class QuantizerConfig(_Strict):
    """One EMA vector-quantizer codebook (from `encodec.quantization.core_vq`)."""

    codebook_size: int = 4096
    # A low-dimensional lookup keeps more codes alive on small training budgets.
    codebook_dim: int = 512
    decay: float = 0.99
    kmeans_iters: int = 20
    # EMA cluster size under which a code counts as dead and is restarted from the batch.
    dead_code_threshold: float = 0.05
    commitment_weight: float = 1.0
    # Per-channel standardisation before the lookup; it breaks the near-constant init output.
    pre_norm: bool = True
    # > 0: each code also carries an F0 (`pitch.F0Channel`): the input's causal log F0, in
    # lookup units per natural-log unit, is searched beside the lookup vector, and the decoder's
    # harmonic source plays each code's F0. 0: off. See docs/training.md.
    f0_scale: float = Field(0.0, ge=0.0)


# How frames play the F0 of codes that carry it (DecoderConfig.code_f0).
CodeF0 = Literal["next_token", "smoothed"]
CODE_F0_RULES: tuple[str, ...] = get_args(CodeF0)


class DecoderConfig(_Strict):
    """Vocos backbone (ConvNeXt blocks plus local self-attention) and an inverse-STFT head."""

    dim: int = 768
    intermediate_dim: int = 2304
    num_layers: int = 12
    # Zero-based indices of ConvNeXt blocks followed by a self-attention block.
    attention_after: list[int] = Field(default_factory=lambda: [5, 11])
    attention_heads: int = 8
    # Frames of context each attention query sees (past only when causal).
    attention_window: int = 64
    kernel_size: int = 7
    # n_fft as a multiple of the hop; 4 gives Vocos' 1280 at hop 320.
    n_fft_hops: int = 4
    # What the head predicts for phase: "absolute" per frame (Vocos), or "increment" over the
    # previous frame, summed causally (see ISTFTHead); causal models only.
    phase: Literal["absolute", "increment"] = "absolute"
    # "harmonic" adds a pulse train at a predicted F0 with a running pitch phase (see
    # codec/excitation.py), trained against F0 estimated from the input; causal models only.
    excitation: Literal["none", "harmonic"] = "none"
    # Token frames after its own that each output frame may read (causal models only): the
    # decoder's input layer also sees frames f+1..f+lookahead, which adds lookahead frames of
    # streaming latency (13.3 ms each at 75 Hz). 0 keeps decoding strictly causal.
    lookahead: int = Field(0, ge=0, le=4)
    # Bins at or above this frequency (Hz) keep the head's predicted magnitudes but take fixed
    # pseudo-random phases, normalised in power (see ISTFTHead.stream): removes the frame-rate
    # buzz of the noise band. None: every phase predicted. Causal models only.
    noise_above_hz: float | None = Field(None, ge=0)
    # With codes that carry F0 (quantizer.f0_scale): what frame f plays. "next_token": token
    # f+1's F0 and voicing. "smoothed": the mean log F0 of tokens f..f+2 (see
    # F0Channel.frame_hz), voiced where the decoder's own voicing prediction says so, with its
    # own F0 where the codes call the frame unvoiced; needs lookahead >= 2. An autocorrelation
    # track jitters from frame to frame, and its voicing misses weakly periodic frames: both
    # cost naturalness (DNSMOS) more than they add precision.
    code_f0: CodeF0 = "next_token"


class CodecConfig(_Strict):
    """A whole codec: 24 kHz mono audio <-> one stream of token ids."""

    name: str = "wavtok-custom"
    sample_rate: int = 24000
    causal: bool = False
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    quantizer: QuantizerConfig = Field(default_factory=QuantizerConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)

    @model_validator(mode="after")
    def _check(self) -> CodecConfig:
        if self.quantizer.codebook_size < 2:
            raise ValueError("codebook_size must be at least 2")
        if any(i < 0 or i >= self.decoder.num_layers for i in self.decoder.attention_after):
            raise ValueError("attention_after indices must lie in [0, decoder.num_layers)")
        if self.decoder.dim % self.decoder.attention_heads:
            raise ValueError("decoder.dim must be divisible by decoder.attention_heads")
        if self.decoder.phase == "increment" and not self.causal:
            raise ValueError("decoder.phase 'increment' needs a causal model")
        if not 0 <= self.encoder.spectral_bins <= 2 * self.hop_length:
            raise ValueError("encoder.spectral_bins must lie in [0, 2 * hop_length]")
        for part in ("encoder", "decoder"):
            if getattr(self, part).lookahead and not self.causal:
                raise ValueError(f"{part}.lookahead needs a causal model (the others see ahead)")
        if self.decoder.excitation != "none" and not self.causal:
            raise ValueError("decoder.excitation 'harmonic' needs a causal model")
        if self.decoder.noise_above_hz is not None and not self.causal:
            raise ValueError("decoder.noise_above_hz needs a causal model")
        if self.decoder.code_f0 == "smoothed" and (
            not self.quantizer.f0_scale or self.decoder.lookahead < 2
        ):
            raise ValueError(
                "decoder.code_f0 'smoothed' needs codes that carry F0 (quantizer.f0_scale) and "
                "decoder.lookahead >= 2 (frame f reads tokens f..f+2)"
            )
        if self.quantizer.f0_scale and (
            self.decoder.excitation != "harmonic"
            or self.decoder.lookahead < 1
            or self.encoder.lookahead
        ):
            raise ValueError(
                "quantizer.f0_scale needs a harmonic decoder with decoder.lookahead >= 1 (frame f"
                " plays token f+1's F0) and no encoder.lookahead"
            )
        return self

    @property
    def hop_length(self) -> int:
        """Samples per token frame."""
        return math.prod(self.encoder.ratios)

    @property
    def frame_rate(self) -> float:
        """Token frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def frame_ms(self) -> float:
        """Milliseconds of audio per token frame (13.3 at 75 Hz): the unit of streaming latency."""
        return 1000.0 * self.hop_length / self.sample_rate

    @property
    def streaming_latency_ms(self) -> float:
        """Algorithmic latency of streaming encode plus decode (causal models): a frame's own
        audio plus the encoder's and the decoder's lookahead frames."""
        return (1 + self.encoder.lookahead + self.decoder.lookahead) * self.frame_ms

    @property
    def bits_per_code(self) -> int:
        return max(1, math.ceil(math.log2(self.quantizer.codebook_size)))

    @property
    def bitrate(self) -> float:
        """Theoretical bitrate in bits per second (frame rate x bits per code)."""
        return self.frame_rate * self.bits_per_code

    @classmethod
    def from_yaml(cls, path: str | Path) -> CodecConfig:
        return cls.model_validate(load_yaml_mapping(path, "codec config"))

    def to_yaml(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.model_dump(), f, sort_keys=False)

    @classmethod
    def named(cls, name: str) -> CodecConfig:
        """A preset from `codec/configs/<name>.yaml`; see `named_configs()`."""
        path = CONFIG_DIR / f"{name}.yaml"
        if not path.is_file():
            known = ", ".join(named_configs())
            raise ValueError(f"unknown config {name!r}; known configs: {known}")
        return cls.from_yaml(path)


def named_configs() -> list[str]:
    """Names of the preset configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
