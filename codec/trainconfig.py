"""Typed training configuration (YAML), separate from the model config it embeds by name or inline."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from codec.config import CodecConfig, load_yaml_mapping


class LossWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mel: float = 45.0
    # Mel L1 over mel powers ** 0.3 (losses.MultiResolutionMelLoss(compression=0.3)), beside
    # the log-mel L1; 0 leaves it out.
    mel_compressed: float = 0.0
    # Linear-frequency multi-resolution STFT loss; 0 leaves it out (WavTokenizer has none).
    stft: float = 0.0
    # Band-envelope correlation (losses.BandEnvelopeLoss); 0 leaves it out.
    envelope: float = 0.0
    # F0 and voicing of the harmonic source (models with decoder.excitation "harmonic" only).
    pitch: float = 10.0
    # The same pitch loss on a linear read-out of the VQ's lookup vectors
    # (losses.LatentPitchHead, training only), so the encoder is taught pitch directly; 0: off.
    encoder_pitch: float = 0.0
    # torch-pesq's differentiable PESQ disturbance (losses.PesqProxyLoss); 0 leaves it out.
    pesq: float = 0.0
    # 1 - torch-stoi's differentiable STOI (losses.StoiProxyLoss); 0 leaves it out.
    stoi: float = 0.0
    adversarial: float = 1.0
    feature_matching: float = 2.0
    # WavTokenizer weighs the commitment loss at 1000.
    commitment: float = 1000.0


class DiscriminatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mpd_channels: list[int] = Field(default_factory=lambda: [32, 128, 512, 1024, 1024])
    mrd_channels: int = 32
    msstft_filters: int = 32
    loss: str = Field("hinge", pattern="^(hinge|lsgan)$")
    # Which families train against the generator; fewer is a CPU budget lever for fine-tuning.
    families: list[Literal["mpd", "mrd", "msstft"]] = Field(
        default_factory=lambda: ["mpd", "mrd", "msstft"], min_length=1
    )
    # Items of each batch the discriminators see (None: all); a CPU budget lever.
    batch_size: int | None = None


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | CodecConfig = "wavtok-small-75hz-causal"
    batch_size: int = 16
    segment_seconds: float = 1.0
    steps: int = 100_000
    # Generator-only steps on the mel loss before the discriminators join.
    warmup_steps: int = 2000
    lr_generator: float = 5e-4
    lr_discriminator: float = 2e-4
    lr_warmup_steps: int = 200
    # Generator learning-rate multipliers by parameter-name prefix, e.g. {"encoder.spectral.": 10}
    # lets a part added to a trained model (starting from zero) catch up with the rest; the
    # encoder pitch loss's head is named "latent_pitch.".
    lr_scale: dict[str, float] = Field(default_factory=dict)
    min_lr_ratio: float = 0.1
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    losses: LossWeights = Field(default_factory=LossWeights)
    # Highest frequency the linear STFT loss (losses.stft) compares; None: all bins.
    stft_max_hz: float | None = Field(None, gt=0)
    discriminators: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    gain_db: tuple[float, float] = (-6.0, -1.0)
    noise_prob: float = 0.0
    checkpoint_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    audio_every: int = 1000
    eval_every: int = 1000
    eval_clips: int = 5
    eval_data: str | None = "../shared/data/test/libritts_test_clean"
    seed: int = 0
    threads: int | None = None
    # bf16 autocast on a CPU (GPUs always use it): ~1.3x faster steps on a CPU with AVX512-BF16,
    # the same losses; the quantizer and the losses stay in float32.
    cpu_bf16: bool = False
    # Share of steps whose harmonic source is driven by the F0 estimated from the input (teacher
    # forcing); the others use the decoder's own F0, as inference does, so the rest of the
    # decoder learns to live with its pitch errors. 1.0 (always teacher forcing) as before.
    teacher_f0: float = Field(1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _segments_fit_the_windowed_losses(self) -> TrainConfig:
        # BandEnvelopeLoss correlates 30 frames of 13.3 ms, StoiProxyLoss 30 of 12.8 ms,
        # PesqProxyLoss sums 20 frames of 16 ms: a segment must hold one such window.
        for name in ("envelope", "pesq", "stoi"):
            if getattr(self.losses, name) > 0 and self.segment_seconds < 0.4:
                raise ValueError(
                    f"the {name} loss needs segment_seconds >= 0.4, got {self.segment_seconds}"
                )
        return self

    def codec_config(self) -> CodecConfig:
        return CodecConfig.named(self.model) if isinstance(self.model, str) else self.model

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.model_validate(load_yaml_mapping(path, "training config"))
