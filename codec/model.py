"""The codec: (B, 1, T) samples at 24 kHz <-> (B, F) token ids at the frame rate, and back.

Padding: `encode` zero-pads each item to a whole number of hops, so an input of T samples gives
F = ceil(T / hop) frames (10 s at 24 kHz and hop 320 -> 750). `decode` returns F * hop samples
unless told the original length (`num_samples`), which the token file carries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from codec.config import CodecConfig
from codec.decoder import Decoder
from codec.encoder import Encoder
from codec.pitch import F0Channel
from codec.quantizer import Quantizer, QuantizerOutput, codebook_fingerprint

DEFAULT_MODEL = "wavtok-cpu-75hz-causal"
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
CODEBOOK_KEY = "quantizer.vq._codebook.embed"


def models_dir() -> Path:
    """Where named models live: $WAVTOK_MODELS_DIR, else the repository's `models/`."""
    env = os.environ.get("WAVTOK_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def _read_weights(path: Path, key: str | None = None):
    """All tensors of a safetensors file, or the one named `key`; ValueError when unreadable."""
    try:
        if key is None:
            return load_file(str(path))
        with safe_open(str(path), framework="pt") as weights:
            return weights.get_tensor(key)
    except SafetensorError as e:
        raise ValueError(f"{path}: not valid model weights ({e})") from None


def codebook_id_of(model_dir: str | Path) -> str:
    """`Codec.codebook_id` of a saved model, read from its weights without building it."""
    return codebook_fingerprint(_read_weights(Path(model_dir) / WEIGHTS_FILE, CODEBOOK_KEY))


def resolve_model_dir(name_or_dir: str | Path | None) -> Path:
    """A model directory from a path or a shipped model's name; a clear error if neither."""
    target = str(name_or_dir) if name_or_dir else DEFAULT_MODEL
    path = Path(target)
    if not path.is_dir():
        path = models_dir() / target
    if (path / CONFIG_FILE).is_file() and not (path / WEIGHTS_FILE).is_file():
        card = path / "MODEL_CARD.md"
        hint = f"; {card} says how to get them" if card.is_file() else ""
        raise FileNotFoundError(f"model {target!r} has no {WEIGHTS_FILE} in {path}{hint}")
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        shipped = sorted(p.parent.name for p in models_dir().glob(f"*/{WEIGHTS_FILE}"))
        hint = f"shipped models: {', '.join(shipped)}" if shipped else "no model is shipped yet"
        raise FileNotFoundError(
            f"model {target!r} not found (need {CONFIG_FILE} and {WEIGHTS_FILE}; {hint})"
        )
    return path


@dataclass
class CodecOutput:
    """Training pass: `audio` (B, F * hop) reconstruction and the quantizer's output."""

    audio: torch.Tensor
    vq: QuantizerOutput
    # Harmonic source only: predicted log F0 (B, F) and voicing logits (B, F).
    pitch: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class QuantizerInputs:
    """What `Codec.encode` quantizes, for searches that pick codes another way."""

    latents: torch.Tensor  # (B, D, F) encoder output
    f0_channel: torch.Tensor | None  # (B, F) the F0 channel, for codes that carry F0
    code_lengths: torch.Tensor  # (B,) valid frames per item
    wav: torch.Tensor  # (B, F * hop) the input, zero past each item's length


class Codec(nn.Module):
    """WavTokenizer-style single-codebook codec (SEANet encoder, EMA VQ, Vocos decoder)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg.encoder, cfg.causal, cfg.sample_rate)
        self.quantizer = Quantizer(cfg.quantizer, cfg.encoder.dimension)
        # Codes that carry F0: the input's F0 channel is searched beside the latents.
        self.f0_channel = (
            F0Channel(cfg.quantizer.f0_scale, cfg.hop_length, cfg.sample_rate)
            if cfg.quantizer.f0_scale
            else None
        )
        self.decoder = Decoder(
            cfg.decoder,
            cfg.encoder.dimension,
            cfg.hop_length,
            cfg.causal,
            cfg.sample_rate,
            self.f0_channel,
        )

    # -- construction and persistence ------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: CodecConfig | str) -> Codec:
        """An untrained model from a config object or a preset name (see `named_configs`)."""
        return cls(CodecConfig.named(cfg) if isinstance(cfg, str) else cfg)

    @classmethod
    def from_pretrained(
        cls, name_or_dir: str | Path | None = None, device: str | torch.device = "cpu"
    ) -> Codec:
        """Load `config.yaml` + `model.safetensors` from a directory or a shipped model name."""
        path = resolve_model_dir(name_or_dir)
        model = cls(CodecConfig.from_yaml(path / CONFIG_FILE))
        weights = _read_weights(path / WEIGHTS_FILE)
        expected = set(model.state_dict())
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        if missing or unexpected:
            example = (missing or unexpected)[0]
            raise ValueError(
                f"{path / WEIGHTS_FILE}: weights do not match {CONFIG_FILE} ({len(missing)} "
                f"missing, {len(unexpected)} unexpected, e.g. {example!r})"
            )
        model.load_state_dict(weights, strict=True)
        return model.to(device).eval()

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `config.yaml` and `model.safetensors` (inference weights only)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.to_yaml(directory / CONFIG_FILE)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"name": self.config.name})

    # -- properties ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def codebook_size(self) -> int:
        return self.config.quantizer.codebook_size

    @property
    def codebook_id(self) -> str:
        """The token vocabulary's fingerprint (16 hex digits), which token files record: tokens
        decode correctly only with a model whose codebook has the same one."""
        return self.quantizer.codebook_id

    @property
    def bitrate(self) -> float:
        """Theoretical bits per second."""
        return self.config.bitrate

    @property
    def causal(self) -> bool:
        return self.config.causal

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_frames(self, num_samples: int) -> int:
        """Token frames produced for `num_samples` input samples: ceil(T / hop)."""
        return -(-num_samples // self.hop_length)

    def f0_channel_of(self, wav: torch.Tensor) -> torch.Tensor | None:
        """(B, 1, T) samples, T a multiple of the hop -> (B, T / hop) the F0 channel its codes
        carry (`pitch.F0Channel`), or None when they carry none."""
        return None if self.f0_channel is None else self.f0_channel(wav)

    # -- training pass ---------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, f0: torch.Tensor | None = None) -> CodecOutput:
        """(B, 1, T) samples, T a multiple of the hop -> reconstruction plus VQ output. Only the
        decoder follows an enclosing autocast (mixed-precision training).

        With a harmonic source, `f0` (B, T / hop) in Hz (0: unvoiced) drives it (teacher
        forcing) and the output carries the decoder's own pitch prediction for its loss.
        """
        # The encoder runs in float32 under any autocast, as at inference (codec.precision):
        # the codes must not depend on precision, and on some CPUs bf16 convolutions are wrong
        # for SEANet's narrow early layers.
        with torch.autocast(wav.device.type, enabled=False):
            latents = self.encoder(wav.float())
            vq = self.quantizer(latents, self.f0_channel_of(wav))
        if self.decoder.head.source is None:
            return CodecOutput(self.decoder(vq.quantized), vq)
        audio, pitch = self.decoder(vq.quantized, f0=f0, with_pitch=True)
        return CodecOutput(audio, vq, pitch)

    # -- inference -------------------------------------------------------------------------------
    def _batch_wav(self, wav: torch.Tensor, lengths: torch.Tensor | None):
        if wav.dim() == 1:
            wav = wav[None, None]
        elif wav.dim() == 2:
            wav = wav[:, None]
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(
                f"expected (B, 1, T), (B, T) or (T,) mono samples, got {tuple(wav.shape)}"
            )
        if wav.shape[-1] == 0:
            raise ValueError("audio is empty")
        wav = wav.to(self.device, torch.float32)
        batch, total = wav.shape[0], wav.shape[-1]
        if lengths is None:
            lengths = torch.full((batch,), total, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=self.device).reshape(-1)
        if lengths.shape[0] != batch or bool((lengths < 1).any() | (lengths > total).any()):
            raise ValueError("lengths must give one value in [1, T] per batch item")
        return wav, lengths

    @torch.inference_mode()
    def encode(
        self, wav: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, T) samples at `sample_rate` -> ((B, F) int64 token ids, (B,) frame counts).

        `lengths` (B,) gives each item's valid samples in a padded batch; frames past an item's
        `ceil(length / hop)` are padding. Each item's codes equal those of encoding it alone.
        """
        inputs = self.quantizer_inputs(wav, lengths)
        codes = self.quantizer.encode(inputs.latents, inputs.f0_channel)
        return codes, inputs.code_lengths

    @torch.inference_mode()
    def quantizer_inputs(
        self, wav: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> QuantizerInputs:
        """(B, 1, T) samples at `sample_rate` -> what `encode` quantizes: the encoder's
        latents, the F0 channel (codes that carry F0) and the padded input (see
        `QuantizerInputs`). `lengths` as in `encode`."""
        wav, lengths = self._batch_wav(wav, lengths)
        hop = self.hop_length
        code_lengths = torch.div(lengths + hop - 1, hop, rounding_mode="floor")
        n_frames = int(code_lengths.max())
        wav = wav[..., : n_frames * hop]
        wav = nn.functional.pad(wav, (0, n_frames * hop - wav.shape[-1]))
        steps = torch.arange(wav.shape[-1], device=wav.device)
        wav = wav * (steps[None, :] < lengths[:, None]).unsqueeze(1)
        # Masking is needed only when items of different lengths share a batch.
        uneven = bool((code_lengths != n_frames).any())
        latents = self.encoder(wav, code_lengths * hop if uneven else None)
        return QuantizerInputs(latents, self.f0_channel_of(wav), code_lengths, wav[:, 0])

    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise ValueError unless `codes` are integer ids in [0, codebook_size)."""
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError("codes must be integers")
        if codes.numel() == 0:
            raise ValueError("codes are empty")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            raise ValueError(f"code ids must lie in [0, {self.codebook_size}), got [{low}, {high}]")

    @torch.inference_mode()
    def decode(
        self,
        codes: torch.Tensor,
        lengths: torch.Tensor | None = None,
        num_samples: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, F) token ids -> ((B, 1, F * hop) samples at `sample_rate`, (B,) valid samples).

        `lengths` (B,) are valid frames per item; `num_samples` (B,) optionally trims each item
        to its original sample count (at most `lengths * hop`).
        """
        if codes.dim() == 1:
            codes = codes[None]
        if codes.dim() != 2:
            raise ValueError(f"expected (B, F) or (F,) codes, got shape {tuple(codes.shape)}")
        self.check_codes(codes)
        codes = codes.to(self.device, torch.long)
        batch, frames = codes.shape
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=self.device).reshape(-1)
        if lengths.shape[0] != batch or bool((lengths < 1).any() | (lengths > frames).any()):
            raise ValueError("lengths must give one value in [1, F] per batch item")
        latents = self.quantizer.decode(codes)
        audio = self.decoder(latents, None if bool((lengths == frames).all()) else lengths)
        sample_lengths = lengths * self.hop_length
        if num_samples is not None:
            wanted = torch.as_tensor(num_samples, dtype=torch.long, device=self.device).reshape(-1)
            sample_lengths = torch.minimum(sample_lengths, wanted)
        return audio[:, None, : int(sample_lengths.max())], sample_lengths

    # -- streaming ---------------------------------------------------------------------------------
    def streaming_encoder(self, batch_size: int = 1):
        """A `StreamingEncoder` with fresh state (causal models only)."""
        from codec.streaming import StreamingEncoder

        return StreamingEncoder(self, batch_size)

    def streaming_decoder(self, batch_size: int = 1):
        """A `StreamingDecoder` with fresh state (causal models only)."""
        from codec.streaming import StreamingDecoder

        return StreamingDecoder(self, batch_size)
