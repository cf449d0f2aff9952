"""SEANet encoder from the `encodec` package, run layer by layer so that it can stream.

`encodec.modules.SEANetEncoder` builds the layers and owns the weights; this module only walks
them, either offline (masking padded frames so batched output equals unbatched output) or
chunk by chunk with explicit state (causal models only). An optional `SpectralBranch` adds
features from a long-window spectrum to SEANet's output, an optional `PitchBranch`
(codec/pitch.py) each frame's autocorrelation period, and an optional lookahead lets each
frame's latent also read the next few frames' (`EncoderConfig.lookahead`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from codec.config import EncoderConfig
from codec.layers import PaddedConv1d, frame_mask, stream_conv
from codec.pitch import PitchBranch, PitchStreamState

with warnings.catch_warnings():
    # encodec uses the legacy weight_norm, which warns on import of its users.
    warnings.simplefilter("ignore", FutureWarning)
    from encodec.modules import SLSTM, SConv1d, SEANetEncoder
    from encodec.modules.seanet import SEANetResnetBlock


@dataclass
class SpectralStreamState:
    """The spectral branch's left context: unconsumed samples and the mixing conv's frames."""

    analysis: torch.Tensor | None = None
    mix: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class EncoderStreamState:
    """Everything a streaming encoder carries between chunks.

    `conv_buffers[i]` holds the not-yet-consumed input of the i-th convolution (left context);
    `lstm_states[i]` the (h, c) pair of the i-th LSTM.
    """

    conv_buffers: dict[int, torch.Tensor] = field(default_factory=dict)
    lstm_states: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    branch: SpectralStreamState = field(default_factory=SpectralStreamState)
    pitch: PitchStreamState = field(default_factory=PitchStreamState)
    # With a lookahead: the last frames (B, D, <= lookahead), waiting for their future.
    held: torch.Tensor | None = None


def _conv_geometry(sconv: SConv1d) -> tuple[nn.Conv1d, int, int, int]:
    conv = sconv.conv.conv
    kernel = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
    stride = conv.stride[0]
    return conv, kernel, stride, kernel - stride


def _analysis_window(window: int, hop: int, causal: bool) -> torch.Tensor:
    """(window,) taper. Causal: rises over all but the last half hop and falls over that, so
    the frame's own hop weighs most (a Hann window would centre it 1.5 hops in the past)."""
    if not causal:
        return torch.hann_window(window, periodic=False, dtype=torch.float64)
    rise, fall = window - hop // 2, hop // 2
    up = torch.hann_window(2 * rise, periodic=False, dtype=torch.float64)[:rise]
    down = torch.hann_window(2 * fall, periodic=False, dtype=torch.float64)[fall:]
    return torch.cat([up, down])


