"""Training losses: multi-resolution log-mel L1, adversarial (hinge or least squares) and
feature matching. Waveforms are (B, 1, T) or (B, T) samples at 24 kHz."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn


class MultiResolutionMelLoss(nn.Module):
    """Mean L1 distance of log10 mel spectrograms at several STFT sizes (torchaudio)."""

    def __init__(
        self, sample_rate: int = 24000, n_ffts=(256, 512, 1024, 2048), n_mels=(32, 64, 128, 128)
    ):
        super().__init__()
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate,
                n_fft=n,
                hop_length=n // 4,
                n_mels=m,
                power=1.0,
                center=True,
                f_min=0.0,
                f_max=sample_rate / 2,
            )
            for n, m in zip(n_ffts, n_mels, strict=True)
        )

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake, real = (
            fake.reshape(fake.shape[0], -1).float(),
            real.reshape(real.shape[0], -1).float(),
        )
        total = fake.new_zeros(())
        for mel in self.mels:
            total = (
                total
                + (mel(fake).clamp(min=1e-5).log10() - mel(real).clamp(min=1e-5).log10())
                .abs()
                .mean()
            )
        return total / len(self.mels)


def discriminator_loss(
    real: list[torch.Tensor], fake: list[torch.Tensor], kind: str
) -> torch.Tensor:
    """Sum over sub-discriminators; `kind` is "hinge" or "lsgan"."""
    total = real[0].new_zeros(())
    for r, f in zip(real, fake, strict=True):
        if kind == "hinge":
            total = total + torch.relu(1 - r).mean() + torch.relu(1 + f).mean()
        else:
            total = total + ((r - 1) ** 2).mean() + (f**2).mean()
    return total


def generator_adv_loss(fake: list[torch.Tensor], kind: str) -> torch.Tensor:
    total = fake[0].new_zeros(())
    for f in fake:
        total = total + (torch.relu(1 - f).mean() if kind == "hinge" else ((f - 1) ** 2).mean())
    return total


def feature_matching_loss(
    real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]
) -> torch.Tensor:
    """Mean L1 between real (detached) and fake feature maps, averaged per sub-discriminator."""
    total = fake[0][0].new_zeros(())
    for r_maps, f_maps in zip(real, fake, strict=True):
        layer = sum((r.detach() - f).abs().mean() for r, f in zip(r_maps, f_maps, strict=True))
        total = total + layer / len(f_maps)
    return total
