"""`wavtok compare A B`: paired, clip-by-clip differences between two `wavtok eval` runs.

Means over a test set move by a few hundredths between models; whether such a step is real
shows only clip by clip: the mean difference, its standard error and on how many clips one
side is better. Each side is a report directory (its `per_clip.csv`) or several joined with
commas, e.g. an eval run in parts; `--system-a` / `--system-b` pick a row of each (the model by
default, or a baseline such as `codec2_3200`). Only the clips both sides scored are compared.
With the reference's median F0 in the CSVs (`ref_f0_hz`, written since 2026-12-03), the
PESQ-wb and STOI differences are also given per voice group (`codec.pitch.VOICE_GROUPS`).
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

# (CSV column, title, format, whether higher is better)
METRICS = (
    ("pesq_wb", "PESQ-wb", "{:.4f}", True),
    ("stoi", "STOI", "{:.4f}", True),
    ("mel_l1", "mel L1", "{:.4f}", False),
    ("si_sdr", "SI-SDR (dB)", "{:.2f}", True),
    ("dnsmos", "DNSMOS", "{:.3f}", True),
)


@dataclass
class Side:
    """One system's per-clip rows: {clip: {column: value}}, and where they came from."""

    label: str
    rows: dict[str, dict[str, str]]


def read_side(spec: str, system: str) -> Side:
    """ "DIR[,DIR...]" (report directories or per_clip.csv files) and a system key -> its rows."""
    rows: dict[str, dict[str, str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        path = Path(part)
        csv_path = path / "per_clip.csv" if path.is_dir() else path
        if not csv_path.is_file():
            raise FileNotFoundError(f"{part}: no per_clip.csv (write one with wavtok eval --out)")
        try:
            with open(csv_path, newline="", encoding="utf-8") as f:
                table = list(csv.DictReader(f))
        except (UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"{csv_path}: not a wavtok eval per_clip.csv ({e})") from None
        if not table or "system" not in table[0] or "clip" not in table[0]:
            raise ValueError(f"{csv_path}: not a wavtok eval per_clip.csv")
        mine = [r for r in table if r["system"] == system]
        if not mine:
            found = ", ".join(sorted({r["system"] for r in table}))
            raise ValueError(f"{csv_path}: no system {system!r} (it has: {found})")
        for row in mine:
            if row["clip"] in rows:
                raise ValueError(f"{spec}: clip {row['clip']!r} appears twice for {system!r}")
            rows[row["clip"]] = row
    if not rows:
        raise ValueError(f"{spec!r}: no report directory given")
    return Side(f"{spec} ({system})", rows)


def _value(row: dict[str, str], column: str) -> float | None:
    text = row.get(column, "")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class Paired:
    """Paired statistics of one metric over the clips where both sides have it."""

    clips: int
    mean_a: float
    mean_b: float
    diff: float  # mean of A - B
    stderr: float  # of `diff`; nan for a single clip
    a_better: int  # clips where A is strictly better, in the metric's direction


def paired(a: Side, b: Side, clips: list[str], column: str, higher_better: bool) -> Paired | None:
    """A against B on `column` over `clips` (None where no clip has it on both sides)."""
    pairs = [(va, vb) for c in clips if (va := _value(a.rows[c], column)) is not None
             and (vb := _value(b.rows[c], column)) is not None]  # fmt: skip
    if not pairs:
        return None
    n = len(pairs)
    diffs = [va - vb for va, vb in pairs]
    mean = sum(diffs) / n
    stderr = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else float("nan")
    better = sum(1 for d in diffs if (d > 0 if higher_better else d < 0))
    return Paired(
        n, sum(p[0] for p in pairs) / n, sum(p[1] for p in pairs) / n, mean, stderr, better
    )


def _group_of(row: dict[str, str]) -> str | None:
    from codec.pitch import voice_group

    return voice_group(_value(row, "ref_f0_hz"))


def compare_text(a: Side, b: Side) -> str:
    """The comparison as text: a table per metric, then per voice group where known."""
    from codec.pitch import VOICE_GROUPS

    clips = sorted(set(a.rows) & set(b.rows))
    if not clips:
        raise ValueError("the two sides have no clip in common")
    only = len(set(a.rows) ^ set(b.rows))
    lines = [f"A: {a.label}", f"B: {b.label}", f"paired on {len(clips)} clips"]
    if only:
        lines[-1] += f" ({only} scored on one side only left out)"
    head = "| metric | A | B | A - B | s.e. | A better on |"
    lines += ["", head, "|---|---:|---:|---:|---:|---:|"]
    for column, title, fmt, higher in METRICS:
        p = paired(a, b, clips, column, higher)
        if p is None:
            continue
        cells = [fmt.format(p.mean_a), fmt.format(p.mean_b), f"{p.diff:+.4f}", f"{p.stderr:.4f}"]
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {p.a_better}/{p.clips} |")
    groups = {c: _group_of(a.rows[c]) or _group_of(b.rows[c]) for c in clips}
    if any(groups.values()):
        lines += ["", "By voice pitch (reference's median F0): A - B (s.e.), A better on", ""]
        lines += ["| voice | clips | PESQ-wb | STOI |", "|---|---:|---:|---:|"]
        for label, _, _, _ in VOICE_GROUPS:
            members = [c for c in clips if groups[c] == label]
            if not members:
                continue
            cells = []
            for column in ("pesq_wb", "stoi"):
                p = paired(a, b, members, column, True)
                cells.append(
                    "—" if p is None else f"{p.diff:+.4f} ({p.stderr:.4f}), {p.a_better}/{p.clips}"
                )
            lines.append(f"| {label} | {len(members)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run `wavtok compare` from parsed arguments; prints the comparison and returns 0."""
    a = read_side(args.a, args.system_a)
    b = read_side(args.b, args.system_b)
    print(compare_text(a, b))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `compare` subcommand to the `wavtok` CLI."""
    p = subparsers.add_parser(
        "compare",
        help="paired, clip-by-clip differences between two wavtok eval runs",
        description="Compare two `wavtok eval` report directories clip by clip: mean "
        "difference, standard error and clips where A is better, per metric and per voice.",
    )
    p.add_argument("a", help="report directory A (or several, comma-separated, e.g. parts)")
    p.add_argument("b", help="report directory B (the same one to compare two of its systems)")
    p.add_argument("--system-a", default="model", help="row of A to compare (default: model)")
    p.add_argument("--system-b", default="model", help="row of B (e.g. codec2_3200)")
    p.set_defaults(func=run)
