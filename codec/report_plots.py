"""The `wavtok eval` report's PNG plots: spectrograms of example clips and quality against
bitrate. Matplotlib loads inside each function, so importing the report stays light."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from codec.metrics import MEL_RATE

if TYPE_CHECKING:
    from codec.report import EvalRun, SystemResult


def _safe_name(clip: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(clip).with_suffix("").as_posix()).strip("_")


def _spectrogram_db(wav: np.ndarray) -> np.ndarray:
    """(T,) samples at MEL_RATE -> (freq, frames) magnitude in dB."""
    spec = torch.stft(
        torch.as_tensor(wav, dtype=torch.float32),
        n_fft=1024,
        hop_length=256,
        window=torch.hann_window(1024),
        return_complex=True,
    ).abs()
    return (20.0 * spec.clamp(min=1e-5).log10()).numpy()


def _best_baseline(run: EvalRun) -> SystemResult | None:
    baselines = [s for s in run.systems if s.kind == "baseline"]
    scored = [(s.summary()["pesq_wb"], s) for s in baselines]
    scored = [(p, s) for p, s in scored if p is not None]
    return max(scored, key=lambda ps: ps[0])[1] if scored else None


def plot_spectrograms(run: EvalRun, out_dir: Path) -> list[Path]:
    """`spectrograms_<clip>.png` per example clip: ground truth, model, best baseline (PESQ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = next((s for s in run.systems if s.kind == "model"), None)
    best = _best_baseline(run)
    written = []
    for clip, ref in run.references.items():
        panels = [("Ground truth", ref)]
        for system in (model, best):
            if system is not None and clip in system.examples:
                panels.append((system.label, system.examples[clip]))
        fig, axes = plt.subplots(
            len(panels), 1, figsize=(10, 2.6 * len(panels)), squeeze=False, layout="constrained"
        )
        duration = len(ref) / MEL_RATE
        for ax, (title, wav) in zip(axes[:, 0], panels, strict=True):
            image = ax.imshow(
                _spectrogram_db(wav),
                origin="lower",
                aspect="auto",
                extent=(0.0, duration, 0.0, MEL_RATE / 2000.0),
                vmin=-100.0,
                vmax=20.0,
                cmap="magma",
            )
            ax.set_title(title)
            ax.set_ylabel("kHz")
        axes[-1, 0].set_xlabel("time (s)")
        fig.colorbar(image, ax=axes[:, 0].tolist(), label="dB")
        fig.suptitle(clip)
        path = out_dir / f"spectrograms_{_safe_name(clip)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def plot_quality_vs_bitrate(run: EvalRun, path: Path, paper_point: dict) -> None:
    """PESQ-wb and STOI against real kbps, with the ground truth and `paper_point` (a published
    result: label, kbps, pesq_wb, stoi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    rows = [s.summary() for s in run.systems]
    for ax, key, title in ((axes[0], "pesq_wb", "PESQ-wb"), (axes[1], "stoi", "STOI")):
        for row in rows:
            if row[key] is None:
                continue
            if row["kbps_real"] is None:  # the ground truth has no bitrate: draw its level
                ax.axhline(row[key], color="grey", ls="--", lw=1, label=str(row["label"]))
                continue
            marker = "o" if row["kind"] == "baseline" else "s"
            ax.scatter(row["kbps_real"], row[key], marker=marker, s=50, zorder=3)
            ax.annotate(
                str(row["label"]), (row["kbps_real"], row[key]), xytext=(5, 5),
                textcoords="offset points", fontsize=8,
            )  # fmt: skip
        ax.scatter(
            paper_point["kbps"], paper_point[key], marker="*", s=180, color="gold",
            edgecolor="black", zorder=4, label=f"{paper_point['label']} (0.9 kbps)",
        )  # fmt: skip
        ax.set_xscale("log")
        ax.margins(x=0.15)  # room for the labels of the outermost points
        # Plain numbers on the log axis: "2", not "2 x 10^0".
        ax.xaxis.set_major_locator(FixedLocator([0.5, 1, 2, 4, 8, 16, 32]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("real bitrate (kbps, log scale)")
        ax.set_ylabel(title)
        ax.set_title(f"{title} vs bitrate (higher is better)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
