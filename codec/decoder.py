"""Vocos-style decoder: quantized latents -> ConvNeXt/attention backbone -> inverse-STFT head."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from codec.config import DecoderConfig
from codec.excitation import HarmonicSource
from codec.layers import ConvNeXtBlock, ISTFTHead, LocalAttentionBlock, PaddedConv1d, frame_mask
from codec.pitch import F0Channel


@dataclass
class DecoderStreamState:
    """Per-block state of a streaming decoder, keyed by block name ("embed", "layer3", "head"),
    plus the latents a decoder with lookahead holds back."""

    blocks: dict[str, dict] = field(default_factory=dict)
    # With a lookahead: the last received latents (B, D, <= lookahead), waiting for their future.
    held: torch.Tensor | None = None

    def of(self, name: str) -> dict:
        return self.blocks.setdefault(name, {})

    def repeat_items(self, k: int) -> DecoderStreamState:
        """A copy with each of the B items' state repeated k times (item-major, B * k items):
        k continuations of one stream to try side by side."""
        return self._map_items(lambda t: t.repeat_interleave(k, dim=0))

    def select_items(self, index: torch.Tensor) -> DecoderStreamState:
        """(N,) int64 item indices -> a copy holding the state of items `index`, in that order
        (an item may appear several times): the survivors of a beam search."""
        return self._map_items(lambda t: t.index_select(0, index.to(t.device)))

    def _map_items(self, per_items) -> DecoderStreamState:
        # Every tensor is (B, ...) but the head's window envelope "env", which all items share.
        def copy(key: str, value):
            if isinstance(value, dict):
                return {name: copy(name, item) for name, item in value.items()}
            if torch.is_tensor(value) and key != "env":
                return per_items(value)
            return value.clone() if torch.is_tensor(value) else value

        held = None if self.held is None else per_items(self.held)
        return DecoderStreamState(copy("", self.blocks), held)


class Decoder(nn.Module):
    """(B, D, F) quantized latents -> (B, F * hop) samples. With `f0_channel` (codes that carry
    F0) the latents have one more channel, each code's F0, and frame f plays token f+1's, or
    with `code_f0` "smoothed" an average over tokens f..f+2 at the decoder's own voicing."""

    def __init__(
        self,
        cfg: DecoderConfig,
        latent_dim: int,
        hop: int,
        causal: bool,
        sample_rate: int = 24000,
        f0_channel: F0Channel | None = None,
    ) -> None:
        super().__init__()
        self.f0_channel = f0_channel
        self.smoothed_f0 = cfg.code_f0 == "smoothed"
        self.embed = PaddedConv1d(latent_dim, cfg.dim, cfg.kernel_size, causal)
        self.embed_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.lookahead = cfg.lookahead
        # Frames f+1..f+lookahead enter beside the causal embedding; built as zero so that a
        # lookahead added to a trained causal decoder starts as a no-op.
        self.embed_future = (
            nn.Conv1d(latent_dim, cfg.dim, cfg.lookahead, bias=False) if cfg.lookahead else None
        )
        if self.embed_future is not None:
            nn.init.zeros_(self.embed_future.weight)
        layers: list[nn.Module] = []
        for i in range(cfg.num_layers):
            layers.append(ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, cfg.kernel_size, causal))
            if i in cfg.attention_after:
                layers.append(
                    LocalAttentionBlock(cfg.dim, cfg.attention_heads, cfg.attention_window, causal)
                )
        self.layers = nn.ModuleList(layers)
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        n_fft = cfg.n_fft_hops * hop
        source = (
            HarmonicSource(cfg.dim, n_fft, hop, sample_rate)
            if cfg.excitation == "harmonic"
            else None
        )
        self.head = ISTFTHead(
            cfg.dim,
            n_fft,
            hop,
            causal,
            cfg.phase,
            source,
            cfg.noise_above_hz,
            sample_rate,
        )

    def _norm(self, norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        return norm(x.transpose(1, 2)).transpose(1, 2)

    def forward(
        self,
        latents: torch.Tensor,
        frame_lengths: torch.Tensor | None = None,
        f0: torch.Tensor | None = None,
        with_pitch: bool = False,
    ):
        """(B, D, F) latents -> (B, F * hop) samples. Frames past `frame_lengths` are ignored,
        so an item decodes the same alone as in a padded batch.

        `f0` (B, F) Hz drives the harmonic source instead of its own prediction (training:
        teacher forcing; codes that carry F0 give it here otherwise), and `with_pitch` also
        returns that prediction, (log F0 (B, F), voicing logits (B, F)).
        """
        mask = None if frame_lengths is None else frame_mask(frame_lengths, latents.shape[-1])
        from_codes = False
        if self.f0_channel is not None:
            latents, channel = latents[:, :-1], latents[:, -1]
            if f0 is None:
                unvoiced = self.f0_channel.unvoiced
                if mask is not None:
                    channel = channel.masked_fill(mask[:, 0] == 0, unvoiced)
                # Past the end the future is unvoiced, as `stream_flush` gives it.
                tokens = nn.functional.pad(channel, (0, 2), value=unvoiced)
                f0 = self.f0_channel.frame_hz(tokens, channel.shape[-1], self.smoothed_f0)
                from_codes = True
        if mask is not None:
            latents = latents * mask
        x = self.embed(latents)
        if self.embed_future is not None:
            # Past the end (or an item's length, masked above) the future is zero.
            future = nn.functional.pad(latents[..., 1:], (0, self.lookahead))
            x = x + self.embed_future(future)
        x = self._norm(self.embed_norm, x)
        if mask is not None:
            x = x * mask
        for layer in self.layers:
            x = layer(x, mask)
        x = self._norm(self.final_norm, x)
        if from_codes and self.smoothed_f0:
            f0 = self.head.source.f0_with_codes(x, f0)
        audio = self.head(x, mask, f0)
        if not with_pitch:
            return audio
        if self.head.source is None:
            raise ValueError("this decoder has no harmonic source to predict pitch")
        return audio, self.head.source.predict(x)

    def stream(self, latents: torch.Tensor, state: DecoderStreamState) -> torch.Tensor:
        """(B, D, f) new latents -> (B, f' * hop) final samples (causal models only).

        f' = f, except that with a lookahead the last `lookahead` frames received wait for
        their future (`stream_flush` ends the stream with a zero future, as offline decoding).
        """
        if self.embed_future is None:
            x = self.embed.stream(latents, state.of("embed"))
            return self._stream_embedded(x, state)
        frames = latents if state.held is None else torch.cat([state.held, latents], -1)
        ready = max(0, frames.shape[-1] - self.lookahead)
        state.held = frames[..., ready:]
        if ready == 0:
            return latents.new_zeros(latents.shape[0], 0)
        f0 = None
        if self.f0_channel is not None:
            f0 = self.f0_channel.frame_hz(frames[:, -1], ready, self.smoothed_f0)
            frames = frames[:, :-1]
        x = self.embed.stream(frames[..., :ready], state.of("embed"))
        x = x + self.embed_future(frames[..., 1 : ready + self.lookahead])
        return self._stream_embedded(x, state, f0)

    def end_latents(self, like: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, D, frames) latents for frames past the end, as offline decoding sees them: zero,
        and unvoiced in the F0 channel of codes that carry F0. `like`: (B, D, ...) latents."""
        future = like.new_zeros(*like.shape[:2], frames)
        if self.f0_channel is not None:
            future[:, -1] = self.f0_channel.unvoiced
        return future

    def stream_flush(self, state: DecoderStreamState) -> torch.Tensor | None:
        """(B, held * hop) samples of the frames still waiting for their lookahead, decoded
        with a zero future as offline decoding does; None when nothing waits."""
        held = state.held
        if held is None:
            return None
        audio = self.stream(self.end_latents(held, self.lookahead), state)
        state.held = None
        return audio

    def _stream_embedded(
        self, x: torch.Tensor, state: DecoderStreamState, f0: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self._norm(self.embed_norm, x)
        for i, layer in enumerate(self.layers):
            x = layer.stream(x, state.of(f"layer{i}"))
        x = self._norm(self.final_norm, x)
        if f0 is not None and self.smoothed_f0:
            f0 = self.head.source.f0_with_codes(x, f0)
        return self.head.stream(x, state.of("head"), f0)
