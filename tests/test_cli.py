"""The `wavtok` CLI, in-process through `codec.cli.main` and once as a real subprocess."""

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT
from safetensors.torch import save_file

from codec import Codec, cli, tokenfile
from codec.config import CodecConfig

SR = 24000


def run(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wavtok: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def clip_samples(libritts_clip: Path) -> int:
    info = sf.info(str(libritts_clip))
    assert info.samplerate == SR  # LibriTTS ships at 24 kHz
    return info.frames


def test_encode_decode_keeps_length(capsys, tmp_path, libritts_clip, clip_samples, tiny_model_dir):
    wtok, wav = tmp_path / "a.wtok", tmp_path / "a.wav"
    code, out, err = run(capsys, "encode", libritts_clip, wtok, "--model", tiny_model_dir)
    assert code == 0, err
    frames = -(-clip_samples // 320)
    assert out.strip() == (
        f"{wtok}: {frames} frames, {clip_samples / SR:.2f} s, {wtok.stat().st_size} bytes, "
        f"{8 * wtok.stat().st_size / (clip_samples / SR):.0f} bit/s"
    )
    ids, header = tokenfile.load(wtok)
    assert ids.size == frames and header.num_samples == clip_samples
    assert (header.model, header.codebook_size, header.sample_rate) == (
        "wavtok-tiny-causal",
        4096,
        SR,
    )

    code, out, err = run(capsys, "decode", wtok, wav, "--model", tiny_model_dir)
    assert code == 0, err
    assert err == ""
    data, sr = sf.read(wav)
    assert sr == SR and data.shape == (clip_samples,)
    assert np.isfinite(data).all()


def test_encode_matches_library(capsys, tmp_path, libritts_clip, tiny_model_dir, tiny_causal):
    run(capsys, "encode", libritts_clip, tmp_path / "a.wtok", "--model", tiny_model_dir)
    ids, _ = tokenfile.load(tmp_path / "a.wtok")
    wav, _ = sf.read(libritts_clip, dtype="float32")
    np.testing.assert_array_equal(ids, tiny_causal.encode(torch.from_numpy(wav))[0][0].numpy())


def test_resampled_input_length(capsys, tmp_path, tiny_model_dir):
    """A 16 kHz stereo file comes back with its length at 24 kHz."""
    n = 16000 + 123
    data = np.random.default_rng(0).normal(0, 0.1, (n, 2)).astype(np.float32)
    sf.write(tmp_path / "in.flac", data, 16000)
    assert (
        run(capsys, "encode", tmp_path / "in.flac", tmp_path / "a.wtok", "--model", tiny_model_dir)[
            0
        ]
        == 0
    )
    assert (
        run(capsys, "decode", tmp_path / "a.wtok", tmp_path / "o.wav", "--model", tiny_model_dir)[0]
        == 0
    )
    expected = -(-n * 3 // 2)
    assert tokenfile.load(tmp_path / "a.wtok")[1].num_samples == expected
    assert sf.info(str(tmp_path / "o.wav")).frames == expected


def test_roundtrip(capsys, tmp_path, libritts_clip, clip_samples, tiny_model_dir):
    code, out, err = run(
        capsys, "roundtrip", libritts_clip, tmp_path / "r.flac", "--model", tiny_model_dir
    )
    assert code == 0, err
    assert "frames" in out and "bit/s" in out
    assert list(tmp_path.iterdir()) == [tmp_path / "r.flac"]  # no token file left behind
    assert sf.info(str(tmp_path / "r.flac")).frames == clip_samples


def test_info_each_kind(capsys, tmp_path, libritts_clip, clip_samples, tiny_model_dir):
    wtok = tmp_path / "a.wtok"
    run(capsys, "encode", libritts_clip, wtok, "--model", tiny_model_dir)
    code, out, _ = run(capsys, "info", wtok)
    assert code == 0
    fields = dict(line.split(":", 1) for line in out.strip().splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["kind"] == "token file"
    assert fields["model"] == "wavtok-tiny-causal"
    assert fields["codebook_id"] == Codec.from_pretrained(tiny_model_dir).codebook_id
    assert fields["bits_per_code"] == "12"
    assert fields["num_samples"] == str(clip_samples)
    assert int(fields["size_bytes"]) == wtok.stat().st_size
    real = 8 * wtok.stat().st_size / (clip_samples / SR)
    assert float(fields["bitrate_bps"]) == pytest.approx(real, abs=0.1)
    assert float(fields["payload_bitrate_bps"]) == 900.0
    used = int(fields["codes_used"].split(" of ")[0])
    assert 1 < used <= 4096
    assert float(fields["entropy_bits"]) > 0

    code, out, _ = run(capsys, "info", libritts_clip)
    assert code == 0
    assert "sample_rate: 24000" in out and "channels:    1" in out
    assert f"samples:     {clip_samples}" in out

    code, out, _ = run(capsys, "info", tiny_model_dir)
    assert code == 0
    assert "name:          wavtok-tiny-causal" in out and "causal:        True" in out
    assert "frame_rate_hz: 75" in out and "bitrate_bps:   900" in out
    assert "params:" in out
    assert f"codebook_id:   {Codec.from_pretrained(tiny_model_dir).codebook_id}" in out

    code, out, _ = run(capsys, "info", "wavtok-24k-40hz")
    assert code == 0 and "config preset" in out and "bitrate_bps:   480" in out
    assert "latency_ms:    n/a (offline only)" in out
    # A causal preset's latency counts its frame and both lookaheads (1 + 2 + 2 frames).
    code, out, _ = run(
        capsys, "info", "wavtok-small-deep-spectral-lookahead-enc2-75hz-causal-harmonic"
    )
    assert code == 0 and "latency_ms:    66.7" in out


def test_missing_input(capsys, tmp_path, tiny_model_dir):
    missing = tmp_path / "missing.wav"
    for argv in (
        ("encode", missing, tmp_path / "a.wtok", "--model", tiny_model_dir),
        ("decode", tmp_path / "missing.wtok", tmp_path / "a.wav", "--model", tiny_model_dir),
        ("roundtrip", missing, tmp_path / "b.wav", "--model", tiny_model_dir),
        ("info", missing),
    ):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, "no such file")
    assert list(tmp_path.iterdir()) == []


def test_text_posing_as_wav(capsys, tmp_path, tiny_model_dir):
    fake = tmp_path / "fake.wav"
    fake.write_text("hello, I am not audio\n")
    code, _, err = run(capsys, "encode", fake, tmp_path / "a.wtok", "--model", tiny_model_dir)
    assert_one_line_error(code, err, str(fake), "unreadable audio")
    code, _, err = run(capsys, "info", fake)
    assert_one_line_error(code, err, "unreadable audio")


def test_corrupt_token_file(capsys, tmp_path, libritts_clip, tiny_model_dir):
    wtok = tmp_path / "a.wtok"
    run(capsys, "encode", libritts_clip, wtok, "--model", tiny_model_dir)
    data = bytearray(wtok.read_bytes())
    data[-3] ^= 0x10
    wtok.write_bytes(bytes(data))
    code, _, err = run(capsys, "decode", wtok, tmp_path / "a.wav", "--model", tiny_model_dir)
    assert_one_line_error(code, err, "checksum")
    assert not (tmp_path / "a.wav").exists()
    code, _, err = run(capsys, "info", wtok)
    assert_one_line_error(code, err, "checksum")


def test_unknown_model(capsys, tmp_path, libritts_clip):
    code, _, err = run(
        capsys, "encode", libritts_clip, tmp_path / "a.wtok", "--model", "no-such-model"
    )
    assert_one_line_error(code, err, "'no-such-model' not found")
    code, _, err = run(capsys, "info", "no-such-model")
    assert_one_line_error(code, err, "not found")


def test_bad_output_paths(capsys, tmp_path, libritts_clip, tiny_model_dir):
    code, _, err = run(
        capsys, "encode", libritts_clip, tmp_path / "no" / "a.wtok", "--model", tiny_model_dir
    )
    assert_one_line_error(code, err, "output directory does not exist")
    code, _, err = run(
        capsys, "roundtrip", libritts_clip, tmp_path / "a.xyz", "--model", tiny_model_dir
    )
    assert_one_line_error(code, err, "audio format")


def save_variant(tiny_causal: Codec, path: Path, **changes) -> Path:
    data = tiny_causal.config.model_dump()
    data.update(changes.get("top", {}))
    data["quantizer"].update(changes.get("quantizer", {}))
    torch.manual_seed(0)
    model = Codec(CodecConfig.model_validate(data))
    if "quantizer" not in changes:
        model.load_state_dict(tiny_causal.state_dict())
    model.save_pretrained(path)
    return path


def test_header_mismatches(capsys, tmp_path, libritts_clip, tiny_model_dir, tiny_causal):
    wtok = tmp_path / "a.wtok"
    run(capsys, "encode", libritts_clip, wtok, "--model", tiny_model_dir)
    small = save_variant(tiny_causal, tmp_path / "small", quantizer={"codebook_size": 1024})
    code, _, err = run(capsys, "decode", wtok, tmp_path / "a.wav", "--model", small)
    assert_one_line_error(code, err, "4096-entry codebook", "has 1024")
    renamed = save_variant(tiny_causal, tmp_path / "renamed", top={"name": "other-name"})
    code, _, err = run(capsys, "decode", wtok, tmp_path / "b.wav", "--model", renamed)
    assert code == 0
    assert (
        err.startswith("wavtok: warning: ") and "other-name" in err and len(err.splitlines()) == 1
    )


def test_tokens_of_a_retrained_codebook_are_refused(
    capsys, tmp_path, libritts_clip, tiny_model_dir, tiny_causal
):
    """Same name and shape, other codebook: the ids would decode to the wrong sounds."""
    wtok = tmp_path / "a.wtok"
    run(capsys, "encode", libritts_clip, wtok, "--model", tiny_model_dir)
    ids, header = tokenfile.load(wtok)
    assert header.codebook_id == tiny_causal.codebook_id
    retrained = tmp_path / "retrained"
    save_variant(tiny_causal, retrained)
    state = Codec.from_pretrained(retrained).state_dict()
    state["quantizer.vq._codebook.embed"] += 0.01
    model = Codec.from_pretrained(retrained)
    model.load_state_dict(state)
    model.save_pretrained(retrained)
    code, _, err = run(capsys, "decode", wtok, tmp_path / "a.wav", "--model", retrained)
    assert_one_line_error(code, err, f"codebook {header.codebook_id}", "decode with the model")
    # A file written before token files carried a codebook_id is decoded as before.
    legacy = tmp_path / "legacy.wtok"
    tokenfile.save(legacy, ids, header.model_copy(update={"codebook_id": None}))
    code, _, err = run(capsys, "decode", legacy, tmp_path / "b.wav", "--model", retrained)
    assert code == 0, err
    code, out, _ = run(capsys, "info", legacy)
    assert code == 0 and "codebook_id:" in out and "not checked" in out


def test_corrupt_or_mismatched_weights_give_one_line_errors(capsys, tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_bytes((tiny_model_dir / "config.yaml").read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors at all")
    code, _, err = run(capsys, "info", broken)
    assert_one_line_error(code, err, "not valid model weights")
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(2400, "float32"), SR)
    code, _, err = run(capsys, "encode", wav, tmp_path / "a.wtok", "--model", broken)
    assert_one_line_error(code, err, "not valid model weights")
    save_file({"x": torch.zeros(1)}, str(broken / "model.safetensors"))
    code, _, err = run(capsys, "encode", wav, tmp_path / "a.wtok", "--model", broken)
    assert_one_line_error(code, err, "weights do not match config.yaml", "1 unexpected")


def test_usage(capsys):
    assert run(capsys, "--help")[0] == 0
    code, _, err = run(capsys)
    assert code == 2 and "required" in err
    assert run(capsys, "frobnicate")[0] == 2


def fake_module(monkeypatch, name: str, func) -> None:
    module = types.ModuleType(name)

    def register(subparsers):
        sub = subparsers.add_parser("fake", help="a test command")
        sub.add_argument("--flag", default="x")
        sub.set_defaults(func=func)

    module.register = register
    monkeypatch.setitem(sys.modules, name, module)


def test_extension_contract(capsys, monkeypatch):
    seen = []
    fake_module(monkeypatch, "fake_ext_ok", lambda args: seen.append(args.flag) or 3)
    monkeypatch.setattr(cli, "EXTENSION_MODULES", ["fake_ext_absent", "fake_ext_ok"])
    code, _, err = run(capsys, "fake", "--flag", "y")
    assert (code, seen, err) == (3, ["y"], "")


def test_extension_errors_and_interrupt(capsys, monkeypatch):
    def boom(args):
        raise RuntimeError("engine\nfailed")

    fake_module(monkeypatch, "fake_ext_boom", boom)
    monkeypatch.setattr(cli, "EXTENSION_MODULES", ["fake_ext_boom"])
    assert_one_line_error(*run(capsys, "fake")[::2], "engine failed")

    def interrupt(args):
        raise KeyboardInterrupt

    fake_module(monkeypatch, "fake_ext_boom", interrupt)
    assert run(capsys, "fake")[0] == 130


def test_broken_extension_does_not_break_cli(capsys, monkeypatch, tiny_model_dir):
    broken = types.ModuleType("fake_ext_broken")
    broken.register = lambda subparsers: (_ for _ in ()).throw(ImportError("needs libfoo"))
    monkeypatch.setitem(sys.modules, "fake_ext_broken", broken)
    # A broken module listed first must not stop the ones after it (`info` is one).
    monkeypatch.setattr(cli, "EXTENSION_MODULES", ["fake_ext_broken", "codec.info"])
    code, out, err = run(capsys, "info", tiny_model_dir)
    assert code == 0 and "wavtok-tiny-causal" in out
    assert "warning" in err and "needs libfoo" in err


def test_subprocess_end_to_end(tmp_path, libritts_clip, clip_samples, tiny_model_dir):
    """The installed entry point path: `python -m codec`, a fresh interpreter, real exit codes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def wavtok(*argv):
        cmd = [sys.executable, "-m", "codec", *map(str, argv)]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)

    # Two launches only: each pays for importing torch and every extension module.
    wav = tmp_path / "a.wav"
    done = wavtok("roundtrip", libritts_clip, wav, "--model", tiny_model_dir)
    assert done.returncode == 0, done.stderr
    assert sf.info(str(wav)).frames == clip_samples
    done = wavtok("decode", tmp_path / "nope.wtok", wav, "--model", tiny_model_dir)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"wavtok: error: {tmp_path / 'nope.wtok'}: no such file"
    ]


def test_encode_search_writes_the_library_searchs_tokens(
    capsys, tmp_path, tiny_model_dir, tiny_causal, tiny
):
    from conftest import speechlike

    from codec.search import search_encode, settings_from

    sf.write(tmp_path / "in.wav", speechlike(SR).numpy(), SR, subtype="FLOAT")
    code, out, err = run(
        capsys, "encode", tmp_path / "in.wav", tmp_path / "s.wtok", "--model", tiny_model_dir,
        "--search", "4",
    )  # fmt: skip
    assert code == 0, err
    ids, _ = tokenfile.load(tmp_path / "s.wtok")
    wav = torch.from_numpy(sf.read(tmp_path / "in.wav", dtype="float32")[0])
    searched, _ = search_encode(tiny_causal, wav, settings=settings_from(4, tiny_causal.config))
    np.testing.assert_array_equal(ids, searched[0].numpy())
    assert (ids != tiny_causal.encode(wav)[0][0].numpy()).any()
    # Same bitstream: the token file decodes as any other.
    code, _, err = run(
        capsys, "decode", tmp_path / "s.wtok", tmp_path / "o.wav", "--model", tiny_model_dir
    )
    assert code == 0, err

    code, _, err = run(
        capsys, "encode", tmp_path / "in.wav", tmp_path / "t.wtok", "--model", tiny_model_dir,
        "--search", "-2",
    )  # fmt: skip
    assert_one_line_error(code, err, "candidates")
    tiny.save_pretrained(tmp_path / "offline-model")
    code, _, err = run(
        capsys, "roundtrip", tmp_path / "in.wav", tmp_path / "r.wav", "--model",
        tmp_path / "offline-model", "--search", "4",
    )  # fmt: skip
    assert_one_line_error(code, err, "causal")
    bad_options = {
        "beam": (["--beam", "2"], ["--search", "4", "--beam", "0"]),
        "refine": (["--refine", "1"], ["--search", "4", "--refine", "-1"]),
    }
    for option, bads in bad_options.items():
        for bad in bads:
            code, _, err = run(
                capsys, "encode", tmp_path / "in.wav", tmp_path / "t.wtok", "--model",
                tiny_model_dir, *bad,
            )  # fmt: skip
            assert_one_line_error(code, err, option)
    assert not (tmp_path / "t.wtok").exists() and not (tmp_path / "r.wav").exists()

    # A beam search and a refining pass: the library's, other tokens than one greedy pass's.
    for option, value in (("beam", 3), ("refine", 1)):
        code, _, err = run(
            capsys, "encode", tmp_path / "in.wav", tmp_path / "o.wtok", "--model",
            tiny_model_dir, "--search", "4", f"--{option}", str(value),
        )  # fmt: skip
        assert code == 0, err
        settings = settings_from(4, tiny_causal.config, **{option: value})
        expected, _ = search_encode(tiny_causal, wav, settings=settings)
        np.testing.assert_array_equal(tokenfile.load(tmp_path / "o.wtok")[0], expected[0].numpy())
        assert (expected != searched).any(), option


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`wavtok ... | head`: the reader leaves early; no error message, status 141."""
    import subprocess
    import sys

    script = (
        "import sys; from codec import cli\n"
        "def flood(args):\n"
        "    for _ in range(100000):\n"
        "        print('x' * 80)\n"
        "    return 0\n"
        "parser = cli.build_parser\n"
        "def build():\n"
        "    p = parser()\n"
        "    p._subparsers._group_actions[0].add_parser('flood').set_defaults(func=flood)\n"
        "    return p\n"
        "cli.build_parser = build\n"
        "sys.exit(cli.main(['flood']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""
