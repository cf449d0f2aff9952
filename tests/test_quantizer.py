"""EMA vector quantizer: k-means init, EMA updates, dead-code restarts, usage figures.

Codebook dim equals the latent dim and pre-norm is off, so the codebook lives in data space.
"""

import math

import pytest
import torch

from codec.config import QuantizerConfig
from codec.quantizer import Quantizer, codebook_usage

DIM = 4


def make_quantizer(size: int = 4, decay: float = 0.8, threshold: float = 0.5) -> Quantizer:
    torch.manual_seed(0)
    cfg = QuantizerConfig(
        codebook_size=size,
        codebook_dim=DIM,
        decay=decay,
        kmeans_iters=10,
        dead_code_threshold=threshold,
        pre_norm=False,
    )
    return Quantizer(cfg, DIM)


def clusters(centres: torch.Tensor, n: int = 256, seed: int = 0, noise: float = 0.01):
    """(1, D, n) latents drawn around `centres` (K, D), plus the (n, D) points themselves."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, centres.shape[0], (n,), generator=gen)
    points = centres[idx] + noise * torch.randn(n, DIM, generator=gen)
    return points.T[None].contiguous(), points


CENTRES = torch.tensor([[10.0, 0, 0, 0], [-10.0, 0, 0, 0]])


def book(q: Quantizer):
    return q.vq._codebook


def test_kmeans_init_on_first_training_batch():
    q = make_quantizer().train()
    assert not q.initialised
    assert book(q).embed.abs().sum() == 0  # nothing learned before the first batch
    latents, _ = clusters(CENTRES)
    out = q(latents)
    assert q.initialised
    assert out.codes.shape == (1, 256)
    # Every row is a centroid of data, at full scale (not shrunk by the first EMA step).
    dist = torch.cdist(book(q).embed, CENTRES).min(dim=1).values
    assert dist.max() < 0.1, dist
    # Both clusters are represented.
    assert torch.cdist(CENTRES, book(q).embed).min(dim=1).values.max() < 0.1


def test_ema_moves_codes_toward_data():
    q = make_quantizer(size=2).train()
    q(clusters(CENTRES)[0])
    shifted = CENTRES + torch.tensor([1.0, 1.0, 0, 0])
    before = torch.cdist(book(q).embed, shifted).min(dim=1).values
    for step in range(5):
        q(clusters(shifted, seed=step + 1)[0])
    after = torch.cdist(book(q).embed, shifted).min(dim=1).values
    assert (after < 0.5 * before).all(), (before, after)


def test_eval_mode_leaves_codebook_alone():
    q = make_quantizer().train()
    latents, _ = clusters(CENTRES)
    q(latents)
    q.eval()
    state = {k: v.clone() for k, v in q.state_dict().items()}
    out = q(latents + 3.0)
    q.encode(latents + 3.0)
    assert out.dead_codes_restarted == 0
    for key, value in q.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_dead_codes_restarted_from_batch():
    q = make_quantizer(size=8).train()
    q(clusters(CENTRES)[0])
    dead = torch.tensor([3, 5])
    book(q).cluster_size[dead] = 0.0
    old = book(q).embed.clone()
    far = torch.tensor([[0.0, 50.0, 0, 0]])
    latents, points = clusters(far, seed=9)
    out = q(latents)
    assert out.dead_codes_restarted == 2
    # Restarted rows now sit on batch vectors (and stay there after the same step's EMA).
    to_batch = torch.cdist(book(q).embed[dead], points).min(dim=1).values
    assert to_batch.max() < 1e-4, to_batch
    assert (book(q).cluster_size[dead] > 0).all()
    assert torch.cdist(old[dead], points).min() > 40
    # The batch now maps to restarted codes, and a second step keeps them near the data.
    assert set(q.encode(latents).unique().tolist()) <= set(range(8))
    q(clusters(far, seed=10)[0])
    assert torch.cdist(book(q).embed[dead], far).min(dim=1).values.max() < 1.0


def test_live_codes_not_restarted():
    q = make_quantizer(size=2, threshold=0.5).train()
    q(clusters(CENTRES)[0])
    out = q(clusters(CENTRES, seed=1)[0])
    assert out.dead_codes_restarted == 0


def test_training_output():
    q = make_quantizer().train()
    latents, _ = clusters(CENTRES)
    latents.requires_grad_(True)
    out = q(latents)
    assert out.quantized.shape == latents.shape
    assert out.commit_loss.dim() == 0 and out.commit_loss >= 0
    out.quantized.sum().backward()  # straight-through: gradients reach the input
    assert latents.grad is not None and latents.grad.abs().sum() > 0


def test_lookup_vectors_are_what_the_codebook_matches():
    torch.manual_seed(0)
    cfg = QuantizerConfig(codebook_size=8, codebook_dim=2, kmeans_iters=5, pre_norm=True)
    q = Quantizer(cfg, DIM).train()
    q(torch.randn(2, DIM, 64))  # k-means init
    q.eval()
    out = q(torch.randn(3, DIM, 9))
    assert out.lookup.shape == (3, 2, 9)
    embed = q.vq._codebook.embed  # (codebook_size, codebook_dim)
    distances = torch.cdist(out.lookup.transpose(1, 2), embed[None].expand(3, -1, -1))
    assert torch.equal(distances.argmin(-1), out.codes)


def test_encode_decode_shapes():
    q = make_quantizer(size=4).train()
    q(clusters(CENTRES)[0])
    q.eval()
    latents = torch.randn(3, DIM, 11)
    codes = q.encode(latents)
    assert codes.shape == (3, 11) and codes.dtype == torch.int64
    assert q.decode(codes).shape == (3, DIM, 11)


@pytest.mark.parametrize(
    ("codes", "size", "used", "bits"),
    [
        (torch.tensor([0, 1, 2, 3] * 5), 4, 4, 2.0),
        (torch.tensor([7] * 10), 16, 1, 0.0),
        (torch.tensor([[0, 1], [0, 1]]), 4096, 2, 1.0),
        (torch.tensor([0, 0, 0, 1]), 2, 2, -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))),
    ],
)
def test_codebook_usage(codes: torch.Tensor, size: int, used: int, bits: float):
    usage = codebook_usage(codes, size)
    assert usage.codes_used == used
    assert usage.codebook_size == size
    assert usage.entropy_bits == pytest.approx(bits, abs=1e-9)
    assert usage.perplexity == pytest.approx(2.0**bits)
    assert usage.as_dict()["codes_used"] == used


def test_codebook_usage_empty():
    usage = codebook_usage(torch.zeros(0, dtype=torch.long), 8)
    assert (usage.codes_used, usage.entropy_bits, usage.perplexity) == (0, 0.0, 1.0)


def test_code_search_is_float32_under_bf16_autocast():
    # Two codes 1 apart at 100: bf16 cannot tell which is nearer (its spacing there is 0.5, and
    # 64 in the squared distances), so a bf16 search would pick by rounding.
    q = make_quantizer(size=2).eval()
    codebook = q.vq._codebook
    codebook.embed.copy_(torch.tensor([[100.0, 0, 0, 0], [101.0, 0, 0, 0]]))
    codebook.inited.fill_(1)
    x = torch.zeros(1, DIM, 8)
    x[0, 0] = torch.tensor([100.3, 100.7, 100.4, 100.6, 100.45, 100.55, 100.2, 100.8])
    expected = torch.tensor([[0, 1, 0, 1, 0, 1, 0, 1]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(x)
        codes = q.encode(x)
    assert torch.equal(out.codes, expected) and torch.equal(codes, expected)
    assert out.quantized.dtype == torch.float32


def test_codebook_id_follows_every_change_of_the_codes():
    q = make_quantizer()
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 3.0]])
    q.eval()
    untrained = q.codebook_id
    book(q).init_embed_(clusters(centres)[1])  # writes via .data
    fitted = q.codebook_id
    assert fitted != untrained and q.codebook_id == fitted
    codes = book(q).embed.clone()
    with torch.no_grad():
        book(q).embed += 0.5
    assert q.codebook_id not in (untrained, fitted)
    q.load_state_dict({**q.state_dict(), "vq._codebook.embed": codes})
    assert q.codebook_id == fitted
    q.train()
    q(clusters(centres, seed=1)[0])  # the EMA step, also through .data
    assert q.codebook_id != fitted
