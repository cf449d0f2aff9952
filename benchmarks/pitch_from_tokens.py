"""How well a harmonic model's tokens carry pitch, and what a perfect F0 would be worth.

For every `--every`-th test clip: encode to tokens, decode, and compare the F0 and voicing that
the decoder predicts from the tokens with `estimate_f0` on the input (its training target).
Prints the mean and median |log F0 error| over frames the reference calls voiced, the share of
those frames off by more than 10%, voicing accuracy, and PESQ-wb / STOI of the model as it
decodes against the same tokens decoded with the reference's F0 ("oracle F0").
Usage:
    python benchmarks/pitch_from_tokens.py [--model DIR] [--clips 5] [--every 20]
        [--data ../shared/data/test/libritts_test_clean]
"""

from __future__ import annotations

import math

import numpy as np
import torch
from harmonic_common import harmonic_model_and_clips, parser_for

from codec.audio import load_mono, resample
from codec.metrics import METRIC_RATE, match_length, pesq_wb, stoi_score
from codec.model import Codec
from codec.pitch import estimate_f0


@torch.inference_mode()
def clip_pitch(codec: Codec, wav: torch.Tensor) -> dict[str, np.ndarray | float]:
    """(T,) samples at the model's rate -> per-frame errors and both decodes' scores."""
    codes, _ = codec.encode(wav)
    latents = codec.quantizer.decode(codes)
    f0, voiced = estimate_f0(wav[None], codec.sample_rate, codec.hop_length)
    audio, (log_f0, logits) = codec.decoder(latents, with_pitch=True)
    oracle = codec.decoder(latents, f0=f0[:, : latents.shape[-1]])
    n = min(log_f0.shape[1], f0.shape[1])
    ref_voiced = voiced[0, :n]
    error = (log_f0[0, :n] - f0[0, :n].clamp(min=1.0).log()).abs()[ref_voiced]
    ref = resample(wav, codec.sample_rate, METRIC_RATE).numpy()
    scores = {}
    for name, out in (("model", audio), ("oracle", oracle)):
        deg = match_length(resample(out[0], codec.sample_rate, METRIC_RATE).numpy(), len(ref))
        scores[name] = (pesq_wb(ref, deg), stoi_score(ref, deg))
    return {
        "error": error.numpy(),
        "voicing_right": float(((logits[0, :n] > 0) == ref_voiced).float().mean()),
        "scores": scores,
    }


def main() -> None:
    args = parser_for(__doc__, clips=5, every=20).parse_args()
    codec, clips = harmonic_model_and_clips(args)
    errors, voicing, scores = [], [], {"model": [], "oracle": []}
    for clip in clips:
        wav, _ = load_mono(clip, codec.sample_rate)
        result = clip_pitch(codec, wav)
        errors.append(result["error"])
        voicing.append(result["voicing_right"])
        for name, pair in result["scores"].items():
            scores[name].append(pair)
    error = np.concatenate(errors)
    print(f"{args.model}: {len(clips)} clips, {error.size} voiced frames")
    print(
        f"|log F0 error|: mean {error.mean():.4f}, median {np.median(error):.4f}, "
        f"off by >10%: {100 * (error > math.log(1.1)).mean():.1f}%; "
        f"voicing right {100 * np.mean(voicing):.1f}%"
    )
    for name, pairs in scores.items():
        pesq, stoi = np.mean(pairs, axis=0)
        print(f"{name:>6} F0: PESQ-wb {pesq:.3f}  STOI {stoi:.3f}")


if __name__ == "__main__":
    main()
