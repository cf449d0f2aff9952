"""Search distillation (`codec.distill`): labels from the search, an encoder that learns them."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import speechlike

from codec import Codec
from codec.cli import main
from codec.data import prepare
from codec.distill import DistillConfig, distill_encoder, label_data, load_labels, nearest_accuracy
from codec.search import SearchSettings, search_encode

SETTINGS = SearchSettings(candidates=6, ahead=2, span=3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `wavtok data prepare` folder of 10 one-second speech-like segments."""
    raw = tmp_path_factory.mktemp("raw")
    for i in range(10):
        sf.write(raw / f"clip{i:02d}.wav", speechlike(24000, seed=100 + i).numpy(), 24000)
    out = tmp_path_factory.mktemp("prepared")
    prepare([raw], out)
    return out


@pytest.fixture(scope="module")
def labels_dir(tmp_path_factory, prepared: Path, tiny_causal: Codec) -> Path:
    out = tmp_path_factory.mktemp("labels")
    label_data(tiny_causal, prepared, out, SETTINGS, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def shipped() -> Codec:
    """The default model: an untrained encoder's output barely varies from frame to frame, so
    its nearest codes differ by rounding and there is nothing to learn (see prime_codebook)."""
    return Codec.from_pretrained("wavtok-cpu-75hz-causal")


@pytest.fixture(scope="module")
def shipped_labels(tmp_path_factory, prepared: Path, shipped: Codec) -> Path:
    out = tmp_path_factory.mktemp("shipped-labels")
    settings = SearchSettings(candidates=4, ahead=2 + shipped.decoder.lookahead, span=3)
    label_data(shipped, prepared, out, settings, log=lambda _: None)
    return out


def _small(**update) -> DistillConfig:
    base = dict(steps=30, lr=1e-4, batch_size=4, crop_frames=40, warm_frames=4, held_out=2)
    return DistillConfig(**{**base, **update})


def test_labels_are_the_searched_tokens_of_each_segment(prepared, labels_dir, tiny_causal):
    labels, info = load_labels(labels_dir)
    assert len(labels) == 10 and info["codebook_id"] == tiny_causal.codebook_id
    name = sorted(labels)[3]
    wav = torch.from_numpy(sf.read(prepared / name, dtype="float32")[0])
    searched, _ = search_encode(tiny_causal, wav[None, None], None, SETTINGS)
    nearest, _ = tiny_causal.encode(wav[None, None])
    assert torch.equal(labels[name], searched[0])
    assert not torch.equal(labels[name], nearest[0])  # else the labels would teach nothing


def test_labelling_resumes_and_refuses_other_settings(tmp_path, prepared, tiny_causal):
    lines: list[str] = []
    assert label_data(tiny_causal, prepared, tmp_path, SETTINGS, 3, lines.append) == 3
    first = load_labels(tmp_path)[0]
    assert label_data(tiny_causal, prepared, tmp_path, SETTINGS, 5, lines.append) == 5
    again = load_labels(tmp_path)[0]
    assert all(torch.equal(again[k], v) for k, v in first.items())
    assert lines[-1].endswith("(2/2 of this run)")  # the first three were not searched again
    other = SearchSettings(candidates=4, ahead=2, span=3)
    with pytest.raises(ValueError, match="holds labels of"):
        label_data(tiny_causal, prepared, tmp_path, other, 6)


def test_distillation_teaches_the_encoder_the_searched_codes(
    tmp_path, prepared, shipped_labels, shipped
):
    """Only the encoder changes, and its nearest codes move towards the labels."""
    model = copy.deepcopy(shipped)
    labels = load_labels(shipped_labels)[0]
    segments = {
        n: torch.from_numpy(sf.read(prepared / n, dtype="float32")[0]) for n in sorted(labels)
    }
    before = nearest_accuracy(model, segments, labels)
    run = tmp_path / "run"
    result = distill_encoder(model, prepared, shipped_labels, _small(), run, lambda _: 0)
    after = nearest_accuracy(model, segments, labels)
    assert result["step"] == 30
    assert after > before + 0.1, (before, after)
    assert model.codebook_id == shipped.codebook_id
    old, new = shipped.state_dict(), model.state_dict()
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert changed and all(k.startswith("encoder.") for k in changed)


def test_distillation_resumes_where_it_stopped(tmp_path, prepared, labels_dir, tiny_causal):
    """Stopped at step 4 and resumed to 8, the encoder equals an uninterrupted 8-step run's."""
    whole = copy.deepcopy(tiny_causal)
    distill_encoder(whole, prepared, labels_dir, _small(steps=8), tmp_path / "a", lambda _: 0)
    part = copy.deepcopy(tiny_causal)
    cfg = _small(steps=8, checkpoint_every=4)
    calls = iter(range(100))
    stop_after_four = lambda: next(calls) >= 4  # noqa: E731
    result = distill_encoder(part, prepared, labels_dir, cfg, tmp_path / "b", lambda _: 0,
                             stop_after_four)  # fmt: skip
    assert result["step"] == 4
    resumed = copy.deepcopy(tiny_causal)
    lines: list[str] = []
    distill_encoder(resumed, prepared, labels_dir, cfg, tmp_path / "b", lines.append)
    assert any("at step 4" in line for line in lines)
    for key, value in whole.encoder.state_dict().items():
        torch.testing.assert_close(resumed.encoder.state_dict()[key], value)


def test_labels_of_another_codebook_are_refused(tmp_path, prepared, labels_dir):
    other = Codec.from_config("wavtok-tiny-causal")  # its codebook was never fitted
    with pytest.raises(ValueError, match="labels are for codebook"):
        distill_encoder(other, prepared, labels_dir, _small(), tmp_path, lambda _: 0)


def test_cli_labels_trains_and_exports_a_model(tmp_path, prepared, tiny_model_dir, capsys):
    labels, run, out = tmp_path / "labels", tmp_path / "run", tmp_path / "wavtok-distilled"
    common = ["--model", str(tiny_model_dir), "--data", str(prepared)]
    assert main(["distill", "label", *common, "--out", str(labels), "--search", "4"]) == 0
    config = tmp_path / "distill.yaml"
    config.write_text(
        "batch_size: 2\ncrop_frames: 30\nheld_out: 3\nwarm_frames: 2\n"
        f"eval_data: {prepared}\neval_clips: 1\n"
    )
    args = ["--labels", str(labels), "--out", str(run), "--config", str(config)]
    assert main(["distill", "train", *common, *args, "--steps", "3", "--export", str(out)]) == 0
    model = Codec.from_pretrained(out)
    assert model.name == "wavtok-distilled"
    assert model.codebook_id == Codec.from_pretrained(tiny_model_dir).codebook_id
    err = capsys.readouterr().err
    assert "held-out accuracy" in err and "quick eval PESQ-wb" in err


def test_cli_without_labels_fails_with_one_line(tmp_path, prepared, tiny_model_dir, capsys):
    args = ["--model", str(tiny_model_dir), "--data", str(prepared), "--labels", str(tmp_path)]
    assert main(["distill", "train", *args, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("wavtok: error:") and "no labels" in err and "\n" not in err
