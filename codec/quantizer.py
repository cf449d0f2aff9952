"""One-codebook vector quantizer: `encodec`'s EMA codebook plus usage statistics.

`encodec.quantization.core_vq.VectorQuantization` provides the projections in and out of the
lookup space and its codebook: k-means initialisation on the first training batch, EMA updates
and dead-code restart from the batch. This wrapper adds a per-channel standardisation in front
(optional), an optional F0 dimension in the searched vectors (codes that carry F0), the
commitment loss and straight-through estimator over them, a count of restarted codes, and
codebook-usage figures.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from encodec.quantization.core_vq import EuclideanCodebook, VectorQuantization
from torch import nn

from codec.config import QuantizerConfig


@dataclass
class QuantizerOutput:
    """`quantized` (B, D, F) latents after straight-through; `codes` (B, F) int64 ids;
    `commit_loss` scalar (already weighted); `dead_codes_restarted` codes restarted this call;
    `lookup` (B, codebook_dim, F) the vectors matched against the codebook (normalised and
    projected latents, before quantization)."""

    quantized: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    dead_codes_restarted: int
    lookup: torch.Tensor


@dataclass
class CodebookUsage:
    """How much of the codebook a set of codes uses."""

    codes_used: int
    codebook_size: int
    entropy_bits: float
    perplexity: float

    def as_dict(self) -> dict[str, float]:
        return {
            "codes_used": self.codes_used,
            "codebook_size": self.codebook_size,
            "entropy_bits": self.entropy_bits,
            "perplexity": self.perplexity,
        }


def codebook_usage(codes: torch.Tensor, codebook_size: int) -> CodebookUsage:
    """Distinct codes and unigram entropy (bits/token) of any tensor of token ids."""
    flat = codes.reshape(-1).long()
    if flat.numel() == 0:
        return CodebookUsage(0, codebook_size, 0.0, 1.0)
    counts = torch.bincount(flat, minlength=codebook_size).double()
    probs = counts[counts > 0] / flat.numel()
    entropy = float(-(probs * probs.log2()).sum())
    return CodebookUsage(int((counts > 0).sum()), codebook_size, entropy, math.pow(2.0, entropy))


def codebook_fingerprint(vectors: torch.Tensor) -> str:
    """(codebook_size, dim) code vectors -> 16 hex digits of the SHA-256 of their float32
    little-endian bytes: the identity of a token vocabulary, recorded in token files."""
    data = vectors.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4")
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]


class _EMACodebook(EuclideanCodebook):
    """`encodec`'s codebook with consistent EMA statistics after k-means init and restarts.

    The EMA step recomputes every row as `embed_avg / cluster_size`. encodec stores the k-means
    means (not sums) as `embed_avg`, so the first update shrank each code by about its cluster
    size, and a restart replaced only `embed`, so the same step undid it.
    """

    # encodec writes `embed` through `.data`, which torch's version counter does not see; these
    # writes outside the EMA step (which runs only in training) are counted here instead.
    rewrites = 0

    def init_embed_(self, data: torch.Tensor) -> None:
        if self.inited:
            return
        super().init_embed_(data)
        self.embed_avg.data.copy_(self.embed * self.cluster_size[:, None])
        self.rewrites += 1

    def replace_(self, samples: torch.Tensor, mask: torch.Tensor) -> None:
        self.rewrites += 1
        super().replace_(samples, mask)
        size = torch.full_like(self.cluster_size, float(self.threshold_ema_dead_code))
        self.cluster_size.data.copy_(torch.where(mask, size, self.cluster_size))
        fresh = self.embed * self.cluster_size[:, None]
        self.embed_avg.data.copy_(torch.where(mask[:, None], fresh, self.embed_avg))


class Quantizer(nn.Module):
    """(B, D, F) latents <-> (B, F) token ids in [0, codebook_size)."""

    def __init__(self, cfg: QuantizerConfig, dim: int) -> None:
        super().__init__()
        self.codebook_size = cfg.codebook_size
        # BatchNorm without affine terms: running per-channel stats, frozen at inference.
        self.pre_norm = nn.BatchNorm1d(dim, affine=False) if cfg.pre_norm else nn.Identity()
        self.vq = VectorQuantization(
            dim=dim,
            codebook_size=cfg.codebook_size,
            codebook_dim=cfg.codebook_dim,
            decay=cfg.decay,
            kmeans_init=True,
            kmeans_iters=cfg.kmeans_iters,
            threshold_ema_dead_code=cfg.dead_code_threshold,
            commitment_weight=cfg.commitment_weight,
        )
        self._codebook_id, self._codebook_id_key = "", None
        # With an F0 channel the codes live in the lookup space plus one F0 dimension.
        self.f0_scale = cfg.f0_scale
        old = self.vq._codebook
        self.vq._codebook = _EMACodebook(
            dim=old.embed.shape[1] + (1 if self.f0_scale else 0),
            codebook_size=cfg.codebook_size,
            kmeans_init=True,
            kmeans_iters=cfg.kmeans_iters,
            decay=cfg.decay,
            epsilon=old.epsilon,
            threshold_ema_dead_code=cfg.dead_code_threshold,
        )

    @property
    def initialised(self) -> bool:
        return bool(self.vq._codebook.inited.item())

    @property
    def codebook_id(self) -> str:
        """`codebook_fingerprint` of the code vectors (lookup space, plus F0 if carried).

        Kept until the codebook changes, since the service puts it in every answer: hashing
        (and on a GPU, copying) 4,096 codes per request would be wasted work. Recomputed in
        training mode, where the EMA step rewrites the codes unseen.
        """
        book = self.vq._codebook
        key = (book.embed.data_ptr(), book.embed._version, book.rewrites)
        if self.training or key != self._codebook_id_key:
            self._codebook_id = codebook_fingerprint(book.embed)
            self._codebook_id_key = key
        return self._codebook_id

    def search_space(self, latents: torch.Tensor, f0_channel: torch.Tensor | None):
        """(B, D, F) latents (+ (B, F) F0 channel) -> (lookup (B, F, codebook_dim), the vectors
        searched (B, F, codebook_dim [+ 1]))."""
        lookup = self.vq.project_in(self.pre_norm(latents.float()).transpose(1, 2))
        if not self.f0_scale:
            return lookup, lookup
        if f0_channel is None:
            raise ValueError("this quantizer's codes carry F0: pass the input's F0 channel")
        return lookup, torch.cat([lookup, f0_channel.float()[..., None]], -1)

    def forward(
        self, latents: torch.Tensor, f0_channel: torch.Tensor | None = None
    ) -> QuantizerOutput:
        """Training/eval pass: (B, D, F) latents (+ (B, F) F0 channel, `pitch.F0Channel`, when
        the codes carry F0) -> QuantizerOutput. Updates the codebook in training."""
        # Nearest-code search and EMA statistics stay in float32 under a bf16 autocast: bf16's
        # 8-bit mantissa would pick neighbours by rounding noise and bias the running sums.
        with torch.autocast(latents.device.type, enabled=False):
            codebook = self.vq._codebook
            restarted = 0
            if self.training and self.initialised and codebook.threshold_ema_dead_code > 0:
                # The same test encodec's expire_codes_ applies before it restarts codes.
                restarted = int((codebook.cluster_size < codebook.threshold_ema_dead_code).sum())
            lookup, x = self.search_space(latents, f0_channel)
            # encodec's VectorQuantization.forward, on the searched vectors: straight-through,
            # and a commitment loss on the lookup part only (the F0 channel has no gradient).
            quantize, codes = codebook(x)
            if self.training:
                quantize = x + (quantize - x).detach()
            loss = latents.new_zeros((), dtype=torch.float32)
            if self.training and self.vq.commitment_weight > 0:
                dims = lookup.shape[-1]
                commit = nn.functional.mse_loss(quantize[..., :dims].detach(), lookup)
                loss = loss + commit * self.vq.commitment_weight
            quantized = self._project_out(quantize)
        return QuantizerOutput(quantized, codes, loss, restarted, lookup.transpose(1, 2))

    def _project_out(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, F, codebook_dim [+ 1]) -> (B, D [+ 1], F): the F0 channel passes unchanged."""
        if not self.f0_scale:
            return self.vq.project_out(vectors).transpose(1, 2)
        out = self.vq.project_out(vectors[..., :-1])
        return torch.cat([out, vectors[..., -1:]], -1).transpose(1, 2)

    def encode(self, latents: torch.Tensor, f0_channel: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D, F) latents (+ (B, F) F0 channel when the codes carry F0) -> (B, F) int64 token
        ids (never touches the codebook). In float32 under any autocast, as in `forward`: a
        served bf16 or fp16 model picks the same codes."""
        with torch.autocast(latents.device.type, enabled=False):
            return self.vq._codebook.encode(self.search_space(latents, f0_channel)[1])

    def nearest(
        self, latents: torch.Tensor, f0_channel: torch.Tensor | None, k: int
    ) -> torch.Tensor:
        """(B, D, F) latents (+ (B, F) F0 channel) -> (B, F, k) ids of each frame's k nearest
        codes, nearest first (the first is `encode`'s choice but for exact ties)."""
        with torch.autocast(latents.device.type, enabled=False):
            vectors = self.search_space(latents, f0_channel)[1]
            book = self.vq._codebook.embed
            # encodec's distance (up to the frame's own norm, the same for every code).
            score = 2 * vectors @ book.t() - book.pow(2).sum(-1)
            return score.topk(min(k, book.shape[0]), dim=-1).indices

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, F) token ids -> (B, D', F) quantized latents fed to the decoder; when the codes
        carry F0, D' = D + 1 and the last channel is each code's F0 channel."""
        return self._project_out(self.vq._codebook.decode(codes))
