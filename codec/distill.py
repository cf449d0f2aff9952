"""Search distillation: an encoder that gives, at full speed, the tokens search encoding finds.

Search encoding (`codec.search`) picks better tokens than the nearest code, but runs at about
half real time. Here its choices on training audio become labels (`label_data`), and the encoder
alone then learns them (`distill_encoder`): a cross-entropy over the whole codebook whose logits
are the negative squared distances from the encoder's lookup vector to each code, over a learnt
temperature. So it is taught to make the searched code the nearest one. The codebook and the
decoder are frozen: the distilled model has the same codebook_id, decodes every existing token
file exactly as before, and streams as before (the encoder's modules are unchanged).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

from codec.audio import load_mono
from codec.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from codec.data import MANIFEST, forbid_test_data, manifest_rows
from codec.search import SearchSettings, search_encode

LABELS_FILE = "labels.safetensors"
LABELS_INFO = "labels.json"


class DistillConfig(BaseModel):
    """Training settings of `distill_encoder` (YAML-loadable like every config here)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(4000, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    crop_frames: int = Field(150, ge=2)  # frames per training crop (2 s at 75 Hz)
    # The first frames of a crop are not scored: the causal encoder has not heard their past,
    # which it had when the segment was labelled whole.
    warm_frames: int = Field(10, ge=0)
    held_out: int = Field(20, ge=1)  # labelled segments kept out of training, for accuracy
    seed: int = 0
    checkpoint_every: int = Field(500, ge=1)
    # A folder of test clips scored (PESQ-wb, STOI of nearest-code round trips) at each
    # checkpoint, to watch what the accuracy buys; None: no scoring.
    eval_data: str | None = None
    eval_clips: int = Field(5, ge=1)


def _segments(data_dir: Path) -> list[dict]:
    forbid_test_data(data_dir)
    rows = manifest_rows(data_dir / MANIFEST)
    # A partial labelling (or a held-out set) then spreads over sources and speakers.
    random.Random(0).shuffle(rows)
    return rows


def load_labels(labels_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A labels folder -> ({segment path: (F,) int64 token ids}, its `labels.json` info)."""
    info_path = labels_dir / LABELS_INFO
    if not info_path.is_file():
        raise FileNotFoundError(f"{labels_dir}: no labels (run `wavtok distill label`)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    path = labels_dir / LABELS_FILE
    labels = load_file(str(path)) if path.is_file() else {}
    return {k: v.long() for k, v in labels.items()}, info


def _save_labels(labels_dir: Path, labels: dict[str, torch.Tensor]) -> None:
    tmp = labels_dir / f".{LABELS_FILE}.tmp"
    save_file({k: v.to(torch.int16) for k, v in labels.items()}, str(tmp))
    os.replace(tmp, labels_dir / LABELS_FILE)


def label_data(
    codec,
    data_dir: Path,
    labels_dir: Path,
    settings: SearchSettings,
    max_segments: int | None = None,
    log: Callable[[str], None] = print,
    save_every: int = 5,
) -> int:
    """Search-encode the segments of a prepared folder (`wavtok data prepare`) into
    `labels_dir`; returns how many are labelled. Resumable: labelled segments are skipped and
    the labels are saved every `save_every` segments. Labels of another model, codebook or
    search setting are refused rather than mixed."""
    labels_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "model": codec.name,
        "codebook_id": codec.codebook_id,
        "candidates": settings.candidates,
        "ahead": settings.ahead,
        "span": settings.span,
    }
    labels: dict[str, torch.Tensor] = {}
    if (labels_dir / LABELS_INFO).is_file():
        labels, old = load_labels(labels_dir)
        if old != info:
            raise ValueError(f"{labels_dir}: holds labels of {old}, not {info}")
    (labels_dir / LABELS_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    todo = [r for r in _segments(data_dir) if r["path"] not in labels]
    if max_segments is not None:
        todo = todo[: max(0, max_segments - len(labels))]
    for i, row in enumerate(todo, 1):
        wav, _ = load_mono(data_dir / row["path"], codec.sample_rate)
        codes, _ = search_encode(codec, wav[None, None].to(codec.device), None, settings)
        labels[row["path"]] = codes[0].cpu()
        if i % save_every == 0 or i == len(todo):
            _save_labels(labels_dir, labels)
            log(f"labelled {len(labels)} segments ({i}/{len(todo)} of this run)")
    return len(labels)


def _codebook_logits(codec, wav: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) samples -> (B, F, codebook_size) negative squared distances (up to each
    frame's own norm) from the encoder's lookup vectors to every code."""
    latents = codec.encoder(wav)
    vectors = codec.quantizer.search_space(latents, codec.f0_channel_of(wav))[1]
    book = codec.quantizer.vq._codebook.embed
    return 2 * vectors @ book.t() - book.pow(2).sum(-1)


@torch.no_grad()
def nearest_accuracy(codec, segments: dict[str, torch.Tensor], labels) -> float:
    """Share of frames whose nearest code is the label, over whole segments."""
    hits = total = 0
    for name, wav in segments.items():
        codes, _ = codec.encode(wav[None, None].to(codec.device))
        label = labels[name].to(codes.device)
        frames = min(codes.shape[-1], label.numel())
        hits += int((codes[0, :frames] == label[:frames]).sum())
        total += frames
    return hits / max(total, 1)


def _crops(codec, segments, labels, names, cfg: DistillConfig, gen: torch.Generator):
    """(batch, 1, crop * hop) audio crops at frame boundaries and their (batch, crop) labels."""
    hop, crop = codec.hop_length, cfg.crop_frames
    wavs, ids = [], []
    for i in torch.randint(0, len(names), (cfg.batch_size,), generator=gen).tolist():
        wav, label = segments[names[i]], labels[names[i]]
        start = int(torch.randint(0, max(1, label.numel() - crop + 1), (1,), generator=gen))
        piece = wav[start * hop : (start + crop) * hop]
        wavs.append(torch.nn.functional.pad(piece, (0, crop * hop - piece.numel())))
        # Frames past a short segment's end are ignored (-100 is cross_entropy's ignore_index).
        target = torch.full((crop,), -100, dtype=torch.long)
        part = label[start : start + crop]
        target[: part.numel()] = part
        ids.append(target)
    return torch.stack(wavs)[:, None], torch.stack(ids)


def distill_encoder(
    codec,
    data_dir: Path,
    labels_dir: Path,
    cfg: DistillConfig,
    run_dir: Path,
    log: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, float]:
    """Train `codec`'s encoder in place on the labels (module docstring); resumes from
    `run_dir`'s last checkpoint. Returns {"step", "accuracy_start", "accuracy"}: the held-out
    segments' share of frames whose nearest code is the searched one."""
    labels, info = load_labels(labels_dir)
    if info["codebook_id"] != codec.codebook_id:
        raise ValueError(
            f"{labels_dir}: labels are for codebook {info['codebook_id']}, "
            f"the model's is {codec.codebook_id}"
        )
    names = sorted(n for n in labels if (data_dir / n).is_file())
    if len(names) <= cfg.held_out:
        raise ValueError(f"{labels_dir}: {len(names)} labelled segments, need > {cfg.held_out}")
    random.Random(cfg.seed).shuffle(names)
    held, train = names[: cfg.held_out], names[cfg.held_out :]
    device = codec.device
    segments = {n: load_mono(data_dir / n, codec.sample_rate)[0] for n in names}
    held_segments = {n: segments[n] for n in held}
    codec.eval()
    codec.requires_grad_(False)
    codec.encoder.requires_grad_(True)
    log_tau = torch.zeros((), device=device, requires_grad=True)
    params = [*codec.encoder.parameters(), log_tau]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    step, start_accuracy = 0, None
    checkpoints = list_checkpoints(run_dir)
    if checkpoints:
        state = load_checkpoint(checkpoints[-1])
        codec.encoder.load_state_dict(state["encoder"])
        log_tau.data.copy_(state["log_tau"])
        opt.load_state_dict(state["optimizer"])
        step, start_accuracy = int(state["step"]), float(state["accuracy_start"])
        log(f"resumed from {checkpoints[-1]} at step {step}")
    else:
        with torch.no_grad():
            wav, _ = _crops(codec, segments, labels, train, cfg, torch.Generator().manual_seed(0))
            top = _codebook_logits(codec, wav.to(device)).topk(2, -1).values
            # A start where the nearest two codes differ by about one unit of the softmax.
            log_tau.fill_(float((top[..., 0] - top[..., 1]).median().clamp(min=1e-3).log()))
        start_accuracy = nearest_accuracy(codec, held_segments, labels)
        log(f"held-out accuracy at the start: {start_accuracy:.3f}")

    def checkpoint() -> None:
        state = {
            "encoder": codec.encoder.state_dict(),
            "log_tau": log_tau.detach(),
            "optimizer": opt.state_dict(),
            "step": step,
            "accuracy_start": start_accuracy,
            "config": cfg.model_dump(),
        }
        save_checkpoint(run_dir, step, state, keep_last=2)

    while step < cfg.steps and not should_stop():
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        wav, target = _crops(codec, segments, labels, train, cfg, gen)
        logits = _codebook_logits(codec, wav.to(device)) / log_tau.exp()
        logits, target = logits[:, cfg.warm_frames :], target[:, cfg.warm_frames :].to(device)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.encoder.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            log(f"step {step} loss {loss.item():.3f} temperature {log_tau.exp().item():.3g}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            accuracy = nearest_accuracy(codec, held_segments, labels)
            log(f"step {step} held-out accuracy {accuracy:.3f} (start {start_accuracy:.3f})")
            if cfg.eval_data:
                from codec.quickeval import quick_eval

                scores = quick_eval(codec, Path(cfg.eval_data), cfg.eval_clips)[0]
                log(
                    f"step {step} quick eval PESQ-wb {scores['pesq']:.3f} STOI {scores['stoi']:.4f}"
                )
            checkpoint()
    codec.requires_grad_(False)
    if step % cfg.checkpoint_every and step != cfg.steps:
        checkpoint()
    accuracy = nearest_accuracy(codec, held_segments, labels)
    return {"step": step, "accuracy_start": start_accuracy, "accuracy": accuracy}
