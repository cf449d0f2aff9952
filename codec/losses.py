"""Training losses: multi-resolution log-mel L1 (or loudness-compressed mel L1),
multi-resolution linear STFT, band-envelope correlation, differentiable PESQ and STOI proxies
(torch-pesq, torch-stoi), adversarial (hinge or least squares), feature matching and the
harmonic source's pitch loss.

Waveforms are (B, 1, T) or (B, T) samples at 24 kHz."""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import nn


class MultiResolutionMelLoss(nn.Module):
    """Mean L1 distance of mel spectrograms at several STFT sizes (torchaudio).

    By default the spectra are log10 mel magnitudes. With `compression` c, they are mel
    powers raised to c instead (the loudness-like compression of `codec.search`'s distance at
    c = 0.3), which weighs loud harmonics above quiet pauses and noise, as listeners do."""

    def __init__(
        self,
        sample_rate: int = 24000,
        n_ffts=(256, 512, 1024, 2048),
        n_mels=(32, 64, 128, 128),
        compression: float | None = None,
    ):
        super().__init__()
        self.compression = compression
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate,
                n_fft=n,
                hop_length=n // 4,
                n_mels=m,
                power=1.0 if compression is None else 2.0,
                center=True,
                f_min=0.0,
                f_max=sample_rate / 2,
            )
            for n, m in zip(n_ffts, n_mels, strict=True)
        )

    def _spectrum(self, mel: nn.Module, wav: torch.Tensor) -> torch.Tensor:
        if self.compression is None:
            return mel(wav).clamp(min=1e-5).log10()
        # The floor keeps the power law's gradient finite in digital silence.
        return mel(wav).clamp(min=1e-8) ** self.compression

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake, real = (
            fake.reshape(fake.shape[0], -1).float(),
            real.reshape(real.shape[0], -1).float(),
        )
        total = fake.new_zeros(())
        for mel in self.mels:
            total = total + (self._spectrum(mel, fake) - self._spectrum(mel, real)).abs().mean()
        return total / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1 on linear-frequency STFTs (Parallel WaveGAN).

    Mel bands above ~1 kHz are wider than a voice's harmonic spacing, so a mel loss alone lets
    energy smear between harmonics; linear bins at n_fft 2048 (11.7 Hz) resolve them.
    """

    def __init__(
        self,
        resolutions=((512, 128), (1024, 256), (2048, 512)),
        max_hz: float | None = None,
        sample_rate: int = 24000,
    ):
        """`max_hz` keeps only the bins up to that frequency (None: all), to weigh the
        low harmonics, whose levels and positions PESQ hears most, without the noise band."""
        super().__init__()
        self.resolutions = tuple(resolutions)
        self.max_hz, self.sample_rate = max_hz, sample_rate
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake, real = (
            fake.reshape(fake.shape[0], -1).float(),
            real.reshape(real.shape[0], -1).float(),
        )
        total = fake.new_zeros(())
        for n_fft, hop in self.resolutions:
            window = getattr(self, f"window_{n_fft}")
            mags = [
                torch.stft(x, n_fft, hop, window=window, return_complex=True).abs().clamp(min=1e-5)
                for x in (fake, real)
            ]
            if self.max_hz is not None:
                bins = int(self.max_hz * n_fft / self.sample_rate) + 1
                mags = [m[..., :bins, :] for m in mags]
            convergence = torch.linalg.vector_norm(mags[1] - mags[0]) / torch.linalg.vector_norm(
                mags[1]
            ).clamp(min=1e-5)
            log_mag = (mags[0].log() - mags[1].log()).abs().mean()
            total = total + convergence + log_mag
        return total / len(self.resolutions)


class BandEnvelopeLoss(nn.Module):
    """1 - correlation of third-octave band envelopes over ~400 ms windows, speech-weighted.

    A log-mel L1 weighs every band and frame alike, quiet ones included, and is met by a smooth
    average; intelligibility lives in how each band's energy rises and falls with the syllables
    (STOI's intermediate measure, which this follows: 13.3 ms frames, 30-frame windows, 1/3-octave
    bands from 150 Hz, here up to ~7.6 kHz, without STOI's clipping or its 10 kHz resampling).
    Windows more than `dynamic_range_db` below an item's loudest count for nothing, as in STOI.
    """

    def __init__(
        self,
        sample_rate: int = 24000,
        n_fft: int = 640,
        hop: int = 320,
        num_bands: int = 18,
        window_frames: int = 30,
        window_step: int = 3,
        dynamic_range_db: float = 40.0,
    ):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.window_frames, self.window_step = window_frames, window_step
        self.dynamic_range_db = dynamic_range_db
        freqs = torch.fft.rfftfreq(n_fft, 1 / sample_rate)
        centres = 150.0 * 2.0 ** (torch.arange(num_bands) / 3)
        low, high = centres * 2 ** (-1 / 6), centres * 2 ** (1 / 6)
        bands = ((freqs[None] >= low[:, None]) & (freqs[None] < high[:, None])).float()
        self.register_buffer("bands", bands, persistent=False)  # (num_bands, n_fft/2+1)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def envelopes(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, T) samples -> (B, bands, S, window_frames) band magnitudes in sliding windows."""
        power = torch.stft(wav, self.n_fft, self.hop, window=self.window, return_complex=True)
        power = power.real.square() + power.imag.square()
        env = (self.bands @ power + 1e-10).sqrt()
        if env.shape[-1] < self.window_frames:
            raise ValueError("segments are shorter than one envelope window (~400 ms)")
        return env.unfold(-1, self.window_frames, self.window_step)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) or (B, T) decoded and reference samples, T >= ~0.4 s -> scalar in [0, 2]."""
        fake, real = (
            fake.reshape(fake.shape[0], -1).float(),
            real.reshape(real.shape[0], -1).float(),
        )
        env_fake, env_real = self.envelopes(fake), self.envelopes(real)
        x = env_real - env_real.mean(-1, keepdim=True)
        y = env_fake - env_fake.mean(-1, keepdim=True)
        corr = (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1) + 1e-8)  # (B, bands, S)
        level = 10 * env_real.square().sum((1, 3)).clamp(min=1e-10).log10()  # (B, S)
        active = level > level.amax(-1, keepdim=True) - self.dynamic_range_db
        weight = active[:, None].float().expand_as(corr)
        return 1 - (corr * weight).sum() / weight.sum().clamp(min=1.0)


class _MetricProxyLoss(nn.Module):
    """The mean per-item score of a differentiable copy of an evaluation measure, over the
    items where the measure is defined (the others count for nothing)."""

    min_samples: int  # one analysis window at the input's rate
    window: str  # names that window in the error

    def defined(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(B, T), (B, T) -> (B,) bool: the measure is undefined for an all-silent reference."""
        return real.abs().amax(-1) > 1e-4

    def per_item(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(B', T), (B', T) samples -> (B',) scores, lower is better."""
        raise NotImplementedError

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) or (B, T) decoded and reference samples -> scalar."""
        fake, real = (
            fake.reshape(fake.shape[0], -1).float(),
            real.reshape(real.shape[0], -1).float(),
        )
        if fake.shape[-1] < self.min_samples:
            raise ValueError(f"segments are shorter than one {self.window}")
        scored = self.defined(fake, real)
        if not bool(scored.any()):
            return fake.sum() * 0.0
        return self.per_item(fake[scored], real[scored]).float().sum() / real.shape[0]


class PesqProxyLoss(_MetricProxyLoss):
    """torch-pesq's differentiable PESQ disturbance (ITU-T P.862 at 16 kHz) as a loss, >= 0.

    A log-mel L1 weighs every band and frame alike; PESQ judges loudness-compressed Bark bands
    with masking and a dead zone, punishes added energy (noise between harmonics, buzz) more
    than missing energy and sums the worst ~320 ms stretches hardest. This is torch-pesq's
    0.1 d_symm + 0.0309 d_asymm, the raw score before the MOS mapping (lower is better; it
    lacks P.862's time alignment, which a codec's aligned output does not need). It is a
    proxy of an evaluation measure, so a model trained with it must also be judged on
    measures it was not trained on (mel L1, DNSMOS).
    """

    window = "PESQ window (~340 ms)"

    def __init__(self, sample_rate: int = 24000):
        super().__init__()
        from torch_pesq import PesqLoss  # training only: the codec never needs it

        self.pesq = PesqLoss(1.0, sample_rate=sample_rate)
        # 20 frames of 256 samples at 16 kHz plus the 512-sample window, at `sample_rate`.
        self.min_samples = math.ceil((19 * 256 + 512) * sample_rate / 16000)

    def defined(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        # torch-pesq divides by zero, in the loss and its gradient, for an all-silent signal.
        return super().defined(fake, real) & (fake.abs().amax(-1) > 0)

    def per_item(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.pesq(real, fake)


class StoiProxyLoss(_MetricProxyLoss):
    """1 - torch-stoi's differentiable STOI (Taal et al. 2011: 10 kHz, third-octave band
    envelopes over 384 ms, clipped at -15 dB SDR, correlated; silent frames dropped), in [0, 2].

    The same measure as BandEnvelopeLoss, followed exactly instead of approximated: STOI's
    clipping and level normalisation and its frame dropping, at its own 10 kHz. A proxy of an
    evaluation measure, like PesqProxyLoss, with the same caveat.
    """

    window = "STOI window (~400 ms)"

    def __init__(self, sample_rate: int = 24000):
        super().__init__()
        from torch_stoi import NegSTOILoss  # training only: the codec never needs it

        self.neg_stoi = NegSTOILoss(sample_rate, use_vad=True)
        # 30 frames of 128 samples at 10 kHz plus the 256-sample window, at `sample_rate`.
        self.min_samples = math.ceil((29 * 128 + 256) * sample_rate / 10000)

    def per_item(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return 1 + self.neg_stoi(fake, real)


def discriminator_loss(
    real: list[torch.Tensor], fake: list[torch.Tensor], kind: str
) -> torch.Tensor:
    """Sum over sub-discriminators; `kind` is "hinge" or "lsgan". Summed in float32, as the
    scores may come out of a bf16 autocast."""
    total = real[0].new_zeros((), dtype=torch.float32)
    for r, f in zip(real, fake, strict=True):
        r, f = r.float(), f.float()
        if kind == "hinge":
            total = total + torch.relu(1 - r).mean() + torch.relu(1 + f).mean()
        else:
            total = total + ((r - 1) ** 2).mean() + (f**2).mean()
    return total


def generator_adv_loss(fake: list[torch.Tensor], kind: str) -> torch.Tensor:
    total = fake[0].new_zeros((), dtype=torch.float32)
    for f in (f.float() for f in fake):
        total = total + (torch.relu(1 - f).mean() if kind == "hinge" else ((f - 1) ** 2).mean())
    return total


def feature_matching_loss(
    real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]
) -> torch.Tensor:
    """Mean L1 between real (detached) and fake feature maps, averaged per sub-discriminator."""
    total = fake[0][0].new_zeros((), dtype=torch.float32)
    for r_maps, f_maps in zip(real, fake, strict=True):
        layer = sum(
            (r.detach() - f).abs().float().mean() for r, f in zip(r_maps, f_maps, strict=True)
        )
        total = total + layer / len(f_maps)
    return total


def pitch_loss(
    predicted: tuple[torch.Tensor, torch.Tensor], f0: torch.Tensor, voiced: torch.Tensor
) -> torch.Tensor:
    """Harmonic source: L1 on log F0 over voiced frames plus voicing cross-entropy.

    `predicted` is (log F0 (B, F), voicing logits (B, F)); `f0` (B, F) Hz and `voiced` (B, F)
    bool are the targets estimated from the input audio.
    """
    log_f0, logits = predicted
    n = min(log_f0.shape[1], f0.shape[1])
    log_f0, logits, f0, voiced = log_f0[:, :n], logits[:, :n], f0[:, :n], voiced[:, :n]
    voicing = torch.nn.functional.binary_cross_entropy_with_logits(logits, voiced.float())
    if not bool(voiced.any()):
        return voicing
    return (log_f0[voiced] - f0[voiced].log()).abs().mean() + voicing


class LatentPitchHead(nn.Module):
    """Training only: a linear read-out of F0 and voicing from the quantizer's lookup vectors.

    The decoder's pitch loss reaches the encoder only through the whole decoder and the VQ's
    straight-through path. Asking for pitch linearly from the vectors the codebook is matched
    against gives the encoder a direct target and makes pitch a direction that the nearest-code
    search preserves. (B, C, F) lookup vectors -> (log F0 (B, F), voicing logits (B, F)).
    """

    def __init__(self, dim: int, initial_f0_hz: float = 150.0) -> None:
        super().__init__()
        self.proj = nn.Conv1d(dim, 2, 1)
        with torch.no_grad():
            self.proj.bias.copy_(torch.tensor([math.log(initial_f0_hz), 0.0]))

    def forward(self, lookup: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.proj(lookup.float())
        return out[:, 0], out[:, 1]
