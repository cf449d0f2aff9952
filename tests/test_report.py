"""The eval report's breakdown by voice pitch, on hand-made results."""

from __future__ import annotations

import csv
import json

import pytest

from codec.metrics import ClipScores
from codec.pitch import voice_group
from codec.report import EvalRun, SystemResult, by_voice, voice_table, write_report


def _system(key: str, kind: str, pesq: dict[str, float]) -> SystemResult:
    system = SystemResult(key=key, label=key.title(), kind=kind, nominal_kbps=0.9)
    for clip, value in pesq.items():
        system.add(clip, ClipScores(value, value / 4, 1.0, 0.0), 900, 1.0, None)
    return system


def _run() -> EvalRun:
    clips = {"low_a": 1.0, "low_b": 2.0, "high": 3.0, "whisper": 4.0}
    return EvalRun(
        model={"name": "m", "path": "p", "sample_rate": 24000, "frame_rate": 75.0},
        data_dir="d",
        systems=[
            _system("model", "model", clips),
            _system("codec2", "baseline", {k: v + 1 for k, v in clips.items()}),
            _system("ground_truth", "reference", dict.fromkeys(clips, 4.64)),
        ],
        skipped=[],
        dnsmos=False,
        voice_f0={"low_a": 100.0, "low_b": 139.9, "high": 180.0, "whisper": None},
    )


def test_voice_group_edges():
    assert voice_group(None) is None
    assert voice_group(60.0) == voice_group(139.99) == "under 140 Hz"
    assert voice_group(140.0) == voice_group(179.9) == "140-180 Hz"
    assert voice_group(180.0) == voice_group(400.0) == "180 Hz and over"


def test_by_voice_means_per_group():
    table = by_voice(_run())
    assert set(table) == {"model", "codec2"}  # never the ground truth
    assert set(table["model"]) == {"under 140 Hz", "180 Hz and over"}  # no clip at 140-180
    low = table["model"]["under 140 Hz"]
    assert low["clips"] == 2 and low["pesq_wb"] == pytest.approx(1.5)
    assert low["stoi"] == pytest.approx(1.5 / 4)
    assert table["codec2"]["180 Hz and over"] == {
        "clips": 1,
        "pesq_wb": 4.0,
        "stoi": 1.0,
        "mel_l1": 1.0,
    }


def test_voice_table_and_report_files(tmp_path):
    run = _run()
    table = voice_table(run)
    assert table.splitlines()[0] == "| system | under 140 Hz (2 clips) | 180 Hz and over (1 clip) |"
    assert "| Model | 1.50 / 0.375 | 3.00 / 0.750 |" in table
    assert "Ground" not in table

    write_report(run, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert (
        "## By voice pitch" in report
        and "(1 clip with too little voiced speech left out)" in report
    )
    results = json.loads((tmp_path / "results.json").read_text())["by_voice"]
    assert results["clips_without_f0"] == 1
    assert results["groups"]["180 Hz and over"] == {"low_hz": 180.0, "high_hz": None}
    assert results["systems"]["model"]["under 140 Hz"]["pesq_wb"] == pytest.approx(1.5)
    with open(tmp_path / "per_clip.csv") as f:
        rows = list(csv.DictReader(f))
    f0 = {(r["system"], r["clip"]): r["ref_f0_hz"] for r in rows}
    assert f0[("model", "low_b")] == "139.9" and f0[("codec2", "whisper")] == ""


def test_no_voice_f0_no_section(tmp_path):
    run = _run()
    run.voice_f0 = {}
    assert voice_table(run) == "" and by_voice(run)["model"] == {}
    write_report(run, tmp_path)
    assert "By voice pitch" not in (tmp_path / "report.md").read_text()
