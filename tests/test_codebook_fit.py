"""Re-fitting a trained model's codebook so that its codes carry F0 (codec/codebook_fit.py and
scripts/fit_f0_codebook.py)."""

import json
import math
import subprocess
import sys

import pytest
import soundfile as sf
import torch
from conftest import ROOT, make_codec, speechlike

from codec import Codec
from codec.codebook_fit import kmeans, nearest, with_f0_codes
from codec.config import CodecConfig


@pytest.fixture(scope="module")
def source() -> Codec:
    """A harmonic model with a decoder lookahead whose codes do not carry F0."""
    data = CodecConfig.named("wavtok-tiny-causal").model_dump()
    data["name"] = "wavtok-tiny-causal-harmonic-lookahead"
    data["decoder"].update(excitation="harmonic", lookahead=2)
    return make_codec(CodecConfig.model_validate(data))


def _tone(f0: float, seconds: float, rate: int = 24000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return 0.2 * sum(torch.sin(2 * math.pi * h * f0 * t) / h for h in range(1, 6))


def test_kmeans_finds_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([m + 0.1 * torch.randn(50, 2, generator=gen) for m in means])
    centres = kmeans(x, 3, iters=10)
    assert sorted(nearest(means, centres).tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="at least 3"):
        kmeans(x[:2], 3, iters=1)


def test_fitted_codes_carry_the_f0_of_the_input(source: Codec):
    segments = [speechlike(24000 * 30, seed=1), _tone(110.0, 15), _tone(240.0, 15)]
    codec = with_f0_codes(source, 100.0, segments, iters=5)
    assert codec.config.quantizer.f0_scale == 100.0
    assert codec.config.decoder.code_f0 == "smoothed"
    theirs, ours = source.state_dict(), codec.state_dict()
    for name, value in theirs.items():
        if "_codebook." not in name:
            assert torch.equal(ours[name], value), name
    for f0 in (110.0, 240.0):
        codes, _ = codec.encode(_tone(f0, 1.0))
        played = codec.f0_channel.to_hz(codec.quantizer.decode(codes)[:, -1])[0, 4:]
        assert (played - f0).abs().max() < 0.03 * f0
    codes, _ = codec.encode(speechlike(24000 * 2, seed=2))
    assert codes.unique().numel() > 20


def test_script_writes_a_model_and_rejects_a_bad_manifest(source: Codec, tmp_path):
    source_dir, audio = tmp_path / "source", tmp_path / "data" / "audio"
    source.save_pretrained(source_dir)
    audio.mkdir(parents=True)
    lines = []
    for i, wav in enumerate([speechlike(24000 * 30, seed=3), _tone(150.0, 30)]):
        sf.write(audio / f"{i}.flac", wav.numpy(), 24000)
        lines.append(json.dumps({"path": f"audio/{i}.flac", "source": f"speech/{i}.wav"}))
    lines.append(json.dumps({"path": "audio/x.flac", "source": "train/music/x.ogg"}))
    manifest = tmp_path / "data" / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    script = [sys.executable, str(ROOT / "scripts/fit_f0_codebook.py"), str(source_dir)]
    out = tmp_path / "fitted"
    args = ["--manifest", str(manifest), "--out", str(out), "--f0-scale", "80", "--iters", "2"]
    args += ["--code-f0", "next_token"]
    done = subprocess.run(script + args, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # the music entry (no file) was left out
    fitted = Codec.from_pretrained(out)
    assert fitted.name == "fitted" and fitted.config.quantizer.f0_scale == 80.0
    assert fitted.config.decoder.code_f0 == "next_token"
    args[1] = str(tmp_path / "missing.jsonl")
    failed = subprocess.run(script + args, cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode == 1 and "missing.jsonl" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
