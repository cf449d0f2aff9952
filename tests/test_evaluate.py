"""`wavtok eval` end to end on two short real clips, a tiny untrained model and Codec2."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec import Codec, evaluate

TEST_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/test/libritts_test_clean"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wavtok")
    evaluate.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["eval", *argv])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from codec.model import Codec

    path = tmp_path_factory.mktemp("model") / "tiny"
    Codec.from_config("wavtok-tiny-causal").save_pretrained(path)
    return path


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """Two short real clips (1.5-3 s) plus a silent one and an unreadable one."""
    if not TEST_DATA.is_dir():
        pytest.skip(f"test data not found: {TEST_DATA}")
    short = sorted(p for p in TEST_DATA.glob("*.wav") if 1.5 <= sf.info(str(p)).duration <= 3.0)[:2]
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    shutil.copy(short[0], data / short[0].name)
    shutil.copy(short[1], data / "sub" / short[1].name)
    sf.write(str(data / "silent.flac"), np.zeros(24000, np.float32), 24000)
    (data / "broken.wav").write_bytes(b"not audio")
    return data


@pytest.mark.skipif(shutil.which("c2enc") is None, reason="codec2 not installed")
def test_eval_end_to_end(tiny_model, data_dir, tmp_path, capsys):
    out = tmp_path / "report"
    args = _parse(
        "--model", str(tiny_model), "--data", str(data_dir), "--baselines", "codec2_3200",
        "--no-dnsmos", "--out", str(out),
    )  # fmt: skip
    assert evaluate.run(args) == 0

    captured = capsys.readouterr()
    assert "| Codec2 3200 |" in captured.out and "| Ground truth |" in captured.out
    assert "skipping silent.flac: silent" in captured.err
    assert "skipping broken.wav" in captured.err

    for name in ("report.md", "results.json", "per_clip.csv", "quality_vs_bitrate.png"):
        assert (out / name).is_file(), name
    assert len(list(out.glob("spectrograms_*.png"))) == 2

    results = json.loads((out / "results.json").read_text())
    assert results["clips"] == 2 and results["skipped"] == 2
    assert results["model"]["codebook_id"] == Codec.from_pretrained(tiny_model).codebook_id
    assert list(results["systems"]) == ["model", "codec2_3200", "ground_truth"]
    for key, row in results["systems"].items():
        for metric in ("pesq_wb", "stoi", "mel_l1", "si_sdr"):
            assert math.isfinite(row[metric]), (key, metric)
        assert row["dnsmos"] is None
    model, codec2 = results["systems"]["model"], results["systems"]["codec2_3200"]
    assert model["kbps_nominal"] == pytest.approx(0.9)
    assert model["kbps_real"] > model["kbps_nominal"]  # the token-file header costs bits
    assert 1 <= model["codes_used"] <= 4096 and model["entropy_bits"] >= 0.0
    assert codec2["kbps_real"] == pytest.approx(3.2, rel=0.05)
    assert results["systems"]["ground_truth"]["pesq_wb"] > 4.5

    rows = (out / "per_clip.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3 * 2
    # Both clips are real speech, so each has a median F0 and falls in a voice group.
    assert rows[0].endswith(",ref_f0_hz") and all(
        60 < float(r.split(",")[-1]) < 400 for r in rows[1:]
    )
    voices = results["by_voice"]
    assert voices["clips_without_f0"] == 0 and set(voices["systems"]) == {"model", "codec2_3200"}
    assert sum(g["clips"] for g in voices["systems"]["model"].values()) == 2
    assert (
        "By voice pitch" in captured.out and "## By voice pitch" in (out / "report.md").read_text()
    )
    assert "Codec2 3200" in (out / "report.md").read_text()


def test_missing_data_dir(tmp_path):
    args = _parse("--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    with pytest.raises(FileNotFoundError, match="data directory does not exist"):
        evaluate.run(args)


def test_unknown_baseline(tmp_path):
    args = _parse("--data", str(tmp_path), "--baselines", "mp3", "--out", str(tmp_path / "r"))
    with pytest.raises(ValueError, match="unknown baseline 'mp3'"):
        evaluate.run(args)


def test_no_clips_found(tmp_path):
    (tmp_path / "notes.txt").write_text("no audio here")
    args = _parse("--data", str(tmp_path), "--baselines", "none", "--out", str(tmp_path / "r"))
    with pytest.raises(ValueError, match="no audio clips"):
        evaluate.run(args)


def test_defaults():
    from codec.model import DEFAULT_MODEL

    args = _parse("--data", "d", "--out", "o")
    assert args.model == DEFAULT_MODEL and args.limit is None and not args.no_dnsmos
    assert args.baselines == "opus_6k,opus_12k,codec2_3200,codec2_1200"
    assert args.func is evaluate.run
