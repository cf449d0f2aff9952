"""Harmonic source for the causal iSTFT head: a band-limited pulse train at a predicted F0.

A decoder that predicts each frame's phases on its own cannot keep a voice's glottal pulses in
step from one 13 ms hop to the next; trained on a mel loss, it settles on pulses at the same place
in every frame, a buzz at the frame rate with no pitch. Here the pitch phase is integrated
explicitly (a running phase, carried in the stream state), so consecutive frames continue one
pulse train, and the network only chooses F0, voicing and a spectral gain per bin.
"""

from __future__ import annotations

import math

import torch
from torch import nn

F0_REF_HZ, F0_LO_HZ, F0_HI_HZ = 150.0, 50.0, 500.0


def running_phase(steps: torch.Tensor, state: dict) -> torch.Tensor:
    """(B, F, ...) per-frame phase advances -> (B, F, ...) running sums wrapped to [0, 2 pi).

    Summed in float64 from `state["phase"]` (updated), so that hours of frames lose no precision
    and a stream cut into chunks gives the phases of one offline pass.
    """
    steps = steps.double()
    phase = torch.cumsum(steps, dim=1)
    if "phase" in state:
        phase = phase + state["phase"][:, None]
    phase = torch.remainder(phase, 2 * math.pi)
    state["phase"] = phase[:, -1].detach()
    return phase


class HarmonicSource(nn.Module):
    """(B, C, F) decoder features -> per-frame spectra (B, F, N/2+1) of a windowed pulse train."""

    def __init__(self, dim: int, n_fft: int, hop: int, sample_rate: int):
        super().__init__()
        self.n_fft, self.hop, self.sample_rate = n_fft, hop, sample_rate
        self.pitch = nn.Linear(dim, 2)  # log-F0 offset and voicing logit
        self.gain = nn.Linear(dim, n_fft // 2 + 1)  # log gain per bin
        with torch.no_grad():
            self.pitch.weight.mul_(0.01)
            self.pitch.bias.zero_()
            self.gain.weight.mul_(0.01)
            self.gain.bias.fill_(-3.0)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, F) -> log F0 (B, F) in log-Hz and voicing logits (B, F)."""
        out = self.pitch(x.transpose(1, 2)).float()
        log_f0 = (math.log(F0_REF_HZ) + out[..., 0]).clamp(math.log(F0_LO_HZ), math.log(F0_HI_HZ))
        return log_f0, out[..., 1]

    def f0_from(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F) -> F0 (B, F) in Hz, 0 where the frame is predicted unvoiced."""
        log_f0, voicing = self.predict(x)
        return torch.where(voicing > 0, log_f0.exp(), torch.zeros_like(log_f0))

    def f0_with_codes(self, x: torch.Tensor, code_f0: torch.Tensor) -> torch.Tensor:
        """(B, C, F) features and (B, F) F0 in Hz from the codes (0: unvoiced) -> (B, F) Hz:
        voiced where this source predicts so, at the codes' F0, or its own where they have none."""
        log_f0, voicing = self.predict(x)
        own = torch.where(code_f0 > 0, code_f0, log_f0.exp())
        return torch.where(voicing > 0, own, torch.zeros_like(own))

    def forward(
        self, x: torch.Tensor, window: torch.Tensor, state: dict, f0: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C, F) features -> (B, F, N/2+1) complex spectra to add to the head's own.

        `f0` (B, F) in Hz (0: unvoiced) overrides the predicted pitch (teacher forcing in
        training). Frame f spans samples [f hop, f hop + N) like the head's frames; the pulse
        train's phase at each frame start continues from `state`.
        """
        f0 = (self.f0_from(x) if f0 is None else f0).detach()
        omega = 2 * math.pi * f0.double() / self.sample_rate  # (B, F) rad/sample
        # Phase at each frame's start: the running sum up to the end of the previous frame.
        phase = running_phase(omega * self.hop, state) - omega * self.hop
        n = torch.arange(self.n_fft, dtype=torch.float64, device=x.device)
        theta = phase[..., None] + omega[..., None] * n  # (B, F, N)
        harmonics = torch.floor(0.95 * (self.sample_rate / 2) / f0.double().clamp(min=1.0))
        harmonics = torch.where(f0 > 0, harmonics, torch.zeros_like(harmonics))[..., None]
        # sum_{h=1..M} sin(h t) = sin(M t / 2) sin((M + 1) t / 2) / sin(t / 2), scaled to unit power.
        half = torch.sin(theta / 2)
        regular = half.abs() > 1e-9
        pulses = torch.sin(harmonics * theta / 2) * torch.sin((harmonics + 1) * theta / 2)
        pulses = torch.where(regular, pulses / half.where(regular, 1.0), 0.0)
        pulses = pulses * torch.sqrt(2 / harmonics.clamp(min=1.0))
        spectrum = torch.fft.rfft(pulses.float() * window, dim=-1)
        gain = self.gain(x.transpose(1, 2)).float().clamp(max=5.0).exp()
        return gain * spectrum
