"""Streaming-aware building blocks of the Vocos-style decoder.

Every block has an offline `forward` (whole sequences, optional frame mask) and a `stream`
method that takes a chunk plus an explicit per-block state and returns only final frames.
Shapes use B batch, C channels, F frames, N = n_fft, H = hop (samples).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from codec.excitation import HarmonicSource, running_phase


def stream_span(
    x: torch.Tensor, buffer: torch.Tensor | None, left_pad: int, kernel: int, stride: int
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """A chunk (B, C, t) of a causal windowed analysis -> (the span (B, C, s) holding every
    window of `kernel` steps, `stride` apart, that is now complete, or None if none is; the new
    buffer). The buffer starts as `left_pad` zeros, exactly like offline causal padding, so the
    windows of all chunks are those of the whole padded input."""
    if buffer is None:
        buffer = x.new_zeros(x.shape[0], x.shape[1], left_pad)
    buf = torch.cat([buffer, x], dim=-1)
    n_out = (buf.shape[-1] - kernel) // stride + 1 if buf.shape[-1] >= kernel else 0
    if n_out <= 0:
        return None, buf
    return buf[..., : (n_out - 1) * stride + kernel], buf[..., n_out * stride :]


def stream_conv(
    conv: nn.Conv1d, x: torch.Tensor, buffer: torch.Tensor | None, left_pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal convolution over a chunk: (B, C_in, t) -> (B, C_out, t') plus the new buffer;
    the concatenated chunk outputs equal the offline output (see `stream_span`)."""
    kernel = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
    span, buf = stream_span(x, buffer, left_pad, kernel, conv.stride[0])
    if span is None:
        return x.new_zeros(x.shape[0], conv.out_channels, 0), buf
    return conv(span), buf


