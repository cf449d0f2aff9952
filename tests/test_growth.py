"""`--init-from` growth (`codec.growth`): a trained model grown by decoder blocks, a spectral or
pitch branch, or a decoder or encoder lookahead starts as a no-op, decoding as the source did."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_train_config as _cfg

from codec.train import Trainer


def test_init_from_grows_the_decoder_as_identity(prepared, tmp_path):
    """A deeper decoder starts from a trained model and decodes exactly as it does."""
    cfg = _cfg()
    source = Trainer(cfg, [prepared], tmp_path / "run", "cpu")
    with torch.no_grad():
        for block in source.codec.decoder.layers:
            if hasattr(block, "gamma"):
                block.gamma.fill_(0.3)  # trained blocks are not the identity
    source.codec.save_pretrained(tmp_path / "src")
    small = source.codec.config
    deep = small.model_copy(
        update={
            "decoder": small.decoder.model_copy(update={"num_layers": small.decoder.num_layers + 2})
        }
    )
    grown = Trainer(cfg.model_copy(update={"model": deep}), [prepared], tmp_path / "g", "cpu")
    grown.init_from(tmp_path / "src")
    assert len(grown.codec.decoder.layers) == len(source.codec.decoder.layers) + 2
    wav = torch.randn(1, 1, 4800) * 0.1
    src = source.codec.eval()
    codes, _ = src.encode(wav)
    assert torch.equal(grown.codec.eval().encode(wav)[0], codes)
    assert torch.allclose(grown.codec.decode(codes)[0], src.decode(codes)[0], atol=1e-6)

    # Any other difference (here, attention moved into the added blocks) is refused.
    moved = deep.model_copy(
        update={
            "decoder": deep.decoder.model_copy(
                update={"attention_after": [0, small.decoder.num_layers]}
            )
        }
    )
    with pytest.raises(ValueError, match="architecture differs"):
        Trainer(
            cfg.model_copy(update={"model": moved}), [prepared], tmp_path / "m", "cpu"
        ).init_from(tmp_path / "src")


def test_init_from_noise_phase_head_loads_every_weight(prepared, tmp_path):
    """A model that differs only in `decoder.noise_above_hz` starts from the source's weights."""
    cfg = _cfg()
    source = Trainer(cfg, [prepared], tmp_path / "run", "cpu")  # the tiny config is causal
    plain = source.codec.config
    source.codec.save_pretrained(tmp_path / "src")
    noisy = plain.model_copy(
        update={"decoder": plain.decoder.model_copy(update={"noise_above_hz": 4000.0})}
    )
    target = Trainer(cfg.model_copy(update={"model": noisy}), [prepared], tmp_path / "e", "cpu")
    target.init_from(tmp_path / "src")
    assert target.codec.decoder.head.noise_bin is not None
    for (name, a), b in zip(
        source.codec.state_dict().items(), target.codec.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_init_from_adds_a_spectral_branch_as_a_no_op(prepared, tmp_path):
    """An encoder grown with a spectral branch gives the source's codes until it trains."""
    cfg = _cfg()
    source = Trainer(cfg, [prepared], tmp_path / "run", "cpu")
    source.codec.save_pretrained(tmp_path / "src")
    plain = source.codec.config
    spectral = plain.model_copy(
        update={"encoder": plain.encoder.model_copy(update={"spectral_bins": 16})}
    )
    grown = Trainer(cfg.model_copy(update={"model": spectral}), [prepared], tmp_path / "g", "cpu")
    grown.init_from(tmp_path / "src")
    wav = torch.randn(1, 1, 4800) * 0.1
    src = source.codec.eval()
    assert torch.equal(grown.codec.eval().encoder(wav), src.encoder(wav))
    # The reverse (dropping a trained branch) is refused.
    grown.codec.save_pretrained(tmp_path / "spectral")
    with pytest.raises(ValueError, match="architecture differs"):
        Trainer(cfg, [prepared], tmp_path / "back", "cpu").init_from(tmp_path / "spectral")


def test_init_from_adds_a_pitch_branch_as_a_no_op(prepared, tmp_path, capsys):
    cfg = _cfg()
    source = Trainer(cfg, [prepared], tmp_path / "run", "cpu")
    source.codec.save_pretrained(tmp_path / "src")
    plain = source.codec.config
    encoder = plain.encoder.model_copy(update={"pitch_branch": True})
    pitched = plain.model_copy(update={"encoder": encoder})
    grown = Trainer(cfg.model_copy(update={"model": pitched}), [prepared], tmp_path / "g", "cpu")
    grown.init_from(tmp_path / "src")
    assert "+pitch branch, no-ops at start" in capsys.readouterr().out
    wav = torch.randn(1, 1, 4800) * 0.1
    assert torch.equal(grown.codec.eval().encoder(wav), source.codec.eval().encoder(wav))
    grown.codec.save_pretrained(tmp_path / "pitched")
    with pytest.raises(ValueError, match="architecture differs"):
        Trainer(cfg, [prepared], tmp_path / "back", "cpu").init_from(tmp_path / "pitched")


def test_init_from_adds_a_decoder_lookahead_as_a_no_op(prepared, tmp_path):
    """A decoder grown with a lookahead decodes as the strictly causal source until it trains."""
    cfg = _cfg()
    source = Trainer(cfg, [prepared], tmp_path / "run", "cpu")
    source.codec.save_pretrained(tmp_path / "src")
    plain = source.codec.config
    ahead = plain.model_copy(update={"decoder": plain.decoder.model_copy(update={"lookahead": 1})})
    grown = Trainer(cfg.model_copy(update={"model": ahead}), [prepared], tmp_path / "g", "cpu")
    grown.init_from(tmp_path / "src")
    codes = torch.randint(0, plain.quantizer.codebook_size, (2, 12))
    src = source.codec.eval()
    assert torch.equal(grown.codec.eval().decode(codes)[0], src.decode(codes)[0])
    # A trained lookahead grows by farther frames, again as a no-op; it cannot shrink.
    with torch.no_grad():
        grown.codec.decoder.embed_future.weight.normal_(0, 0.5)  # as after training
    grown.codec.save_pretrained(tmp_path / "ahead")
    farther = ahead.model_copy(
        update={"decoder": ahead.decoder.model_copy(update={"lookahead": 3})}
    )
    grown3 = Trainer(cfg.model_copy(update={"model": farther}), [prepared], tmp_path / "g3", "cpu")
    grown3.init_from(tmp_path / "ahead")
    trained = grown.codec.eval().decode(codes)[0]
    assert not torch.equal(trained, src.decode(codes)[0])
    # (Not bit-equal: a longer kernel may sum in another order.)
    assert torch.allclose(grown3.codec.eval().decode(codes)[0], trained, atol=1e-6)
    with pytest.raises(ValueError, match="architecture differs"):
        Trainer(cfg, [prepared], tmp_path / "x", "cpu").init_from(tmp_path / "ahead")


def test_init_from_adds_an_encoder_lookahead_as_a_no_op(prepared, tmp_path, capsys):
    """An encoder grown with a lookahead encodes as the strictly causal source until it trains,
    and a trained one grows by farther frames the same way; it cannot shrink."""
    cfg = _cfg()
    source = Trainer(cfg, [prepared], tmp_path / "run", "cpu")
    source.codec.save_pretrained(tmp_path / "src")
    plain = source.codec.config

    def with_lookahead(frames: int):
        encoder = plain.encoder.model_copy(update={"lookahead": frames})
        return cfg.model_copy(update={"model": plain.model_copy(update={"encoder": encoder})})

    grown = Trainer(with_lookahead(1), [prepared], tmp_path / "g", "cpu")
    grown.init_from(tmp_path / "src")
    assert "+1 encoder lookahead frames, no-ops at start" in capsys.readouterr().out
    wav = torch.randn(1, 1, 4800) * 0.1
    src = source.codec.eval()
    assert torch.equal(grown.codec.eval().encoder(wav), src.encoder(wav))
    with torch.no_grad():
        grown.codec.encoder.future.weight.normal_(0, 0.5)  # as after training
    grown.codec.save_pretrained(tmp_path / "ahead")
    grown3 = Trainer(with_lookahead(3), [prepared], tmp_path / "g3", "cpu")
    grown3.init_from(tmp_path / "ahead")
    trained = grown.codec.eval().encoder(wav)
    assert not torch.equal(trained, src.encoder(wav))
    # (Not bit-equal: a longer kernel may sum in another order.)
    assert torch.allclose(grown3.codec.eval().encoder(wav), trained, atol=1e-6)
    with pytest.raises(ValueError, match="architecture differs"):
        Trainer(cfg, [prepared], tmp_path / "x", "cpu").init_from(tmp_path / "ahead")


def test_init_from_widens_the_decoder_hidden_layers_as_a_no_op(prepared, tmp_path, capsys):
    """Wider ConvNeXt hidden layers keep the source's units and decode as it does; the added
    units have zero output weights but train (their gradients are not zero); they cannot
    shrink back."""
    cfg = _cfg()
    source = Trainer(cfg, [prepared], tmp_path / "run", "cpu")
    source.codec.save_pretrained(tmp_path / "src")
    plain = source.codec.config
    units = plain.decoder.intermediate_dim
    wide = plain.model_copy(
        update={"decoder": plain.decoder.model_copy(update={"intermediate_dim": 2 * units})}
    )
    grown = Trainer(cfg.model_copy(update={"model": wide}), [prepared], tmp_path / "g", "cpu")
    grown.init_from(tmp_path / "src")
    assert f"+{units} hidden units per block" in capsys.readouterr().out
    block, source_block = grown.codec.decoder.layers[0], source.codec.decoder.layers[0]
    assert block.pwconv1.weight.shape[0] == 2 * units
    assert torch.equal(block.pwconv1.weight[:units], source_block.pwconv1.weight)
    assert block.pwconv2.weight[:, units:].abs().sum() == 0
    assert block.pwconv1.weight[units:].abs().sum() > 0
    codes = torch.randint(0, plain.quantizer.codebook_size, (2, 12))
    src = source.codec.eval()
    decoded = grown.codec.eval().decode(codes)[0]
    assert torch.allclose(decoded, src.decode(codes)[0], atol=1e-6)
    block(torch.randn(2, plain.decoder.dim, 6)).square().mean().backward()
    assert block.pwconv2.weight.grad[:, units:].abs().sum() > 0
    grown.codec.save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match="architecture differs"):
        Trainer(cfg, [prepared], tmp_path / "x", "cpu").init_from(tmp_path / "wide")
