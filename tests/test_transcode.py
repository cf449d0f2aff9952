"""`wavtok transcode`: mirrored trees, error log, resume (also after SIGKILL), shards, Ray parity.

One small corpus in mixed formats (about 8 s of audio) and the tiny causal model keep each run
well under a second; the Ray tests share one local two-CPU instance.
"""

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT, speechlike
from transcode_corpus import (
    BAD,
    GOOD,
    SR,
    STATE,
    stats,
    temp_files,
    transcode,
    tree,
    with_suffix,
)

from codec import Codec, cli, tokenfile
from codec.audio import load_mono
from codec.precision import checked_decode_dtype
from codec.transcode_core import read_jsonl


# -- encode -------------------------------------------------------------------------------------
def test_encode_mirrors_tree_and_logs_errors(
    corpus, reference, tiny_causal, tiny_model_dir, tmp_path
):
    tokens = tree(reference, tokenfile.EXTENSION)
    assert set(tokens) == with_suffix(GOOD, ".wtok")
    for name in GOOD:
        wav, _ = load_mono(corpus / name, SR)
        ids, header = tokenfile.loads(tokens[Path(name).with_suffix(".wtok").as_posix()])
        assert header.num_samples == wav.numel() and header.model == tiny_causal.name
        alone, _ = tiny_causal.encode(wav)  # batched codes equal the file's codes alone
        assert np.array_equal(ids, alone[0].numpy()), name
    # ... and each token file is the one `wavtok encode` writes for that file.
    single = tmp_path / "single.wtok"
    assert (
        cli.main(
            ["encode", str(corpus / "stereo.wav"), str(single), "--model", str(tiny_model_dir)]
        )
        == 0
    )
    assert single.read_bytes() == tokens["stereo.wtok"]

    errors = read_jsonl(reference / STATE / "errors.jsonl")
    assert set(errors) == set(BAD)
    for name, reason in BAD.items():
        assert reason in errors[name]["error"] and errors[name]["permanent"] is True
    assert "0x" not in errors["corrupt.wav"]["error"]  # no object addresses in messages

    manifest = read_jsonl(reference / STATE / "manifest.jsonl")
    assert set(manifest) == set(GOOD)
    for name, rec in manifest.items():
        out = reference / rec["output"]
        assert rec["output_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
        assert rec["input_sha256"] == hashlib.sha256((corpus / name).read_bytes()).hexdigest()
    summary = json.loads((reference / STATE / "summary.json").read_text())
    assert (summary["files_done"], summary["errors"], summary["files_found"]) == (7, 2, 9)
    assert summary["tokens"] == sum(r["num_frames"] for r in manifest.values())
    assert not temp_files(reference)


def test_search_encode_is_the_library_search_and_a_job_of_its_own(
    corpus, reference, tiny_causal, tiny_model_dir, tmp_path, capsys
):
    from codec.search import search_encode, settings_from

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    # Tokens chosen by nearest code are not what a search job writes: all of them are redone.
    # One file a batch: a batch may break a near-tie (costs equal to rounding) another way than
    # a file searched alone (codec.search.search_encode).
    argv = ("encode", corpus, out, "--model", tiny_model_dir, "--quiet", "--batch-size", 1)
    assert transcode(*argv, "--search", 3) == 0
    assert "7 done, 0 skipped" in capsys.readouterr().out
    for name in GOOD:
        wav, _ = load_mono(corpus / name, SR)
        ids, _ = tokenfile.load(out / Path(name).with_suffix(".wtok"))
        alone, _ = search_encode(tiny_causal, wav, settings=settings_from(3, tiny_causal.config))
        assert np.array_equal(ids, alone[0].numpy()), name
    assert tree(out, ".wtok") != tree(reference, ".wtok")
    assert transcode(*argv, "--search", 3) == 0
    assert "0 done, 7 skipped" in capsys.readouterr().out
    # A beam search is a job of its own too, and writes the library's beam search.
    assert transcode(*argv, "--search", 3, "--beam", 2) == 0
    assert "7 done, 0 skipped" in capsys.readouterr().out
    name = GOOD[0]
    wav, _ = load_mono(corpus / name, SR)
    ids, _ = tokenfile.load(out / Path(name).with_suffix(".wtok"))
    settings = settings_from(3, tiny_causal.config, beam=2)
    assert np.array_equal(ids, search_encode(tiny_causal, wav, settings=settings)[0][0].numpy())
    # So is a refined search.
    assert transcode(*argv, "--search", 3, "--beam", 2, "--refine", 1) == 0
    assert "7 done, 0 skipped" in capsys.readouterr().out
    ids, _ = tokenfile.load(out / Path(name).with_suffix(".wtok"))
    settings = settings_from(3, tiny_causal.config, beam=2, refine=1)
    assert np.array_equal(ids, search_encode(tiny_causal, wav, settings=settings)[0][0].numpy())
    assert transcode(*argv, "--search", 3, "--beam", 2, "--refine", 1) == 0
    assert "0 done, 7 skipped" in capsys.readouterr().out
    # ... and back to the nearest codes: searched tokens are not taken as done either.
    assert transcode(*argv) == 0
    assert "7 done, 0 skipped" in capsys.readouterr().out
    assert tree(out, ".wtok") == tree(reference, ".wtok")


def test_strict_exits_non_zero(corpus, tiny_model_dir, tmp_path, capsys):
    code = transcode("encode", corpus, tmp_path, "--model", tiny_model_dir, "--strict", "--quiet")
    out, err = capsys.readouterr()
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("wavtok: error: 2 files failed")
    assert "7 done" in out and "2 errors" in out
    assert set(tree(tmp_path, ".wtok")) == with_suffix(GOOD, ".wtok")


def test_rerun_skips_finished_work_and_redoes_changed(
    corpus, reference, tiny_model_dir, tmp_path, capsys
):
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(corpus, src)
    shutil.copytree(reference, out)
    before = stats(out)
    assert transcode("encode", src, out, "--model", tiny_model_dir, "--quiet") == 0
    assert "0 done, 7 skipped" in capsys.readouterr().out
    assert stats(out) == before
    assert (out / STATE / "errors.jsonl").read_bytes() == (
        reference / STATE / "errors.jsonl"
    ).read_bytes()

    # A changed input, a deleted output and a corrupted output are redone; nothing else is.
    sf.write(src / "a.wav", speechlike(SR // 2, 9).numpy(), SR, subtype="PCM_16")
    (out / "b.wtok").unlink()
    data = bytearray((out / "c.wtok").read_bytes())
    data[-1] ^= 0xFF
    (out / "c.wtok").write_bytes(bytes(data))
    before = stats(out)
    assert transcode("encode", src, out, "--model", tiny_model_dir, "--quiet") == 0
    assert "3 done, 4 skipped" in capsys.readouterr().out
    after = stats(out)
    redone = {str(out / n) for n in ("a.wtok", "b.wtok", "c.wtok")}
    for path, st in before.items():
        if path not in redone and STATE not in path:
            assert after[path] == st, path
    assert tokenfile.load(out / "a.wtok")[1].num_samples == SR // 2
    for name in ("b.wtok", "c.wtok"):
        assert (out / name).read_bytes() == (reference / name).read_bytes()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_run_resumes_to_identical_output(
    sig, corpus, reference, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    # The child sleeps after each journal commit so that it is reliably stopped mid-job.
    child = textwrap.dedent(
        """
        import signal, sys, time
        from codec import cli, transcode_core
        # A shell starts background jobs with SIGINT ignored, and children inherit that.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        commit = transcode_core.Journal.commit
        def slow_commit(self, records, errors):
            commit(self, records, errors)
            time.sleep(0.5)
        transcode_core.Journal.commit = slow_commit
        sys.exit(cli.main(sys.argv[1:]))
        """
    )
    argv = ["transcode", "encode", corpus, out, "--model", tiny_model_dir, "--batch-size", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", child, *map(str, argv), "--workers", "1", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    manifest = out / STATE / "manifest.jsonl"
    deadline = time.monotonic() + 120
    try:
        while not (manifest.is_file() and manifest.read_bytes().count(b"\n") >= 1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no batch recorded within 120 s"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err, err
    recorded = len(read_jsonl(manifest))
    assert 1 <= recorded < len(GOOD)

    assert transcode("encode", corpus, out, "--model", tiny_model_dir, "--quiet") == 0
    assert f"{recorded} skipped" in capsys.readouterr().out
    assert tree(out, ".wtok") == tree(reference, ".wtok")  # batch size 1 vs 4: same bytes
    assert set(read_jsonl(manifest)) == set(GOOD)
    assert not temp_files(out)


# -- decode and roundtrip ------------------------------------------------------------------------
def test_decode_restores_sample_counts(reference, tiny_model_dir, tiny_causal, tmp_path):
    assert transcode("decode", reference, tmp_path, "--model", tiny_model_dir, "--quiet") == 0
    wavs = tree(tmp_path, ".wav")
    assert set(wavs) == with_suffix(GOOD, ".wav")
    for name in GOOD:
        ids, header = tokenfile.load(reference / Path(name).with_suffix(".wtok"))
        info = sf.info(str(tmp_path / Path(name).with_suffix(".wav")))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert info.frames == header.num_samples
        audio, _ = sf.read(str(tmp_path / Path(name).with_suffix(".wav")), dtype="float32")
        alone, _ = tiny_causal.decode(torch.from_numpy(ids)[None])
        assert np.allclose(audio, alone[0, 0, : header.num_samples].clamp(-1, 1).numpy(), atol=2e-4)


def test_decode_refuses_tokens_of_another_codebook(reference, tiny_causal, tmp_path):
    """A retrained model of the same name: every file is a permanent error, none is decoded."""
    retrained = Codec.from_config(tiny_causal.config)
    retrained.load_state_dict(tiny_causal.state_dict())
    with torch.no_grad():
        retrained.quantizer.vq._codebook.embed += 0.01
    retrained.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    assert transcode("decode", reference, out, "--model", tmp_path / "model", "--quiet") == 0
    assert not tree(out, ".wav")
    errors = read_jsonl(out / STATE / "errors.jsonl")
    assert set(errors) == {Path(n).with_suffix(".wtok").as_posix() for n in GOOD}
    for rec in errors.values():
        assert "decode with the model that encoded it" in rec["error"] and rec["permanent"]


def test_roundtrip_keeps_sample_counts(corpus, tiny_model_dir, tmp_path):
    assert (
        transcode(
            "roundtrip", corpus, tmp_path, "--model", tiny_model_dir, "--quiet", "--workers", 0
        )
        == 0
    )
    assert set(tree(tmp_path, ".wav")) == with_suffix(GOOD, ".wav")
    for name in GOOD:
        info = sf.info(str(tmp_path / Path(name).with_suffix(".wav")))
        assert info.frames == load_mono(corpus / name, SR)[0].numel() and info.samplerate == SR
    assert set(read_jsonl(tmp_path / STATE / "errors.jsonl")) == set(BAD)


# -- arguments and units ------------------------------------------------------------------------
def test_bad_arguments_give_one_line_errors(corpus, tiny_model_dir, tmp_path, capsys):
    for argv in (
        ("encode", tmp_path / "missing", tmp_path / "o"),
        ("encode", corpus, corpus),
        ("encode", corpus, tmp_path / "o", "--batch-size", 0),
        ("encode", corpus, tmp_path / "o", "--model", tmp_path / "no-model"),
    ):
        code = (
            transcode(*argv, "--model", tiny_model_dir)
            if "--model" not in argv
            else transcode(*argv)
        )
        err = capsys.readouterr().err
        assert code == 1 and err.startswith("wavtok: error: ") and len(err.splitlines()) == 1, err
    assert transcode("decode", corpus, tmp_path / "o", "--shards") == 2  # encode-only option


def test_bfloat16_decode(reference, tiny_model_dir, tiny_causal, tmp_path):
    """`--decode-dtype bfloat16` decodes in bf16 where oneDNN supports it and decodes this model
    right (close to, not equal to, float32) and in float32 elsewhere, with the same sample
    counts."""
    argv = ["--model", tiny_model_dir, "--quiet"]
    assert transcode("decode", reference, tmp_path / "f32", *argv) == 0
    assert (
        transcode("decode", reference, tmp_path / "bf16", *argv, "--decode-dtype", "bfloat16") == 0
    )
    f32, bf16 = tree(tmp_path / "f32", ".wav"), tree(tmp_path / "bf16", ".wav")
    assert set(f32) == set(bf16) == with_suffix(GOOD, ".wav")
    for name in f32:
        a, _ = sf.read(io.BytesIO(f32[name]), dtype="int16")
        b, _ = sf.read(io.BytesIO(bf16[name]), dtype="int16")
        assert a.shape == b.shape
        steps = np.abs(a.astype(np.int32) - b).max()
        if checked_decode_dtype("bfloat16", tiny_causal) is not None:
            assert steps > 8 and np.corrcoef(a, b)[0, 1] > 0.99
        else:
            assert steps == 0