class SpectralBranch(nn.Module):
    """(B, 1, T) samples -> (B, D, T / hop) features added to SEANet's output.

    A 4-hop window (1280 samples, 18.75 Hz bins at 24 kHz) resolves the harmonics of voices
    above ~60 Hz, which SEANet's early 8x downsampling to 16 channels cannot keep: pitch and
    formants are what the codec's tokens miss most. The analysis is a fixed windowed DFT at
    bins 1..K; its log magnitudes are normalised per frame and mixed over 3 frames, and the
    projection to D starts at zero, so a trained encoder grown with this branch starts out
    unchanged.
    """

    WINDOW_HOPS = 4

    def __init__(self, bins: int, dimension: int, hop: int, causal: bool, hidden: int = 256):
        super().__init__()
        window = self.WINDOW_HOPS * hop
        self.hop, self.window, self.causal = hop, window, causal
        self.analysis = nn.Conv1d(1, 2 * bins, window, stride=hop, bias=False)
        # Per-frame normalisation over bins: keeps the spectral shape (harmonics, formants),
        # drops the level, which SEANet already carries, and centres the mix's input.
        self.norm = nn.LayerNorm(bins)
        self.mix = PaddedConv1d(bins, hidden, 3, causal)
        self.project = nn.Conv1d(hidden, dimension, 1)
        taper = _analysis_window(window, hop, causal)
        angle = 2 * math.pi * torch.arange(1, bins + 1, dtype=torch.float64)[:, None]
        angle = angle * torch.arange(window, dtype=torch.float64)[None] / window
        # Unit gain for a full-scale sinusoid, so log magnitudes sit in a known range.
        basis = torch.cat([angle.cos(), angle.sin()]) * taper * (2 / taper.sum())
        # A fixed transform: Adam's steps (~lr each) would scramble weights this small (~1e-3),
        # and being rebuilt from the config, it need not be stored with the weights.
        del self.analysis.weight
        self.analysis.register_buffer("weight", basis[:, None].float(), persistent=False)
        with torch.no_grad():
            self.project.weight.zero_()
            self.project.bias.zero_()

    def _features(self, frames: torch.Tensor) -> torch.Tensor:
        return self.norm(self._log_magnitudes(frames).transpose(1, 2)).transpose(1, 2)

    def _log_magnitudes(self, frames: torch.Tensor) -> torch.Tensor:
        real, imag = frames.chunk(2, dim=1)
        return torch.log(torch.sqrt(real.square() + imag.square() + 1e-12) + 1e-4)

    def forward(self, wav: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, T) samples -> (B, D, T / hop); frames past `frame_lengths` are zeroed."""
        total = self.window - self.hop
        left = total if self.causal else total // 2
        feats = self._features(self.analysis(nn.functional.pad(wav, (left, total - left))))
        if frame_lengths is not None:
            feats = _mask(feats, frame_lengths)
        out = self.project(nn.functional.gelu(self.mix(feats)))
        return out if frame_lengths is None else _mask(out, frame_lengths)

    def stream(self, wav: torch.Tensor, state: SpectralStreamState) -> torch.Tensor:
        """(B, 1, t) new samples -> (B, D, f) frames that became final; updates `state`."""
        frames, state.analysis = stream_conv(
            self.analysis, wav, state.analysis, self.window - self.hop
        )
        if frames.shape[-1] == 0:
            return wav.new_zeros(wav.shape[0], self.project.out_channels, 0)
        mixed = self.mix.stream(self._features(frames), state.mix)
        return self.project(nn.functional.gelu(mixed))


class Encoder(nn.Module):
    """(B, 1, T) samples, T a multiple of the hop -> (B, D, T / hop) latent frames."""

    def __init__(self, cfg: EncoderConfig, causal: bool, sample_rate: int = 24000) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.seanet = SEANetEncoder(
                channels=1,
                dimension=cfg.dimension,
                n_filters=cfg.n_filters,
                n_residual_layers=cfg.n_residual_layers,
                ratios=list(cfg.ratios),
                causal=causal,
                # Zero padding keeps batch padding, offline padding and stream start identical.
                pad_mode="constant",
                true_skip=True,
                lstm=cfg.lstm_layers,
            )
        self.causal = causal
        self.hop_length = int(self.seanet.hop_length)
        self.spectral = (
            SpectralBranch(cfg.spectral_bins, cfg.dimension, self.hop_length, causal)
            if cfg.spectral_bins
            else None
        )
        self.pitch = (
            PitchBranch(cfg.dimension, self.hop_length, sample_rate, causal)
            if cfg.pitch_branch
            else None
        )
        self.lookahead = cfg.lookahead
        # Frames f+1..f+lookahead enter frame f's latent through a conv built as zero, so that a
        # lookahead added to a trained causal encoder starts as a no-op.
        self.future = (
            nn.Conv1d(cfg.dimension, cfg.dimension, cfg.lookahead, bias=False)
            if cfg.lookahead
            else None
        )
        if self.future is not None:
            nn.init.zeros_(self.future.weight)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, T) samples -> (B, D, T / hop); frames past `lengths` (in samples) are zeroed."""
        x = wav
        cur = lengths
        for layer in self.seanet.model:
            x = self._offline_layer(layer, x, cur)
            if isinstance(layer, SConv1d):
                stride = layer.conv.conv.stride[0]
                if cur is not None:
                    cur = torch.div(cur + stride - 1, stride, rounding_mode="floor")
                    x = _mask(x, cur)
            elif isinstance(layer, SLSTM) and cur is not None:
                # The LSTM turns zero padding into non-zero output, which the next (non-causal)
                # convolution would see as right context.
                x = _mask(x, cur)
        if self.spectral is not None:
            x = x + self.spectral(wav, cur)
        if self.pitch is not None:
            x = x + self.pitch(wav, cur)
        if self.future is not None:
            # Past the end (or an item's length: x is masked there) the future is zero.
            x = x + self.future(nn.functional.pad(x[..., 1:], (0, self.lookahead)))
        return x

    def _offline_layer(
        self, layer: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None
    ) -> torch.Tensor:
        if isinstance(layer, SEANetResnetBlock):
            y = x
            for sub in layer.block:
                y = sub(y)
                if isinstance(sub, SConv1d) and lengths is not None:
                    y = _mask(y, lengths)
            return layer.shortcut(x) + y
        return layer(x)

    def stream(self, wav: torch.Tensor, state: EncoderStreamState) -> torch.Tensor:
        """(B, 1, t) new samples -> (B, D, f) frames that became final; updates `state`.

        Without a lookahead a frame is final once its last sample has arrived; with one, once
        `lookahead` more frames have too (`stream_flush` ends the stream with a zero future).
        """
        if not self.causal:
            raise RuntimeError("streaming needs a causal model")
        counter = iter(range(1_000_000))
        x = wav
        for layer in self.seanet.model:
            x = self._stream_layer(layer, x, state, counter)
        if self.spectral is not None:
            # Both paths are causal convolutions whose left padding is kernel - stride, so each
            # emits a frame exactly when its last sample arrives: after t samples, t // hop.
            x = x + self.spectral.stream(wav, state.branch)
        if self.pitch is not None:
            # Its window also ends at the frame's last sample: frames arrive in step.
            x = x + self.pitch.stream(wav, state.pitch)
        if self.future is None:
            return x
        return self._stream_future(x, state)

    def stream_flush(self, state: EncoderStreamState) -> torch.Tensor | None:
        """(B, D, held) latents of the frames still waiting for their lookahead, computed with a
        zero future as offline encoding does at the end; None when nothing waits."""
        held = state.held
        if held is None:
            return None
        latents = self._stream_future(held.new_zeros(*held.shape[:2], self.lookahead), state)
        state.held = None
        return latents

    def _stream_future(self, x: torch.Tensor, state: EncoderStreamState) -> torch.Tensor:
        frames = x if state.held is None else torch.cat([state.held, x], -1)
        ready = max(0, frames.shape[-1] - self.lookahead)
        state.held = frames[..., ready:]
        if ready == 0:
            return frames[..., :0]
        return frames[..., :ready] + self.future(frames[..., 1 : ready + self.lookahead])

    def _stream_layer(
        self, layer: nn.Module, x: torch.Tensor, state: EncoderStreamState, counter
    ) -> torch.Tensor:
        if isinstance(layer, SConv1d):
            idx = next(counter)
            conv, _, _, left_pad = _conv_geometry(layer)
            y, state.conv_buffers[idx] = stream_conv(conv, x, state.conv_buffers.get(idx), left_pad)
            return y
        if isinstance(layer, SEANetResnetBlock):
            y = x
            for sub in layer.block:
                y = self._stream_layer(sub, y, state, counter)
            skip = self._stream_layer(layer.shortcut, x, state, counter)
            return skip + y
        if isinstance(layer, SLSTM):
            idx = next(counter)
            if x.shape[-1] == 0:
                return x
            seq = x.permute(2, 0, 1)
            out, state.lstm_states[idx] = layer.lstm(seq, state.lstm_states.get(idx))
            if layer.skip:
                out = out + seq
            return out.permute(1, 2, 0)
        return layer(x)


def _mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, C, T) zeroed past each item's (B,) length, in x's dtype."""
    return x * frame_mask(lengths, x.shape[-1]).to(x.dtype)
