"""SEANet encoder from the `encodec` package, run layer by layer so that it can stream.

`encodec.modules.SEANetEncoder` builds the layers and owns the weights; this module only walks
them, either offline (masking padded frames so batched output equals unbatched output) or
chunk by chunk with explicit state (causal models only).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from codec.config import EncoderConfig
from codec.layers import stream_conv

with warnings.catch_warnings():
    # encodec uses the legacy weight_norm, which warns on import of its users.
    warnings.simplefilter("ignore", FutureWarning)
    from encodec.modules import SLSTM, SConv1d, SEANetEncoder
    from encodec.modules.seanet import SEANetResnetBlock


@dataclass
class EncoderStreamState:
    """Everything a streaming encoder carries between chunks.

    `conv_buffers[i]` holds the not-yet-consumed input of the i-th convolution (left context);
    `lstm_states[i]` the (h, c) pair of the i-th LSTM.
    """

    conv_buffers: dict[int, torch.Tensor] = field(default_factory=dict)
    lstm_states: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def _conv_geometry(sconv: SConv1d) -> tuple[nn.Conv1d, int, int, int]:
    conv = sconv.conv.conv
    kernel = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
    stride = conv.stride[0]
    return conv, kernel, stride, kernel - stride


class Encoder(nn.Module):
    """(B, 1, T) samples, T a multiple of the hop -> (B, D, T / hop) latent frames."""

    def __init__(self, cfg: EncoderConfig, causal: bool) -> None:
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
        """(B, 1, t) new samples -> (B, D, f) frames that became final; updates `state`."""
        if not self.causal:
            raise RuntimeError("streaming needs a causal model")
        counter = iter(range(1_000_000))
        x = wav
        for layer in self.seanet.model:
            x = self._stream_layer(layer, x, state, counter)
        return x

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
    steps = torch.arange(x.shape[-1], device=x.device)
    return x * (steps[None, :] < lengths[:, None]).unsqueeze(1).to(x.dtype)
