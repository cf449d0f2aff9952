"""Re-fitting a trained codec's codebook by k-means, e.g. to make its codes carry F0.

`with_f0_codes(source, f0_scale, segments)` returns the source model with codes that carry F0
(`quantizer.f0_scale`): every weight but the codebook is the source's, and the 4,096 codes are
fitted by k-means to the source's lookup vectors plus the F0 channel (`pitch.F0Channel`) of
the given speech. The bitrate stays the same; the decoder then plays each code's F0.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from codec.config import CodeF0
from codec.data import manifest_rows
from codec.model import Codec


def speech_segment_paths(manifest: Path, include_music: bool = False) -> list[Path]:
    """The audio files of a `manifest.jsonl`, without those whose source lies in a `music`
    folder unless `include_music`: F0 codes are fitted to speech."""
    rows = manifest_rows(manifest)
    keep = [r for r in rows if include_music or "music" not in Path(r["source"]).parts]
    return [manifest.parent / r["path"] for r in keep]


def nearest(x: torch.Tensor, centres: torch.Tensor, chunk: int = 20000) -> torch.Tensor:
    """(N, D) vectors, (K, D) centres -> (N,) index of each vector's nearest centre."""
    norms = centres.pow(2).sum(1)
    return torch.cat(
        [(norms - 2 * x[i : i + chunk] @ centres.T).argmin(1) for i in range(0, len(x), chunk)]
    )


def _plus_plus(x: torch.Tensor, k: int, gen: torch.Generator, pool: int) -> torch.Tensor:
    """k-means++ seeding on a random subset of `pool` vectors: (N, D) -> (k, D)."""
    pool_x = x[torch.randperm(len(x), generator=gen)[: max(k, pool)]]
    first = pool_x[int(torch.randint(len(pool_x), (1,), generator=gen))]
    centres, dist = [first], (pool_x - first).pow(2).sum(1)
    for _ in range(1, k):
        weights = dist if float(dist.sum()) > 0 else torch.ones_like(dist)
        chosen = pool_x[int(torch.multinomial(weights, 1, generator=gen))]
        centres.append(chosen)
        dist = torch.minimum(dist, (pool_x - chosen).pow(2).sum(1))
    return torch.stack(centres)


def kmeans(x: torch.Tensor, k: int, iters: int, seed: int = 0) -> torch.Tensor:
    """(N, D) vectors -> (k, D) centres: k-means++ seeds (from up to 5 k of the vectors), then
    `iters` Lloyd steps; an empty cluster restarts at a random vector."""
    if len(x) < k:
        raise ValueError(f"k-means needs at least {k} vectors, got {len(x)}")
    gen = torch.Generator().manual_seed(seed)
    centres = _plus_plus(x, k, gen, pool=5 * k)
    for _ in range(iters):
        assign = nearest(x, centres)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        spare = x[torch.randint(0, len(x), (k,), generator=gen)]
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], spare)
    return centres


@torch.inference_mode()
def search_vectors(codec: Codec, wav: torch.Tensor) -> torch.Tensor:
    """(T,) samples at the codec's rate -> (F, codebook_dim [+ 1]) the vectors its quantizer
    searches (lookup vectors, plus the F0 channel when its codes carry F0)."""
    hop = codec.hop_length
    wav = wav[: (wav.shape[-1] // hop) * hop].reshape(1, 1, -1).to(codec.device)
    return codec.quantizer.search_space(codec.encoder(wav), codec.f0_channel_of(wav))[1][0]


def with_f0_codes(
    source: Codec,
    f0_scale: float,
    segments: Iterable[torch.Tensor],
    iters: int = 15,
    code_f0: CodeF0 = "smoothed",
) -> Codec:
    """A copy of `source` (a harmonic model with a decoder lookahead) whose codes carry F0 at
    `f0_scale`, played by the `decoder.code_f0` rule `code_f0`, its codebook fitted to
    `segments` ((T,) samples of speech at its rate)."""
    data = source.config.model_dump()
    data["quantizer"]["f0_scale"] = f0_scale
    data["decoder"]["code_f0"] = code_f0
    codec = Codec.from_config(type(source.config).model_validate(data)).to(source.device)
    weights = {k: v for k, v in source.state_dict().items() if "_codebook." not in k}
    codec.load_state_dict(weights, strict=False)
    codec.eval()
    vectors = torch.cat([search_vectors(codec, wav) for wav in segments])
    book = codec.quantizer.vq._codebook
    centres = kmeans(vectors.float(), book.embed.shape[0], iters)
    counts = torch.bincount(nearest(vectors.float(), centres), minlength=len(centres)).float()
    # EMA statistics on the source's scale (its codes' mean cluster size), so that dead-code
    # restarts behave as they did when training resumes.
    old = source.quantizer.vq._codebook.cluster_size
    sizes = counts / counts.mean() * old.mean()
    with torch.no_grad():
        book.embed.copy_(centres)
        book.cluster_size.copy_(sizes)
        book.embed_avg.copy_(centres * sizes[:, None])
        book.inited.fill_(True)
    return codec
