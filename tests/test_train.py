"""Training: a few steps of the tiny config with all discriminators, checkpoint, exact resume.

Growing a trained model (`--init-from`) is tested in test_growth.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from conftest import tiny_train_config as _cfg

from codec import precision
from codec.checkpoint import list_checkpoints, load_checkpoint
from codec.config import CodecConfig
from codec.data import prepare
from codec.model import Codec
from codec.train import Trainer
from codec.train_cli import export, with_total_steps
from codec.trainconfig import TrainConfig


def test_prepare_refuses_test_set(tmp_path):
    with pytest.raises(ValueError, match="held-out test set"):
        prepare([ROOT.parent / "shared/data/test/libritts_test_clean"], tmp_path)


def test_train_checkpoint_and_exact_resume(prepared, tmp_path):
    cfg = _cfg()
    full = Trainer(cfg, [prepared], tmp_path / "full", "cpu")
    logs = []
    for _ in range(cfg.steps):
        logs.append(full.train_step())
        if full.step == 3:
            full.save()
    assert all(math.isfinite(v) for entry in logs for v in entry.values())
    # Every family of discriminator contributed from step 1 (warmup_steps is 1 in this config).
    assert "loss/adversarial" in logs[-1] and logs[-1]["loss/discriminator"] > 0
    assert logs[-1]["loss/stft"] > 0
    assert set(full.discs.families) == {"mpd", "mrd", "msstft"}

    saved = list_checkpoints(tmp_path / "full")
    assert [p.name for p in saved] == ["step-00000003"]
    state = load_checkpoint(saved[0])

    resumed = Trainer(cfg, [prepared], tmp_path / "full", "cpu")
    assert resumed.resume_if_possible()
    assert resumed.step == 3
    for group in ("opt_g", "opt_d"):
        a = getattr(resumed, group).state_dict()["state"]
        b = state[group]["state"]
        assert a.keys() == b.keys()
        for k in a:
            for name, value in a[k].items():
                assert torch.equal(value, b[k][name]), (group, k, name)
    assert torch.equal(resumed.gen.get_state(), state["rng"]["data"])
    while resumed.step < cfg.steps:
        resumed.train_step()
    # The resumed run continues exactly where the uninterrupted one went.
    for (name, a), b in zip(
        full.codec.state_dict().items(), resumed.codec.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-5), name


def test_keep_last_and_export(prepared, tmp_path):
    cfg = _cfg()
    trainer = Trainer(cfg, [prepared], tmp_path / "run", "cpu")
    trainer.fit()
    names = [p.name for p in list_checkpoints(tmp_path / "run")]
    assert names == ["step-00000003", "step-00000006"]  # keep_last 2
    out = tmp_path / "models" / "my-model"
    export(tmp_path / "run", out)
    from codec.model import Codec

    codec = Codec.from_pretrained(out)
    assert codec.name == "my-model"
    assert not any(k.startswith("discs") for k in codec.state_dict())
    for (name, a), b in zip(
        trainer.codec.state_dict().items(), codec.state_dict().values(), strict=True
    ):
        assert torch.equal(a.cpu(), b), name
    summary = json.loads((out / "training.json").read_text())
    assert summary["step"] == cfg.steps and summary["audio_hours_seen"] >= 0

    # A new run can start from the exported model (how a later session continues it).
    again = Trainer(cfg, [prepared], tmp_path / "run2", "cpu")
    again.init_from(out)
    for (name, a), b in zip(
        codec.state_dict().items(), again.codec.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    other = cfg.model_copy(update={"model": "wavtok-tiny"})
    with pytest.raises(ValueError, match="architecture differs"):
        Trainer(other, [prepared], tmp_path / "run3", "cpu").init_from(out)


def test_lr_scale_sets_group_learning_rates(prepared, tmp_path):
    cfg = _cfg().model_copy(update={"lr_scale": {"decoder.head.": 5.0}})
    trainer = Trainer(cfg, [prepared], tmp_path / "run", "cpu")
    head = {id(p) for p in trainer.codec.decoder.head.parameters()}
    groups = trainer.opt_g.param_groups
    assert len(groups) == 2
    assert sum(len(g["params"]) for g in groups) == len(list(trainer.codec.parameters()))
    for group in groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1  # each group is all head or no head
        base = cfg.lr_generator * (5.0 if in_head.pop() else 1.0)
        assert group["initial_lr"] == pytest.approx(base)
    with pytest.raises(ValueError, match="match no model parameter: decoder.nothing"):
        Trainer(
            cfg.model_copy(update={"lr_scale": {"decoder.nothing": 2.0}}),
            [prepared],
            tmp_path / "bad",
            "cpu",
        )


def test_discriminator_families_subset(prepared, tmp_path):
    data = _cfg().model_dump()
    data["discriminators"]["families"] = ["mpd"]
    cfg = TrainConfig.model_validate(data)
    trainer = Trainer(cfg, [prepared], tmp_path / "mpd", "cpu")
    assert set(trainer.discs.families) == {"mpd"}
    trainer.train_step()  # step 0 is the generator-only warm-up (warmup_steps 1)
    logs = trainer.train_step()
    assert math.isfinite(logs["loss/adversarial"]) and logs["loss/discriminator"] > 0
    for bad in ([], ["mpd", "wavenet"]):
        data["discriminators"]["families"] = bad
        with pytest.raises(ValueError):
            TrainConfig.model_validate(data)


def record_training_dtype(dtypes: list[torch.dtype]):
    """A forward hook that records output dtypes of training passes only (not of the eval-mode
    passes that check bf16 before the first step)."""

    def hook(module: torch.nn.Module, _inputs, out: torch.Tensor) -> None:
        if module.training:
            dtypes.append(out.dtype)

    return hook


def test_cpu_bf16_autocast_trains_with_float32_weights_and_losses(prepared, tmp_path):
    trainer = Trainer(_cfg().model_copy(update={"cpu_bf16": True}), [prepared], tmp_path, "cpu")
    dtypes: list[torch.dtype] = []
    first_linear = next(
        m for m in trainer.codec.decoder.modules() if isinstance(m, torch.nn.Linear)
    )
    first_linear.register_forward_hook(record_training_dtype(dtypes))
    logs = [trainer.train_step() for _ in range(2)]  # the warm-up step, then an adversarial one
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    assert all(math.isfinite(v) for entry in logs for v in entry.values())
    assert logs[-1]["loss/discriminator"] > 0 and logs[-1]["loss/feature_matching"] > 0
    assert all(p.dtype == torch.float32 for p in trainer.codec.parameters())
    assert trainer.codec.quantizer.vq._codebook.embed.dtype == torch.float32


def test_bf16_that_gets_the_model_wrong_trains_in_float32_and_says_so(
    prepared, tmp_path, monkeypatch, capsys
):
    """A faulty bf16 kernel (seen on an AMX CPU: SEANet's first downsampling conv ~100% off)
    would wreck the weights within a few steps; the first step checks the model's output."""
    checked: list[float] = []

    def faulty(run, dtype, device):
        checked.append(float(run().abs().mean()))  # the model's real output, in eval mode
        return 1.0

    monkeypatch.setattr(precision, "autocast_error", faulty)
    trainer = Trainer(_cfg().model_copy(update={"cpu_bf16": True}), [prepared], tmp_path, "cpu")
    dtypes: list[torch.dtype] = []
    first_linear = next(
        m for m in trainer.codec.decoder.modules() if isinstance(m, torch.nn.Linear)
    )
    first_linear.register_forward_hook(record_training_dtype(dtypes))
    trainer.train_step()
    trainer.train_step()
    assert len(checked) == 1 and trainer.codec.training
    assert dtypes == [torch.float32, torch.float32] and trainer.mixed_precision is False
    assert "bf16 autocast is wrong for this model" in capsys.readouterr().out


@pytest.mark.parametrize(
    "path", sorted((ROOT / "codec/configs/train").glob("*.yaml")), ids=lambda p: p.stem
)
def test_shipped_training_configs_load(path: Path):
    cfg = TrainConfig.from_yaml(path)
    assert cfg.codec_config().sample_rate == 24000


def test_steps_override_keeps_a_generator_only_recipe_generator_only():
    generator_only = TrainConfig(steps=3000, warmup_steps=3000)
    for steps in (2000, 4000):
        cfg = with_total_steps(generator_only, steps)
        assert (cfg.steps, cfg.warmup_steps) == (steps, steps)
    adversarial = with_total_steps(TrainConfig(steps=3000, warmup_steps=500), 4000)
    assert (adversarial.steps, adversarial.warmup_steps) == (4000, 500)


def test_harmonic_source_trains_on_estimated_pitch(prepared, tmp_path):
    data = _cfg().model_dump()
    model = CodecConfig.named("wavtok-tiny-causal").model_dump()
    model["decoder"]["excitation"] = "harmonic"
    data.update(model=model, warmup_steps=10)
    trainer = Trainer(TrainConfig.model_validate(data), [prepared], tmp_path / "harm", "cpu")
    source = trainer.codec.decoder.head.source
    before = source.pitch.weight.detach().clone()
    logs = [trainer.train_step() for _ in range(2)]
    assert all(math.isfinite(entry["loss/pitch"]) and entry["loss/pitch"] > 0 for entry in logs)
    assert not torch.equal(before, source.pitch.weight)


def test_encoder_pitch_head_teaches_the_encoder_and_resumes(prepared, tmp_path):
    data = _cfg().model_dump()
    # The encoder pitch loss alone, so any change to the codec comes from it.
    data["losses"].update(mel=0.0, stft=0.0, commitment=0.0, encoder_pitch=1.0)
    data.update(
        warmup_steps=10, weight_decay=0.0, checkpoint_every=2, lr_scale={"latent_pitch.": 10.0}
    )
    cfg = TrainConfig.model_validate(data)
    trainer = Trainer(cfg, [prepared], tmp_path / "ep", "cpu")
    assert trainer.latent_pitch is not None
    head = {id(p) for p in trainer.latent_pitch.parameters()}
    (head_group,) = [g for g in trainer.opt_g.param_groups if id(g["params"][0]) in head]
    assert {id(p) for p in head_group["params"]} == head
    assert head_group["initial_lr"] == pytest.approx(10 * cfg.lr_generator)
    encoder_before = [p.detach().clone() for p in trainer.codec.encoder.parameters()]
    decoder_before = [p.detach().clone() for p in trainer.codec.decoder.parameters()]
    logs = [trainer.train_step() for _ in range(2)]
    assert all(math.isfinite(e["loss/encoder_pitch"]) and e["loss/encoder_pitch"] > 0 for e in logs)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(encoder_before, trainer.codec.encoder.parameters(), strict=True)
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(decoder_before, trainer.codec.decoder.parameters(), strict=True)
    )
    trainer.save()
    resumed = Trainer(cfg, [prepared], tmp_path / "ep", "cpu")
    assert resumed.resume_if_possible()
    for a, b in zip(
        trainer.latent_pitch.parameters(), resumed.latent_pitch.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    # The head is a training aid: exported models do not carry it.
    export(tmp_path / "ep", tmp_path / "exported")
    assert not any(
        "latent_pitch" in k for k in Codec.from_pretrained(tmp_path / "exported").state_dict()
    )


def test_envelope_loss_trains_and_needs_long_enough_segments(prepared, tmp_path):
    data = _cfg().model_dump()
    data["losses"]["envelope"] = 5.0
    with pytest.raises(ValueError, match="segment_seconds >= 0.4"):
        TrainConfig.model_validate(data)
    data.update(segment_seconds=0.5, warmup_steps=10)
    trainer = Trainer(TrainConfig.model_validate(data), [prepared], tmp_path / "env", "cpu")
    logs = trainer.train_step()
    assert 0 < logs["loss/envelope"] < 2


def _harmonic_trainer(prepared, out: Path, **update) -> Trainer:
    data = _cfg().model_dump()
    model = CodecConfig.named("wavtok-tiny-causal").model_dump()
    model["decoder"]["excitation"] = "harmonic"
    data.update(model=model, warmup_steps=10, **update)
    return Trainer(TrainConfig.model_validate(data), [prepared], out, "cpu")


def _source_teacher_forced(trainer: Trainer, steps: int) -> list[bool]:
    """Per step, whether the harmonic source was handed an F0 instead of predicting its own."""
    forced: list[bool] = []
    source = trainer.codec.decoder.head.source
    handle = source.register_forward_pre_hook(lambda _m, args: forced.append(args[3] is not None))
    for _ in range(steps):
        trainer.train_step()
    handle.remove()
    return forced


def test_teacher_f0_share_chooses_which_pitch_drives_the_source(prepared, tmp_path):
    assert _source_teacher_forced(_harmonic_trainer(prepared, tmp_path / "a"), 2) == [True] * 2
    own = _harmonic_trainer(prepared, tmp_path / "b", teacher_f0=0.0)
    assert _source_teacher_forced(own, 2) == [False] * 2
    mixed = _source_teacher_forced(_harmonic_trainer(prepared, tmp_path / "c", teacher_f0=0.5), 8)
    assert 0 < sum(mixed) < 8
    # Drawn from the seeded data generator, so a rerun (or a resume) draws the same.
    again = _harmonic_trainer(prepared, tmp_path / "d", teacher_f0=0.5)
    assert _source_teacher_forced(again, 8) == mixed
    with pytest.raises(ValueError):
        TrainConfig(teacher_f0=1.5)


@pytest.mark.parametrize("name", ["pesq", "stoi"])
def test_metric_proxy_losses_train(prepared, tmp_path, name):
    data = _cfg().model_dump()
    data["losses"][name] = 10.0
    with pytest.raises(ValueError, match="segment_seconds >= 0.4"):
        TrainConfig.model_validate(data)
    data.update(segment_seconds=0.5, warmup_steps=10)
    trainer = Trainer(TrainConfig.model_validate(data), [prepared], tmp_path / name, "cpu")
    logs = [trainer.train_step() for _ in range(2)]
    key = f"loss/{name}"
    assert all(math.isfinite(entry[key]) and entry[key] > 0 for entry in logs)
    assert key not in Trainer(_cfg(), [prepared], tmp_path / "off", "cpu").train_step()


def test_compressed_mel_loss_trains_beside_the_log_mel_loss(prepared, tmp_path):
    data = _cfg().model_dump()
    data["losses"]["mel_compressed"] = 10.0
    trainer = Trainer(TrainConfig.model_validate(data), [prepared], tmp_path / "cm", "cpu")
    logs = [trainer.train_step() for _ in range(2)]
    assert all(
        math.isfinite(e["loss/mel_compressed"]) and e["loss/mel_compressed"] > 0 for e in logs
    )
    assert all(e["loss/mel_compressed"] != e["loss/mel"] for e in logs)


def test_a_non_finite_gradient_skips_the_update(prepared, tmp_path):
    trainer = Trainer(_cfg(), [prepared], tmp_path / "nan", "cpu")
    real_mel_loss = trainer.mel_loss
    trainer.mel_loss = lambda fake, real: real_mel_loss(fake, real) + (fake * float("nan")).mean()
    before = [p.detach().clone() for p in trainer.codec.parameters()]
    logs = trainer.train_step()
    assert logs["nonfinite/skipped_updates"] == 1 and trainer.step == 1
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.codec.parameters(), strict=True))
    trainer.mel_loss = real_mel_loss
    trainer.train_step()
    after = list(trainer.codec.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