def frame_mask(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """(B,) valid lengths -> (B, 1, F) float mask, 1 on valid frames."""
    steps = torch.arange(n_frames, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).unsqueeze(1).float()


class PaddedConv1d(nn.Module):
    """Stride-1 conv with causal (left) or centred zero padding: (B, C_in, F) -> (B, C_out, F)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, causal: bool, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, groups=groups)
        self.causal = causal
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.kernel - 1
        left = total if self.causal else total // 2
        return self.conv(F.pad(x, (left, total - left)))

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        y, state["buf"] = stream_conv(self.conv, x, state.get("buf"), self.kernel - 1)
        return y


class ConvNeXtBlock(nn.Module):
    """Vocos ConvNeXt block: (B, C, F) -> (B, C, F)."""

    def __init__(self, dim: int, intermediate_dim: int, kernel: int, causal: bool):
        super().__init__()
        self.dwconv = PaddedConv1d(dim, dim, kernel, causal, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        # Layer scale as in Vocos: start each residual branch near zero.
        self.gamma = nn.Parameter(torch.full((dim,), 1.0 / 8))

    def _pointwise(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.transpose(1, 2))
        x = self.pwconv2(F.gelu(self.pwconv1(x)))
        return (self.gamma * x).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = x + self._pointwise(self.dwconv(x))
        return y if mask is None else y * mask

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return x + self._pointwise(self.dwconv.stream(x, state))


def local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    causal: bool,
    key_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Banded attention, (B, h, F, d) x3 -> (B, h, F, d), in O(F * window) time and memory.

    Causal: query t sees keys [t - window + 1, t]. Otherwise keys [t - window/2, t + window/2].
    `key_valid` (B, F) bool hides padded keys.
    """
    b, h, n, d = q.shape
    blk = window
    n_blocks = max(1, math.ceil(n / blk))
    pad = n_blocks * blk - n
    valid = key_valid if key_valid is not None else q.new_ones(b, n, dtype=torch.bool)
    q = F.pad(q, (0, 0, 0, pad)).view(b, h, n_blocks, blk, d)
    # Keys of block i come from blocks i-1, i and i+1: pad one block each side, then unfold.
    kp = F.pad(k, (0, 0, blk, blk + pad)).unfold(2, 3 * blk, blk)  # (B, h, nb, d, 3blk)
    vp = F.pad(v, (0, 0, blk, blk + pad)).unfold(2, 3 * blk, blk)
    validp = F.pad(valid, (blk, blk + pad), value=False).unfold(1, 3 * blk, blk)  # (B, nb, 3blk)
    rel = (
        torch.arange(3 * blk, device=q.device)[None, :]
        - blk
        - torch.arange(blk, device=q.device)[:, None]
    )
    if causal:
        band = (rel <= 0) & (rel > -window)
    else:
        band = rel.abs() <= window // 2
    allowed = band[None, None, :, :] & validp[:, :, None, :]  # (B, nb, blk, 3blk)
    out = F.scaled_dot_product_attention(
        q, kp.transpose(-1, -2), vp.transpose(-1, -2), attn_mask=allowed[:, None]
    )
    return out.reshape(b, h, n_blocks * blk, d)[:, :, :n]


class LocalAttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention over a bounded window: (B, C, F) -> (B, C, F)."""

    def __init__(self, dim: int, heads: int, window: int, causal: bool):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.heads = heads
        self.window = window
        self.causal = causal

    def _attend(self, h: torch.Tensor, key_valid: torch.Tensor | None) -> torch.Tensor:
        b, n, c = h.shape
        qkv = self.qkv(h).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = local_attention(qkv[0], qkv[1], qkv[2], self.window, self.causal, key_valid)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        key_valid = None if mask is None else mask[:, 0] > 0
        y = x + self._attend(self.norm(x.transpose(1, 2)), key_valid).transpose(1, 2)
        return y if mask is None else y * mask

    def stream(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        n_new = x.shape[-1]
        if n_new == 0:
            return x
        # Keep the last window-1 normalised inputs: queries need nothing older.
        h = torch.cat(
            [
                state.get("ctx", x.new_zeros(x.shape[0], 0, x.shape[1])),
                self.norm(x.transpose(1, 2)),
            ],
            dim=1,
        )
        state["ctx"] = h[:, -(self.window - 1) :] if self.window > 1 else h[:, :0]
        return x + self._attend(h, None)[:, -n_new:].transpose(1, 2)


def causal_synthesis_window(n_fft: int, hop: int) -> torch.Tensor:
    """(N,) window: a half-hop sine-squared rise, then exponential decay (time constant hop/2).

    Frame i is the only one that has seen samples [iH, (i+1)H). A Hann window would give it
    almost no weight there and leave those samples to older frames that must guess the future;
    this window makes frame i dominate its own hop, with short tails for a smooth crossfade.
    """
    rise = hop // 2
    n = torch.arange(n_fft, dtype=torch.float32)
    attack = torch.sin(0.5 * math.pi * (n + 0.5) / rise) ** 2
    decay = torch.exp(-(n - rise).clamp(min=0) / (hop / 2))
    return torch.where(n < rise, attack, decay)


class ISTFTHead(nn.Module):
    """(B, C, F) features -> (B, F * H) samples via predicted magnitude and phase.

    Causal: frame i is overlap-added at samples [iH, iH + N), so samples [iH, (i+1)H) are final
    once frame i is in, and it uses `causal_synthesis_window`. Non-causal: Hann windows, frames
    centred as in Vocos' "same" padding.

    phase "increment" (causal only): the head predicts each bin's phase advance since the previous
    frame, as an offset from the advance of a sinusoid at the bin's centre (2 pi k H / N), and the
    phases are the running sum. A steady harmonic then stays coherent across frames for free,
    which absolute per-frame phases (one guess per 13 ms hop) fail to learn on a small budget:
    their frame-to-frame jumps smear harmonics. The running phase is part of the stream state.
    """

    def __init__(
        self,
        dim: int,
        n_fft: int,
        hop: int,
        causal: bool,
        phase: str = "absolute",
        harmonic_source: HarmonicSource | None = None,
        noise_above_hz: float | None = None,
        sample_rate: int = 24000,
    ):
        super().__init__()
        if phase not in ("absolute", "increment"):
            raise ValueError(f"unknown phase mode {phase!r}")
        special = phase == "increment" or harmonic_source is not None
        if (special or noise_above_hz is not None) and not causal:
            raise ValueError(
                "phase 'increment', a harmonic source and noise_above_hz need a causal head"
            )
        self.n_fft, self.hop, self.causal, self.phase_mode = n_fft, hop, causal, phase
        # Bins from here up take fixed pseudo-random phases (see stream); None: all predicted.
        self.noise_bin = (
            None
            if noise_above_hz is None
            else min(math.ceil(noise_above_hz * n_fft / sample_rate), n_fft // 2 + 1)
        )
        self.source = harmonic_source
        self.out = nn.Linear(dim, n_fft + 2)
        window = (
            causal_synthesis_window(n_fft, hop)
            if causal
            else torch.hann_window(n_fft, periodic=True)
        )
        self.register_buffer("window", window, persistent=False)
        # Floor on the overlap-add envelope: avoids dividing by ~0 at the stream's first samples.
        self.env_floor = 0.1 * float((window**2).sum()) / hop
        self.noise_gain = self._noise_gain()

    def _integrate_phase(self, increment: torch.Tensor, state: dict) -> torch.Tensor:
        """(B, F, K) phase offsets -> (B, F, K) phases in [0, 2 pi), continuing `state`."""
        # Built here in float64 rather than kept as a buffer, which a cast to bf16 would round.
        bins = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64, device=increment.device)
        steps = increment.double() + (2 * math.pi * bins * self.hop / self.n_fft) % (2 * math.pi)
        return running_phase(steps, state).float()

    def _spectra(
        self, x: torch.Tensor, state: dict, f0: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, F) -> the head's own (B, F, N/2+1) spectra and the harmonic source's (or None)."""
        spec = self.out(x.transpose(1, 2)).float()
        log_mag, phase = spec.chunk(2, dim=-1)
        if self.phase_mode == "increment":
            phase = self._integrate_phase(phase, state)
        own = torch.polar(torch.exp(log_mag).clamp(max=1e2), phase)
        if self.source is None:
            return own, None
        return own, self.source(x, self.window, state.setdefault("source", {}), f0)

    def _to_frames(self, spectra: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft(spectra, n=self.n_fft, dim=-1) * self.window  # (B, F, N)

    def _overlap_add(
        self, frames: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = frames.shape
        length = (n - 1) * self.hop + self.n_fft
        fold = dict(output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop))
        win_sq = (self.window**2)[None, :, None].expand(1, self.n_fft, n)
        if mask is not None:
            # Padded frames must add neither signal nor envelope, as if they were absent.
            frames = frames * mask.transpose(1, 2)
            win_sq = win_sq * mask
        audio = F.fold(frames.transpose(1, 2), **fold).view(b, length)
        env = F.fold(win_sq, **fold).view(win_sq.shape[0], length)
        return audio, env

    def _noise_phases(self, first_frame: int, frames: int, device: torch.device) -> torch.Tensor:
        """(frames, N/2+1) phases in [0, 2 pi): an integer hash of (absolute frame, bin), so a
        stream cut anywhere gets the phases of one offline pass, and every run the same ones."""
        f = torch.arange(first_frame, first_frame + frames, dtype=torch.int64, device=device)
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.int64, device=device)
        h = (f[:, None] * 1103515245 + k[None, :] * 12345 + 0x9E3779B9) & 0xFFFFFFFF
        for _ in range(2):
            h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
        h = h ^ (h >> 16)
        return (h.double() * (2 * math.pi / 2**32)).float()

    def _noise_gain(self) -> float:
        """Gain that gives incoherent noise under sqrt(sum w^2) the mean level it has under
        sum(w^2): a head switched to random phases keeps its noise level on average."""
        n_frames = self.n_fft // self.hop + 2
        _, env = self._overlap_add(self.window.new_zeros(1, n_frames, self.n_fft))
        steady = env[0, (n_frames - 1) * self.hop : n_frames * self.hop]
        return float((1 / steady.clamp(min=self.env_floor)).mean().sqrt())

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, f0: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C, F) -> (B, F * H); `mask` (B, 1, F) drops padded frames (non-causal only:
        a causal frame never reaches samples before its own). `f0` (B, F) Hz overrides the
        harmonic source's predicted pitch (training only)."""
        if self.causal:
            return self.stream(x, {}, f0)
        n = x.shape[-1]
        # A non-causal head has neither a harmonic source nor running phases: its own spectra.
        own, _ = self._spectra(x, {}, None)
        audio, env = self._overlap_add(self._to_frames(own), mask)
        start = (self.n_fft - self.hop) // 2
        sl = slice(start, start + n * self.hop)
        return audio[:, sl] / env[:, sl].clamp(min=self.env_floor)

    def stream(self, x: torch.Tensor, state: dict, f0: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, f) new frames -> (B, f * H) final samples; `state` keeps the OLA tail (and
        the running phases)."""
        n = x.shape[-1]
        tail, done = self.n_fft - self.hop, n * self.hop
        if n == 0:
            return x.new_zeros(x.shape[0], 0)
        own, source = self._spectra(x, state, f0)
        noise = None
        if self.noise_bin is not None:
            # The network's absolute phases put its noise at the same place in every frame, a
            # buzz at the frame rate; above noise_bin it sets only magnitudes, and the phases
            # come from a fixed hash. Incoherent frames add in power, not amplitude, so their
            # sum is divided by sqrt(sum(w^2)), not sum(w^2), which would swing their level
            # ~10 dB within each hop with this window.
            first = state.get("frame", 0)
            state["frame"] = first + n
            phases = self._noise_phases(first, n, own.device)[..., self.noise_bin :]
            noise = torch.polar(own[..., self.noise_bin :].abs() * self.noise_gain, phases)
            noise = nn.functional.pad(noise, (self.noise_bin, 0))
            own = own.clone()
            own[..., self.noise_bin :] = 0
        spectra = own if source is None else own + source
        if noise is not None:
            # One overlap-add for both: the noise rides as extra batch rows, sharing the envelope.
            spectra = torch.cat([spectra, noise])
        audio, env = self._overlap_add(self._to_frames(spectra))
        batch = x.shape[0]
        if "audio" in state:
            audio[:batch, :tail] += state["audio"]
            if noise is not None:
                audio[batch:, :tail] += state["noise"]
            # The window envelope is the same for every item: (1, tail), never repeated.
            env[:, :tail] += state["env"]
        state["audio"], state["env"] = audio[:batch, done:], env[:, done:]
        norm = env[:, :done].clamp(min=self.env_floor)
        if noise is None:
            return audio[:, :done] / norm
        state["noise"] = audio[batch:, done:]
        return audio[:batch, :done] / norm + audio[batch:, :done] / norm.sqrt()
