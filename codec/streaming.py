"""Chunked encode and decode for causal models, with all state held in explicit objects.

`StreamingEncoder.push` takes (B, t) or (B, 1, t) samples of any chunk size and returns the
(B, f) token ids that became final; `flush` zero-pads to a whole hop, exactly as offline
`encode` does (and ends an encoder lookahead with a zero future, as `encode` does at the end of
a clip), so the concatenated output equals `Codec.encode`. `StreamingDecoder.push` takes
(B, f) ids and returns the samples that became final (all f * hop of them unless the decoder has
a lookahead; its `flush` returns the rest), equal to `Codec.decode`'s. Work per call is
proportional to the chunk: convolutions keep only their left context, attention a bounded
window of past frames, the LSTM its (h, c) and the inverse STFT its overlap-add tail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from codec.decoder import DecoderStreamState
from codec.encoder import EncoderStreamState
from codec.pitch import PitchStreamState


def _require_causal(codec) -> None:
    if not codec.causal:
        raise ValueError(
            f"model {codec.name!r} is not causal and cannot stream; use a causal model"
        )


@dataclass
class EncoderState:
    """Network state plus the number of samples pushed so far."""

    network: EncoderStreamState = field(default_factory=EncoderStreamState)
    # The F0 channel's window (codes that carry F0 only).
    f0: PitchStreamState = field(default_factory=PitchStreamState)
    samples_in: int = 0
    frames_out: int = 0
    finished: bool = False


@dataclass
class DecoderState:
    network: DecoderStreamState = field(default_factory=DecoderStreamState)
    frames_in: int = 0
    finished: bool = False


class StreamingEncoder:
    """Samples in, final token ids out. Latency: one hop (a frame's audio must have arrived)
    plus the encoder's lookahead frames, if any."""

    def __init__(self, codec, batch_size: int = 1) -> None:
        _require_causal(codec)
        self.codec = codec
        self.batch_size = batch_size
        self.state = EncoderState()

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: the audio of one token frame and of the frames it looks ahead."""
        return (1 + self.codec.config.encoder.lookahead) * self.codec.config.frame_ms

    def _as_batch(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 1:
            wav = wav[None]
        if wav.dim() == 3:
            wav = wav[:, 0]
        if wav.dim() != 2 or wav.shape[0] != self.batch_size:
            raise ValueError(f"expected ({self.batch_size}, t) samples, got {tuple(wav.shape)}")
        return wav.to(self.codec.device, torch.float32)[:, None]

    @torch.inference_mode()
    def push(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, t) new samples -> (B, f) int64 ids of the frames completed by them."""
        if self.state.finished:
            raise RuntimeError("stream already flushed; start a new one")
        wav = self._as_batch(wav)
        self.state.samples_in += wav.shape[-1]
        latents = self.codec.encoder.stream(wav, self.state.network)
        f0_channel = self.codec.f0_channel
        if f0_channel is not None:  # before any early return: it must see every sample
            f0_channel = f0_channel.stream(wav, self.state.f0)
        if latents.shape[-1] == 0:
            return torch.zeros(self.batch_size, 0, dtype=torch.long, device=self.codec.device)
        codes = self.codec.quantizer.encode(latents, f0_channel)
        self.state.frames_out += codes.shape[-1]
        return codes

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """Zero-pad the last partial frame and return the ids still due (with an encoder
        lookahead, also those of the held frames, given a zero future); the stream then ends."""
        hop = self.codec.hop_length
        missing = (-self.state.samples_in) % hop
        parts = [torch.zeros(self.batch_size, 0, dtype=torch.long, device=self.codec.device)]
        if missing:
            parts.append(self.push(torch.zeros(self.batch_size, missing)))
        self.state.finished = True
        held = self.codec.encoder.stream_flush(self.state.network)
        if held is not None and held.shape[-1]:
            parts.append(self.codec.quantizer.encode(held))
            self.state.frames_out += held.shape[-1]
        return torch.cat(parts, -1)


class StreamingDecoder:
    """Token ids in, final samples out: each id yields `hop` samples, at once or, with a
    decoder lookahead of L frames, once L more ids (or `flush`) have arrived."""

    def __init__(self, codec, batch_size: int = 1) -> None:
        _require_causal(codec)
        self.codec = codec
        self.batch_size = batch_size
        self.state = DecoderState()

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency added by decoding: the decoder's lookahead frames (none for a
        strictly causal decoder, whose frames' samples are final at once)."""
        return self.codec.config.decoder.lookahead * self.codec.config.frame_ms

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, f) token ids -> (B, f' * hop) float samples; f' = f without a lookahead."""
        if self.state.finished:
            raise RuntimeError("stream already flushed; start a new one")
        if codes.dim() == 1:
            codes = codes[None]
        if codes.dim() != 2 or codes.shape[0] != self.batch_size:
            raise ValueError(f"expected ({self.batch_size}, f) codes, got {tuple(codes.shape)}")
        if codes.shape[-1] == 0:
            return torch.zeros(self.batch_size, 0, device=self.codec.device)
        self.codec.check_codes(codes)
        latents = self.codec.quantizer.decode(codes.to(self.codec.device, torch.long))
        self.state.frames_in += codes.shape[-1]
        return self.codec.decoder.stream(latents, self.state.network)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """(B, held * hop) samples of the frames a decoder with lookahead still holds (none
        without one); the stream then ends."""
        if self.state.finished:
            raise RuntimeError("stream already flushed; start a new one")
        self.state.finished = True
        audio = self.codec.decoder.stream_flush(self.state.network)
        if audio is None:
            return torch.zeros(self.batch_size, 0, device=self.codec.device)
        return audio
