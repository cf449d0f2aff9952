"""`wavtok compare`: paired differences between eval runs, read from their per_clip.csv."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from codec.cli import main
from codec.compare import compare_text, paired, read_side

HEAD = "system,clip,duration_s,kbps_real,pesq_wb,stoi,mel_l1,si_sdr,dnsmos,delay_samples"


def _report(path: Path, rows: list[tuple[str, str, float, float, float]], f0: bool = True) -> Path:
    """rows: (system, clip, pesq, stoi, mel L1); a clip named low* is a 100 Hz voice, else 200."""
    path.mkdir(parents=True)
    lines = [HEAD + (",ref_f0_hz" if f0 else "")]
    for system, clip, pesq, stoi, mel in rows:
        line = f"{system},{clip},1.000,0.9,{pesq},{stoi},{mel},1.0,,"
        lines.append(line + ((",100.0" if clip.startswith("low") else ",200.0") if f0 else ""))
    (path / "per_clip.csv").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def two_runs(tmp_path):
    a = _report(
        tmp_path / "a",
        [("model", "low1", 1.5, 0.8, 0.9), ("model", "low2", 1.7, 0.9, 0.8),
         ("model", "high1", 1.2, 0.7, 1.0), ("codec2_3200", "low1", 1.6, 0.85, 2.0)],
    )  # fmt: skip
    b = _report(
        tmp_path / "b",
        [("model", "low1", 1.4, 0.8, 1.0), ("model", "low2", 1.5, 0.85, 0.9),
         ("model", "high1", 1.3, 0.72, 1.1), ("model", "extra", 3.0, 0.9, 0.5)],
    )  # fmt: skip
    return a, b


def test_paired_statistics(two_runs):
    a, b = (read_side(str(p), "model") for p in two_runs)
    clips = sorted(set(a.rows) & set(b.rows))
    assert clips == ["high1", "low1", "low2"]  # "extra" is on one side only
    p = paired(a, b, clips, "pesq_wb", higher_better=True)
    diffs = [-0.1, 0.1, 0.2]
    assert p.clips == 3 and p.diff == pytest.approx(sum(diffs) / 3)
    mean = sum(diffs) / 3
    stderr = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2 / 3)
    assert p.stderr == pytest.approx(stderr) and p.a_better == 2
    assert p.mean_a == pytest.approx(4.4 / 3) and p.mean_b == pytest.approx(4.2 / 3)
    # Lower mel L1 is better: A is lower on all three clips.
    assert paired(a, b, clips, "mel_l1", higher_better=False).a_better == 3
    assert paired(a, b, clips, "dnsmos", higher_better=True) is None  # not measured


def test_text_with_voice_groups(two_runs):
    a, b = (read_side(str(p), "model") for p in two_runs)
    text = compare_text(a, b)
    assert "paired on 3 clips (1 scored on one side only left out)" in text
    assert "| PESQ-wb | 1.4667 | 1.4000 | +0.0667 |" in text and "DNSMOS" not in text
    assert "| under 140 Hz | 2 | +0.1500 (0.0500), 2/2 |" in text
    assert "| 180 Hz and over | 1 | -0.1000 (nan), 0/1 |" in text


def test_old_csv_without_f0_has_no_voice_section(tmp_path):
    rows = [("model", "c1", 1.5, 0.8, 0.9), ("model", "c2", 1.6, 0.8, 0.9)]
    a = read_side(str(_report(tmp_path / "a", rows, f0=False)), "model")
    assert "voice" not in compare_text(a, a)


def test_two_systems_of_one_run_and_parts(two_runs, tmp_path, capsys):
    a, _ = two_runs
    assert main(["compare", str(a), str(a), "--system-b", "codec2_3200"]) == 0
    assert "paired on 1 clips" in capsys.readouterr().out
    part = _report(tmp_path / "part2", [("model", "new", 2.0, 0.9, 0.7)])
    joined = read_side(f"{a},{part / 'per_clip.csv'}", "model")
    assert sorted(joined.rows) == ["high1", "low1", "low2", "new"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{a}", "{missing}"], "no per_clip.csv"),
        (["{a}", "{b}", "--system-b", "opus_6k"], "no system 'opus_6k' (it has: model)"),
        (["{a},{a}", "{b}"], "clip 'low1' appears twice"),
        (["{a}", "{a}", "--system-b", "codec2_3200", "--system-a", "model2"], "no system"),
    ],
)
def test_errors_are_one_line(two_runs, tmp_path, capsys, argv, message):
    a, b = two_runs
    names = {"a": a, "b": b, "missing": tmp_path / "nope"}
    assert main(["compare", *(x.format(**names) for x in argv)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("wavtok: error:") and message in err and "\n" not in err


def test_files_that_are_not_reports(tmp_path, capsys):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)))
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    for path in (binary, other):
        assert main(["compare", str(path), str(path)]) == 1
        err = capsys.readouterr().err
        assert f"{path}: not a wavtok eval per_clip.csv" in err and err.count("\n") == 1


def test_no_common_clips(tmp_path, capsys):
    a = _report(tmp_path / "a", [("model", "x", 1.0, 0.5, 1.0)])
    b = _report(tmp_path / "b", [("model", "y", 1.0, 0.5, 1.0)])
    assert main(["compare", str(a), str(b)]) == 1
    assert "no clip in common" in capsys.readouterr().err


def test_shipped_per_clip_results_pair_up():
    """The default model's committed per-clip results (its model card's figures) stay readable
    by `wavtok compare` and cover the same 99 clips."""
    from conftest import ROOT

    shipped = ROOT / "models/wavtok-cpu-75hz-causal/eval"
    nearest = read_side(str(shipped / "nearest"), "model")
    codec2 = read_side(str(shipped / "nearest"), "codec2_3200")
    searched = read_side(str(shipped / "search16-beam4"), "model")
    assert len(nearest.rows) == 99 and set(nearest.rows) == set(codec2.rows) == set(searched.rows)
    clips = sorted(nearest.rows)
    gain = paired(searched, nearest, clips, "pesq_wb", higher_better=True)
    assert gain.diff > 0 and gain.mean_b == pytest.approx(1.2803, abs=1e-4)
    assert "| 180 Hz and over | 54 |" in compare_text(searched, codec2)
