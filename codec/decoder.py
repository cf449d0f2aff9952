"""Vocos-style decoder: quantized latents -> ConvNeXt/attention backbone -> inverse-STFT head."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from codec.config import DecoderConfig
from codec.excitation import HarmonicSource
from codec.layers import ConvNeXtBlock, ISTFTHead, LocalAttentionBlock, PaddedConv1d, frame_mask


@dataclass
class DecoderStreamState:
    """Per-block state of a streaming decoder, keyed by block name ("embed", "block3", "head")."""

    blocks: dict[str, dict] = field(default_factory=dict)

    def of(self, name: str) -> dict:
        return self.blocks.setdefault(name, {})


class Decoder(nn.Module):
    """(B, D, F) quantized latents -> (B, F * hop) samples."""

    def __init__(
        self, cfg: DecoderConfig, latent_dim: int, hop: int, causal: bool, sample_rate: int = 24000
    ) -> None:
        super().__init__()
        self.embed = PaddedConv1d(latent_dim, cfg.dim, cfg.kernel_size, causal)
        self.embed_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
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
        self.head = ISTFTHead(cfg.dim, n_fft, hop, causal, cfg.phase, source)

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

        Training only: `f0` (B, F) Hz drives the harmonic source instead of its own prediction,
        and `with_pitch` also returns that prediction, (log F0 (B, F), voicing logits (B, F)).
        """
        mask = None if frame_lengths is None else frame_mask(frame_lengths, latents.shape[-1])
        if mask is not None:
            latents = latents * mask
        x = self._norm(self.embed_norm, self.embed(latents))
        if mask is not None:
            x = x * mask
        for layer in self.layers:
            x = layer(x, mask)
        x = self._norm(self.final_norm, x)
        audio = self.head(x, mask, f0)
        if not with_pitch:
            return audio
        if self.head.source is None:
            raise ValueError("this decoder has no harmonic source to predict pitch")
        return audio, self.head.source.predict(x)

    def stream(self, latents: torch.Tensor, state: DecoderStreamState) -> torch.Tensor:
        """(B, D, f) new latents -> (B, f * hop) final samples (causal models only)."""
        x = self._norm(self.embed_norm, self.embed.stream(latents, state.of("embed")))
        for i, layer in enumerate(self.layers):
            x = layer.stream(x, state.of(f"layer{i}"))
        return self.head.stream(self._norm(self.final_norm, x), state.of("head"))
