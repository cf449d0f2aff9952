"""GAN training of the codec with exact resume (`wavtok train` lives in `codec.train_cli`).

One process per device; under `torchrun` it uses DDP. Phase 1 (warm-up) trains the generator on
the mel and commitment losses alone; from `warmup_steps` on, the multi-period, multi-resolution
and multi-scale-STFT discriminators join with adversarial and feature-matching losses.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from codec import precision
from codec.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from codec.data import Augment, SegmentDataset
from codec.discriminators import Discriminators
from codec.growth import grow_from
from codec.losses import (
    BandEnvelopeLoss,
    LatentPitchHead,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    PesqProxyLoss,
    StoiProxyLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    pitch_loss,
)
from codec.model import Codec
from codec.pitch import estimate_f0
from codec.quantizer import codebook_usage
from codec.trainconfig import TrainConfig


def _lr_lambda(cfg: TrainConfig):
    def fn(step: int) -> float:
        if step < cfg.lr_warmup_steps:
            return (step + 1) / cfg.lr_warmup_steps
        progress = min(1.0, step / max(1, cfg.steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


def _generator_param_groups(
    named: list[tuple[str, nn.Parameter]], lr: float, scales: dict[str, float]
) -> list[dict]:
    """AdamW parameter groups: `lr` times the multiplier of the first prefix in `scales` that a
    parameter's name starts with (1 if none). One group when `scales` is empty."""
    unmatched = [prefix for prefix in scales if not any(n.startswith(prefix) for n, _ in named)]
    if unmatched:
        raise ValueError(f"lr_scale prefixes match no model parameter: {', '.join(unmatched)}")
    by_scale: dict[float, list[nn.Parameter]] = {1.0: []}
    for name, param in named:
        scale = next((s for prefix, s in scales.items() if name.startswith(prefix)), 1.0)
        by_scale.setdefault(scale, []).append(param)
    return [{"params": ps, "lr": lr * scale} for scale, ps in by_scale.items() if ps]


