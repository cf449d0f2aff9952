"""Would codes that carry F0 beat the F0 a harmonic model's decoder reads from its tokens?

Inference only, no training. For each `--f0-scales` value, `codec.codebook_fit.with_f0_codes`
re-fits the model's 4,096 codes by k-means to its lookup vectors plus the causal F0 channel
(`pitch.F0Channel`: log F0 over the 1,024 samples ending at each frame's end, `scale` lookup
units per natural-log unit) on the speech segments of the training manifest (never the test
set); the decoder, unchanged, then plays the codes' F0 by the `--code-f0` rule (`smoothed`:
the mean log F0 of tokens f..f+2 at the decoder's own voicing; `next_token`: token f+1's; its
lookahead waits for those tokens anyway). The bitrate is unchanged: one 12-bit token a frame. For every
`--every`-th test clip prints PESQ-wb / STOI of the model as shipped, with the input's F0
(`estimate_f0`, an upper bound for any F0 path), of each re-fitted model, and of its codes
played with the decoder's own F0 instead; and the codes' |log F0 error| against the input's F0
channel (what quantisation costs, before smoothing).
Usage:
    python benchmarks/f0_codebook.py [--model DIR] [--f0-scales 65 130] [--clips 9]
        [--code-f0 smoothed|next_token]
        [--every 12] [--manifest data/train-real/manifest.jsonl]
        [--data ../shared/data/test/libritts_test_clean]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from harmonic_common import REPO, harmonic_model_and_clips, parser_for

from codec.audio import load_mono, resample
from codec.codebook_fit import speech_segment_paths, with_f0_codes
from codec.config import CODE_F0_RULES
from codec.metrics import METRIC_RATE, match_length, pesq_wb, stoi_score
from codec.pitch import estimate_f0


def main() -> None:
    parser = parser_for(__doc__, clips=9, every=12)
    parser.add_argument("--manifest", default=str(REPO / "data/train-real/manifest.jsonl"))
    parser.add_argument("--f0-scales", type=float, nargs="+", default=[65.0, 130.0])
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--code-f0", choices=CODE_F0_RULES, default="smoothed")
    args = parser.parse_args()
    source, clips = harmonic_model_and_clips(args)
    try:
        speech = speech_segment_paths(Path(args.manifest))
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(str(err)) from None
    rate = source.sample_rate
    print(f"{args.model}: codebooks fitted on {len(speech)} speech segments, {len(clips)} clips")

    tests = [load_mono(clip, rate)[0] for clip in clips]
    refs = [resample(wav, rate, METRIC_RATE).numpy() for wav in tests]

    def score(audio: torch.Tensor, ref: np.ndarray) -> tuple[float, float]:
        deg = match_length(resample(audio.reshape(-1), rate, METRIC_RATE).numpy(), len(ref))
        return pesq_wb(ref, deg), stoi_score(ref, deg)

    def report(name: str, pairs: list[tuple[float, float]]) -> None:
        pesq, stoi = np.mean(pairs, 0)
        print(f"{name:>34}: PESQ-wb {pesq:.3f}  STOI {stoi:.3f}", flush=True)

    with torch.inference_mode():
        shipped, oracle = [], []
        for wav, ref in zip(tests, refs, strict=True):
            latents = source.quantizer.decode(source.encode(wav)[0])
            f0, _ = estimate_f0(wav[None], rate, source.hop_length)
            shipped.append(score(source.decoder(latents), ref))
            oracle.append(score(source.decoder(latents, f0=f0[:, : latents.shape[-1]]), ref))
        report("as shipped", shipped)
        report("with the input's F0", oracle)
        for scale in args.f0_scales:
            segments = (load_mono(path, rate)[0] for path in speech)
            fitted = with_f0_codes(source, scale, segments, args.iters, args.code_f0)
            played, own, errors = [], [], []
            for wav, ref in zip(tests, refs, strict=True):
                codes, _ = fitted.encode(wav)
                latents = fitted.quantizer.decode(codes)
                played.append(score(fitted.decoder(latents), ref))
                own.append(score(source.decoder(latents[:, :-1]), ref))
                code_hz = fitted.f0_channel.to_hz(latents[:, -1])
                input_hz = fitted.f0_channel.to_hz(fitted.f0_channel(wav.reshape(1, 1, -1)))
                input_hz = input_hz[:, : code_hz.shape[-1]]
                both = (code_hz > 0) & (input_hz > 0)
                errors.append((code_hz[both].log() - input_hz[both].log()).abs())
            report(f"f0_scale {scale:g}, the codes' F0", played)
            report(f"f0_scale {scale:g}, the decoder's own F0", own)
            error = torch.cat(errors)
            print(
                f"{'':>34}  codes' |log F0 error|: mean {error.mean():.4f}, median "
                f"{error.median():.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
