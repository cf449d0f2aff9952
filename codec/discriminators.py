"""GAN discriminators: multi-period (HiFi-GAN), multi-resolution (UnivNet) and multi-scale STFT
(`encodec.msstftd`). Each returns, per sub-discriminator, logits and the feature maps used for
feature matching. Input (B, 1, T) samples.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from encodec.msstftd import MultiScaleSTFTDiscriminator

Logits = list[torch.Tensor]
FeatureMaps = list[list[torch.Tensor]]


class PeriodDiscriminator(nn.Module):
    """Folds (B, 1, T) into (B, 1, T / p, p) and scores it with 2-D convolutions."""

    def __init__(self, period: int, channels: list[int]):
        super().__init__()
        self.period = period
        layers, c_in = [], 1
        for i, c_out in enumerate(channels):
            stride = (3, 1) if i < len(channels) - 1 else (1, 1)
            layers.append(weight_norm(nn.Conv2d(c_in, c_out, (5, 1), stride, padding=(2, 0))))
            c_in = c_out
        self.convs = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv2d(c_in, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = wav.shape
        x = F.pad(wav, (0, (-t) % self.period), mode="reflect" if t > self.period else "constant")
        x = x.view(b, c, -1, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            fmaps.append(x)
        x = self.post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods=(2, 3, 5, 7, 11), channels=(32, 128, 512, 1024, 1024)):
        super().__init__()
        self.discs = nn.ModuleList(PeriodDiscriminator(p, list(channels)) for p in periods)

    def forward(self, wav: torch.Tensor) -> tuple[Logits, FeatureMaps]:
        outs = [d(wav) for d in self.discs]
        return [o[0] for o in outs], [o[1] for o in outs]


class ResolutionDiscriminator(nn.Module):
    """Scores a linear magnitude spectrogram at one STFT resolution (UnivNet)."""

    def __init__(self, n_fft: int, hop: int, channels: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        specs = [((7, 5), (2, 2)), ((5, 3), (2, 1)), ((5, 3), (2, 2)), ((3, 3), (1, 1))]
        layers, c_in = [], 1
        for kernel, stride in specs:
            pad = (kernel[0] // 2, kernel[1] // 2)
            layers.append(weight_norm(nn.Conv2d(c_in, channels, kernel, stride, padding=pad)))
            c_in = channels
        self.convs = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(
            wav[:, 0].float(), self.n_fft, self.hop, window=self.window, return_complex=True
        )
        x = spec.abs()[:, None]  # (B, 1, freq, frames)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            fmaps.append(x)
        x = self.post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiResolutionDiscriminator(nn.Module):
    def __init__(self, resolutions=((1024, 256), (2048, 512), (512, 128)), channels: int = 32):
        super().__init__()
        self.discs = nn.ModuleList(ResolutionDiscriminator(n, h, channels) for n, h in resolutions)

    def forward(self, wav: torch.Tensor) -> tuple[Logits, FeatureMaps]:
        outs = [d(wav) for d in self.discs]
        return [o[0] for o in outs], [o[1] for o in outs]


class MultiScaleSTFTDiscriminatorWrapper(nn.Module):
    """`encodec.msstftd.MultiScaleSTFTDiscriminator` with the same (logits, fmaps) interface."""

    def __init__(self, filters: int = 32):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.inner = MultiScaleSTFTDiscriminator(filters=filters)

    def forward(self, wav: torch.Tensor) -> tuple[Logits, FeatureMaps]:
        logits, fmaps = self.inner(wav)
        return [lg.flatten(1) for lg in logits], fmaps


FAMILIES = ("mpd", "mrd", "msstft")


class Discriminators(nn.Module):
    """The discriminator families (all three unless `families` names fewer); `forward` returns
    {family: (logits, fmaps)}."""

    def __init__(
        self,
        mpd_channels: list[int],
        mrd_channels: int,
        msstft_filters: int,
        families: tuple[str, ...] | list[str] = FAMILIES,
    ):
        super().__init__()
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown or not families:
            raise ValueError(f"discriminator families must be a non-empty subset of {FAMILIES}")
        build = {
            "mpd": lambda: MultiPeriodDiscriminator(channels=tuple(mpd_channels)),
            "mrd": lambda: MultiResolutionDiscriminator(channels=mrd_channels),
            "msstft": lambda: MultiScaleSTFTDiscriminatorWrapper(filters=msstft_filters),
        }
        self.families = nn.ModuleDict(
            {name: build[name]() for name in FAMILIES if name in families}
        )

    def forward(self, wav: torch.Tensor) -> dict[str, tuple[Logits, FeatureMaps]]:
        return {name: disc(wav) for name, disc in self.families.items()}
