"""The `wavtok eval` report: results.json, per_clip.csv, report.md and PNG plots.

`EvalRun` holds everything a run measured; `write_report` renders it into a directory and
returns the markdown table, which the runner also prints; `codec.report_plots` draws the
plots. See docs/evaluation.md for how to read the columns.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codec.metrics import ClipScores, mean_scores
from codec.pitch import VOICE_GROUPS, voice_group
from codec.report_plots import plot_quality_vs_bitrate, plot_spectrograms

# WavTokenizer (Ji et al. 2024), LibriTTS test-clean, 40 tokens/s single codebook.
PAPER_POINT = {"label": "WavTokenizer paper", "kbps": 0.9, "pesq_wb": 2.37, "stoi": 0.914}
COLUMNS = (
    ("kbps_real", "kbps (real)", "{:.2f}"),
    ("kbps_nominal", "kbps (nominal)", "{:.2f}"),
    ("pesq_wb", "PESQ-wb", "{:.2f}"),
    ("stoi", "STOI", "{:.3f}"),
    ("mel_l1", "mel L1", "{:.3f}"),
    ("si_sdr", "SI-SDR (dB)", "{:.1f}"),
    ("dnsmos", "DNSMOS", "{:.2f}"),
    ("codes_used", "codes used", "{}"),
    ("entropy_bits", "entropy (bits)", "{:.2f}"),
)
SPECTROGRAM_CLIPS = 3
VOICE_METRICS = ("pesq_wb", "stoi", "mel_l1")


@dataclass
class SystemResult:
    """One row of the report: a codec (or the ground truth) scored on every clip.

    `bits[i]` is the encoded size of clip i in bits (None for the ground truth); `durations`
    are seconds; `delays` are the samples removed by alignment (None where not aligned);
    `examples` maps a clip name to its (T,) output at `MEL_RATE` for the spectrogram plots.
    """

    key: str
    label: str
    kind: str  # "model", "baseline" or "reference"
    nominal_kbps: float | None = None
    clips: list[str] = field(default_factory=list)
    scores: list[ClipScores] = field(default_factory=list)
    bits: list[int | None] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    delays: list[int | None] = field(default_factory=list)
    codes_used: int | None = None
    codebook_size: int | None = None
    entropy_bits: float | None = None
    examples: dict[str, np.ndarray] = field(default_factory=dict)

    def add(
        self, clip: str, scores: ClipScores, bits: int | None, duration: float, delay: int | None
    ) -> None:
        self.clips.append(clip)
        self.scores.append(scores)
        self.bits.append(bits)
        self.durations.append(duration)
        self.delays.append(delay)

    @property
    def real_kbps(self) -> float | None:
        """Total encoded bits over total duration, in kbit/s (None without encoded sizes)."""
        if not self.bits or any(b is None for b in self.bits):
            return None
        return sum(self.bits) / sum(self.durations) / 1000.0

    def summary(self) -> dict[str, object]:
        """Means over clips plus bitrates and codebook figures, keyed as in `COLUMNS`."""
        return {
            "label": self.label,
            "kind": self.kind,
            "clips": len(self.clips),
            "kbps_real": self.real_kbps,
            "kbps_nominal": self.nominal_kbps,
            **mean_scores(self.scores),
            "codes_used": self.codes_used,
            "codebook_size": self.codebook_size,
            "entropy_bits": self.entropy_bits,
        }


@dataclass
class EvalRun:
    """A whole evaluation: the model, the data, the skipped clips and every system's results.

    `references` maps the spectrogram clips' names to their (T,) reference at `MEL_RATE`;
    `voice_f0` maps each clip's name to its reference's median F0 in Hz (None: too little voiced
    speech), which groups the clips by voice.
    """

    model: dict[str, object]
    data_dir: str
    systems: list[SystemResult]
    skipped: list[tuple[str, str]]
    dnsmos: bool
    references: dict[str, np.ndarray] = field(default_factory=dict)
    voice_f0: dict[str, float | None] = field(default_factory=dict)

    @property
    def num_clips(self) -> int:
        return len(self.systems[0].clips) if self.systems else 0


def _cell(value: object, fmt: str, row: dict[str, object], key: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if key == "codes_used" and row.get("codebook_size"):
        return f"{value} / {row['codebook_size']}"
    return fmt.format(value)


def markdown_table(run: EvalRun) -> str:
    """One markdown table: a row per system, the columns of `COLUMNS`."""
    head = ["system", *(title for _, title, _ in COLUMNS)]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(COLUMNS)) + "|",
    ]
    for system in run.systems:
        row = system.summary()
        cells = [system.label, *(_cell(row[k], f, row, k) for k, _, f in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def by_voice(run: EvalRun) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """{system key: {voice group: {"clips": n, metric: mean}}} over the clips of each group that
    has any; the ground truth and clips without a median F0 are left out."""
    groups = {name: voice_group(f0) for name, f0 in run.voice_f0.items()}
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for system in run.systems:
        if system.kind == "reference":
            continue
        rows = {}
        for label, _, _, _ in VOICE_GROUPS:
            scores = [
                sc
                for c, sc in zip(system.clips, system.scores, strict=True)
                if groups.get(c) == label
            ]
            if scores:
                means = mean_scores(scores)
                rows[label] = {"clips": len(scores), **{m: means[m] for m in VOICE_METRICS}}
        out[system.key] = rows
    return out


def _clips(count: int) -> str:
    return f"{count} clip" if count == 1 else f"{count} clips"


def voice_table(run: EvalRun) -> str:
    """A markdown table of PESQ-wb / STOI per system and voice group ("" without voice F0s)."""
    table = by_voice(run)
    present = [g for g, _, _, _ in VOICE_GROUPS if any(g in rows for rows in table.values())]
    if not present:
        return ""
    counts = {g: next(rows[g]["clips"] for rows in table.values() if g in rows) for g in present}
    head = ["system", *(f"{g} ({_clips(counts[g])})" for g in present)]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(present)) + "|",
    ]
    for system in run.systems:
        rows = table.get(system.key)
        if rows is None:
            continue
        cells = []
        for g in present:
            row = rows.get(g, {})
            pesq, stoi = row.get("pesq_wb"), row.get("stoi")
            cells.append("—" if pesq is None or stoi is None else f"{pesq:.2f} / {stoi:.3f}")
        lines.append("| " + " | ".join([system.label, *cells]) + " |")
    return "\n".join(lines)


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def results_dict(run: EvalRun) -> dict[str, object]:
    """What results.json holds: settings, skipped clips, and one summary per system."""
    return {
        "model": run.model,
        "data": run.data_dir,
        "clips": run.num_clips,
        "skipped": len(run.skipped),
        "skipped_clips": [{"clip": c, "reason": r} for c, r in run.skipped],
        "dnsmos": run.dnsmos,
        "systems": {s.key: {k: _json_safe(v) for k, v in s.summary().items()} for s in run.systems},
        "by_voice": {
            "groups": {
                label: {"low_hz": low, "high_hz": _json_safe(high)}
                for label, _, low, high in VOICE_GROUPS
            },
            "clips_without_f0": sum(f0 is None for f0 in run.voice_f0.values()),
            "systems": {
                key: {g: {k: _json_safe(v) for k, v in row.items()} for g, row in rows.items()}
                for key, rows in by_voice(run).items()
            },
        },
        "paper_reference": PAPER_POINT,
    }


def write_csv(run: EvalRun, path: Path) -> None:
    """One row per (system, clip): duration, real kbps, every metric, alignment delay."""
    metrics = list(ClipScores.__dataclass_fields__)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        head = ["system", "clip", "duration_s", "kbps_real", *metrics, "delay_samples", "ref_f0_hz"]
        writer.writerow(head)
        for s in run.systems:
            for clip, sc, bits, dur, delay in zip(
                s.clips, s.scores, s.bits, s.durations, s.delays, strict=True
            ):
                kbps = "" if bits is None else f"{bits / dur / 1000:.4f}"
                values = ["" if (v := getattr(sc, m)) is None else f"{v:.4f}" for m in metrics]
                f0 = run.voice_f0.get(clip)
                writer.writerow(
                    [s.key, clip, f"{dur:.3f}", kbps, *values]
                    + ["" if delay is None else delay, "" if f0 is None else f"{f0:.1f}"]
                )


def _voice_section(run: EvalRun) -> list[str]:
    table = voice_table(run)
    if not table:
        return []
    missing = sum(f0 is None for f0 in run.voice_f0.values())
    note = f" ({_clips(missing)} with too little voiced speech left out)" if missing else ""
    return [
        "## By voice pitch",
        "",
        "PESQ-wb / STOI over the clips grouped by the reference's median F0" + note + ".",
        "",
        table,
        "",
    ]


def _markdown(run: EvalRun, table: str, spectrograms: list[Path]) -> str:
    model = run.model
    lines = [
        "# wavtok eval report",
        "",
        f"- model: `{model.get('name')}` ({model.get('path')}), "
        f"{model.get('sample_rate')} Hz, {model.get('frame_rate'):g} tokens/s, "
        f"{model.get('codebook_size')}-entry codebook",
        f"- data: `{run.data_dir}`: {run.num_clips} clips scored, {len(run.skipped)} skipped",
        f"- DNSMOS: {'on' if run.dnsmos else 'off (--no-dnsmos)'}",
        "",
        table,
        "",
        "Higher is better for PESQ-wb, STOI, SI-SDR and DNSMOS; lower is better for mel L1. "
        "`kbps (real)` counts every byte written (token-file header, Ogg pages); "
        "`kbps (nominal)` is the rate asked for. See docs/evaluation.md.",
        "",
        f"Reference point: {PAPER_POINT['label']}, {PAPER_POINT['kbps']} kbps, "
        f"PESQ-wb {PAPER_POINT['pesq_wb']}, STOI {PAPER_POINT['stoi']} (LibriTTS test-clean).",
        "",
        *_voice_section(run),
        "![quality vs bitrate](quality_vs_bitrate.png)",
        "",
    ]
    lines += [f"![{p.stem}]({p.name})" for p in spectrograms]
    if run.skipped:
        lines += ["", "## Skipped clips", ""]
        lines += [f"- `{clip}`: {reason}" for clip, reason in run.skipped]
    return "\n".join(lines) + "\n"


def write_report(run: EvalRun, out_dir: Path) -> str:
    """Write every output file into `out_dir` (created if needed); return the markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(run)
    (out_dir / "results.json").write_text(json.dumps(results_dict(run), indent=2) + "\n")
    write_csv(run, out_dir / "per_clip.csv")
    spectrograms = plot_spectrograms(run, out_dir)
    plot_quality_vs_bitrate(run, out_dir / "quality_vs_bitrate.png", PAPER_POINT)
    (out_dir / "report.md").write_text(_markdown(run, table, spectrograms))
    return table