class Trainer:
    """Owns the models, optimisers, data sampler and logging of one training run."""

    def __init__(self, cfg: TrainConfig, data: list[Path], run_dir: Path, device: str) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda") and self.world > 1:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
        self.device = torch.device(device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed + self.rank)
        self.codec = Codec.from_config(cfg.codec_config()).to(self.device).train()
        d = cfg.discriminators
        self.discs = Discriminators(
            d.mpd_channels, d.mrd_channels, d.msstft_filters, d.families
        ).to(self.device)
        self.mel_loss = MultiResolutionMelLoss(self.codec.sample_rate).to(self.device)
        # Optional waveform losses (fake, real) -> scalar, built only when weighted, in the
        # order they are added to the generator's loss.
        rate = self.codec.sample_rate
        optional = {
            "mel_compressed": lambda: MultiResolutionMelLoss(rate, compression=0.3),
            "stft": lambda: MultiResolutionSTFTLoss(max_hz=cfg.stft_max_hz, sample_rate=rate),
            "envelope": lambda: BandEnvelopeLoss(rate),
            "pesq": lambda: PesqProxyLoss(rate),
            "stoi": lambda: StoiProxyLoss(rate),
        }
        self.weighted_losses = {
            name: make().to(self.device)
            for name, make in optional.items()
            if getattr(cfg.losses, name)
        }
        # Trained with the generator, saved in checkpoints, never exported.
        self.latent_pitch = (
            LatentPitchHead(self.codec.config.quantizer.codebook_dim).to(self.device)
            if cfg.losses.encoder_pitch
            else None
        )
        kw = dict(betas=cfg.betas, weight_decay=cfg.weight_decay)
        named = list(self.codec.named_parameters())
        if self.latent_pitch is not None:
            named += list(self.latent_pitch.named_parameters(prefix="latent_pitch"))
        groups = _generator_param_groups(named, cfg.lr_generator, cfg.lr_scale)
        self.opt_g = torch.optim.AdamW(groups, **kw)
        self.opt_d = torch.optim.AdamW(self.discs.parameters(), lr=cfg.lr_discriminator, **kw)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, _lr_lambda(cfg))
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, _lr_lambda(cfg))
        self.data = SegmentDataset(data, self.codec.sample_rate)
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        self.augment = Augment(gain_db=cfg.gain_db, noise_prob=cfg.noise_prob)
        hop = self.codec.hop_length
        self.seg_len = max(hop, round(cfg.segment_seconds * self.codec.sample_rate / hop) * hop)
        self.step = 0
        self.audio_seconds_seen = 0.0
        self.skipped_updates = 0  # updates dropped for a non-finite gradient (not checkpointed)
        self.stop_requested = False
        # bf16 autocast (CUDA, or `cpu_bf16`), decided at the first step, once the weights are
        # in place: see `_checked_mixed_precision`.
        self.mixed_precision: bool | None = None
        self.g_model = self.codec
        self.d_model = self.discs
        self.latent_pitch_model = self.latent_pitch
        if self.world > 1:
            self.g_model = DistributedDataParallel(self.codec)
            self.d_model = DistributedDataParallel(self.discs)
            if self.latent_pitch is not None:
                self.latent_pitch_model = DistributedDataParallel(self.latent_pitch)
        self.writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "data": self.gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "step": self.step,
            "audio_seconds_seen": self.audio_seconds_seen,
            "config": self.cfg.model_dump(mode="json"),
            "codec": self.codec.state_dict(),
            "discs": self.discs.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "rng": rng,
        }
        if self.latent_pitch is not None:
            state["latent_pitch"] = self.latent_pitch.state_dict()
        return state

    def load_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.audio_seconds_seen = float(state["audio_seconds_seen"])
        self.codec.load_state_dict(state["codec"])
        self.discs.load_state_dict(state["discs"])
        if self.latent_pitch is not None:
            self.latent_pitch.load_state_dict(state["latent_pitch"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        torch.set_rng_state(state["rng"]["torch"])
        self.gen.set_state(state["rng"]["data"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    def resume_if_possible(self) -> bool:
        ckpts = list_checkpoints(self.run_dir)
        if not ckpts:
            return False
        self.load_state(load_checkpoint(ckpts[-1]))
        self.log(f"resumed from {ckpts[-1].name} at step {self.step}")
        return True

    def init_from(self, model: str | Path) -> None:
        """Start from a trained model's weights and codebook (fresh optimisers and schedule):
        how a later session continues the shipped model when its run directory is gone. The
        training model may also be that model grown: ConvNeXt blocks appended to its decoder,
        a spectral branch added to its encoder and/or a lookahead given to its decoder, each
        starting out as a no-op."""
        growth = grow_from(self.codec, Codec.from_pretrained(model))
        if growth is None:
            raise ValueError(f"{model}: its architecture differs from the training config's model")
        self.log(f"initialised from {model}{growth.describe()}")

    def save(self) -> Path | None:
        if self.rank != 0:
            return None
        return save_checkpoint(self.run_dir, self.step, self.state(), self.cfg.keep_last)

    def _teacher_forced(self) -> bool:
        # Drawn from the data generator (checkpointed), and only when it is a coin toss, so
        # that resumes are exact and configs at 0 or 1 keep their data stream.
        share = self.cfg.teacher_f0
        if share in (0.0, 1.0):
            return share == 1.0
        return bool(torch.rand((), generator=self.gen) < share)

    # -- one step --------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg, w = self.cfg, self.cfg.losses
        real = self.data.sample(cfg.batch_size, self.seg_len, self.gen, self.augment).to(
            self.device
        )
        if self.mixed_precision is None:
            self.mixed_precision = self._checked_mixed_precision()
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.mixed_precision
            else nullcontext()
        )
        f0 = voiced = None
        if self.codec.decoder.head.source is not None or self.latent_pitch is not None:
            f0, voiced = estimate_f0(real[:, 0], self.codec.sample_rate, self.codec.hop_length)
        source_f0 = f0 if self._teacher_forced() else None
        with autocast:
            out = self.g_model(real, f0=source_f0)
        fake = out.audio[:, None, : real.shape[-1]].float()
        adversarial = self.step >= cfg.warmup_steps
        logs: dict[str, float] = {}
        # On a CPU the discriminators cost far more than the generator: score a sub-batch only.
        n_disc = min(real.shape[0], cfg.discriminators.batch_size or real.shape[0])
        if adversarial:
            with autocast:
                d_real = self.d_model(real[:n_disc])
                d_fake = self.d_model(fake[:n_disc].detach())
                loss_d = sum(
                    discriminator_loss(d_real[k][0], d_fake[k][0], cfg.discriminators.loss)
                    for k in d_real
                )
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            if torch.isfinite(
                torch.nn.utils.clip_grad_norm_(self.discs.parameters(), cfg.grad_clip)
            ):
                self.opt_d.step()
            else:
                self.skipped_updates += 1
                logs["nonfinite/skipped_updates"] = self.skipped_updates
            self.sched_d.step()
            logs["loss/discriminator"] = float(loss_d.detach())
        mel = self.mel_loss(fake, real)
        commit = out.vq.commit_loss.float()
        loss_g = w.mel * mel + w.commitment * commit
        if out.pitch is not None:
            pitch = pitch_loss(out.pitch, f0, voiced)
            loss_g = loss_g + w.pitch * pitch
            logs["loss/pitch"] = float(pitch.detach())
        if self.latent_pitch_model is not None:
            encoder_pitch = pitch_loss(self.latent_pitch_model(out.vq.lookup), f0, voiced)
            loss_g = loss_g + w.encoder_pitch * encoder_pitch
            logs["loss/encoder_pitch"] = float(encoder_pitch.detach())
        for name, loss_fn in self.weighted_losses.items():
            value = loss_fn(fake, real)
            loss_g = loss_g + getattr(w, name) * value
            logs[f"loss/{name}"] = float(value.detach())
        if adversarial:
            with autocast:
                d_fake = self.d_model(fake[:n_disc])
                adv = sum(generator_adv_loss(d_fake[k][0], cfg.discriminators.loss) for k in d_fake)
                # Real feature maps from the discriminator pass above, detached inside the loss.
                fm = sum(feature_matching_loss(d_real[k][1], d_fake[k][1]) for k in d_fake)
            loss_g = loss_g + w.adversarial * adv + w.feature_matching * fm
            logs["loss/adversarial"], logs["loss/feature_matching"] = (
                float(adv.detach()),
                float(fm.detach()),
            )
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for group in self.opt_g.param_groups for p in group["params"]], cfg.grad_clip
        )
        # One non-finite gradient would turn every weight into NaN for good (and the next
        # checkpoint with it): skip that update instead. After DDP's all-reduce every rank
        # sees the same norm, so all ranks skip together.
        if torch.isfinite(grad_norm):
            self.opt_g.step()
        else:
            self.skipped_updates += 1
            logs["nonfinite/skipped_updates"] = self.skipped_updates
        self.sched_g.step()
        usage = codebook_usage(out.vq.codes, self.codec.codebook_size)
        logs.update(
            {
                "loss/mel": float(mel.detach()),
                "loss/commitment": float(commit.detach()),
                "loss/generator": float(loss_g.detach()),
                "grad_norm/generator": float(grad_norm),
                "lr/generator": self.sched_g.get_last_lr()[0],
                "codebook/codes_used_in_batch": usage.codes_used,
                "codebook/perplexity": usage.perplexity,
                "codebook/dead_codes_restarted": out.vq.dead_codes_restarted,
            }
        )
        self.step += 1
        self.audio_seconds_seen += (
            real.shape[0] * real.shape[-1] / self.codec.sample_rate * self.world
        )
        return logs

    # -- loop ------------------------------------------------------------------------------------------
    def _checked_mixed_precision(self) -> bool:
        """Whether to train under a bf16 autocast: asked for (CUDA, or `cpu_bf16`) and giving the
        model's float32 output on a fixed test signal (`precision.MAX_SPECTRAL_ERROR`). Some
        CPUs' bf16 kernels are wrong for some layers; training through them would wreck the
        weights, so such a run trains in float32 and says so."""
        if not (self.device.type == "cuda" or self.cfg.cpu_bf16):
            return False
        error = precision.training_autocast_error(self.codec, torch.bfloat16)
        if error > precision.MAX_SPECTRAL_ERROR:
            self.log(
                f"warning: bf16 autocast is wrong for this model on {self.device} (spectral "
                f"error {error:.2f} against float32; a faulty bf16 kernel): training in float32"
            )
            return False
        return True

    def log(self, msg: str) -> None:
        if self.rank == 0:
            print(msg, flush=True)

    def _quick_eval(self) -> None:
        from codec.quickeval import quick_eval

        if not self.cfg.eval_data or not Path(self.cfg.eval_data).is_dir():
            return
        scores, sample = quick_eval(self.codec, Path(self.cfg.eval_data), self.cfg.eval_clips)
        self.codec.train()
        for k, v in scores.items():
            self.writer.add_scalar(f"eval/{k}", v, self.step)
        self.writer.add_audio("eval/reconstruction", sample, self.step, self.codec.sample_rate)
        self.log(f"eval step {self.step}: " + " ".join(f"{k}={v:.3f}" for k, v in scores.items()))

    def fit(self, max_steps: int | None = None) -> None:
        end = min(self.cfg.steps, max_steps) if max_steps else self.cfg.steps
        start_step, t0, last = self.step, time.time(), time.time()
        while self.step < end and not self.stop_requested:
            logs = self.train_step()
            if self.rank != 0:
                continue
            if self.step % self.cfg.log_every == 0 or self.step == end:
                for k, v in logs.items():
                    self.writer.add_scalar(k, v, self.step)
                elapsed = time.time() - t0
                rate = (
                    (self.step - start_step)
                    * self.cfg.batch_size
                    * self.seg_len
                    / self.codec.sample_rate
                    / max(elapsed, 1e-9)
                )
                eta = (end - self.step) * elapsed / max(1, self.step - start_step)
                self.writer.add_scalar("speed/audio_seconds_per_second", rate, self.step)
                self.log(
                    f"step {self.step}/{end} mel {logs['loss/mel']:.3f} commit {logs['loss/commitment']:.4f}"
                    + (
                        f" adv {logs['loss/adversarial']:.3f} d {logs['loss/discriminator']:.3f}"
                        if "loss/adversarial" in logs
                        else ""
                    )
                    + "".join(
                        f" {key} {logs['loss/' + key]:.3f}"
                        for key in ("pitch", "encoder_pitch", "pesq", "stoi")
                        if "loss/" + key in logs
                    )
                    + f" codes {logs['codebook/codes_used_in_batch']} restarted {logs['codebook/dead_codes_restarted']}"
                    + (f" skipped {self.skipped_updates}" if self.skipped_updates else "")
                    + f" | {rate:.1f} audio-s/s, {time.time() - last:.1f}s, ETA {eta / 60:.0f} min"
                )
                last = time.time()
            if self.step % self.cfg.checkpoint_every == 0:
                self.save()
            if self.cfg.eval_every and self.step % self.cfg.eval_every == 0:
                self._quick_eval()
        self.save()
        if self.writer:
            self.writer.flush()
