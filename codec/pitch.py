"""Frame-level F0 estimation, the training target of the decoder's harmonic source.

Autocorrelation with window correction (Boersma 1993), vectorised over frames: good enough to
teach a decoder where the harmonics are, not a pitch tracker for analysis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

F0_MIN_HZ, F0_MAX_HZ = 60.0, 400.0


@torch.no_grad()
def estimate_f0(
    wav: torch.Tensor,
    sample_rate: int,
    hop: int,
    window: int = 1024,
    voicing_threshold: float = 0.45,
    silence_db: float = -45.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) samples -> F0 (B, F) in Hz and voiced (B, F) bool, F = ceil(T / hop).

    Frame f is analysed over `window` samples centred on its hop, [f hop, (f + 1) hop). Frames
    whose autocorrelation peak is below `voicing_threshold`, or whose level is `silence_db` or
    more under the loudest frame of the item, are unvoiced (F0 0).
    """
    wav = wav.float()
    total = wav.shape[-1]
    frames = -(-total // hop)
    pad_left = window // 2 - hop // 2
    padded = F.pad(wav, (pad_left, frames * hop - total + window - pad_left - hop))
    seg = padded.unfold(-1, window, hop)[:, :frames]  # (B, F, W)
    seg = seg - seg.mean(-1, keepdim=True)
    win = torch.hann_window(window, periodic=False, device=wav.device)
    n_fft = 2 * window
    r = torch.fft.irfft(torch.fft.rfft(seg * win, n_fft).abs() ** 2, n_fft)[..., :window]
    rw = torch.fft.irfft(torch.fft.rfft(win, n_fft).abs() ** 2, n_fft)[:window]
    nacf = (r / r[..., :1].clamp(min=1e-12)) / (rw / rw[0]).clamp(min=1e-3)
    lo, hi = int(sample_rate / F0_MAX_HZ), int(sample_rate / F0_MIN_HZ)
    band = nacf[..., lo : hi + 1]
    peak = band.amax(-1, keepdim=True)
    # Multiples of the period score about as high as the period: take the first lag that comes
    # within 10% of the best, then the top of that peak (up to 20% further out).
    lags = torch.arange(band.shape[-1], device=wav.device)
    first = (band >= 0.9 * peak).float().argmax(-1, keepdim=True)
    near = (lags >= first) & (lags <= (first + lo) * 1.2 - lo)
    peak, idx = band.masked_fill(~near, float("-inf")).max(-1)
    # Parabolic interpolation around the peak lag for sub-sample precision.
    i = (idx + lo).clamp(lo + 1, hi - 1)
    y0, y1, y2 = (nacf.gather(-1, (i + d)[..., None])[..., 0] for d in (-1, 0, 1))
    curvature = y0 - 2 * y1 + y2
    denom = curvature.where(curvature.abs() > 1e-9, torch.full_like(y1, -1e-9))
    lag = i + (0.5 * (y0 - y2) / denom).clamp(-0.5, 0.5)
    level = 10 * torch.log10(seg.pow(2).mean(-1) + 1e-10)
    loud = level > level.amax(-1, keepdim=True) + silence_db
    voiced = (peak > voicing_threshold) & loud
    f0 = torch.where(voiced, sample_rate / lag, torch.zeros_like(lag))
    return f0, voiced
