"""CPU speed and memory of each named codec config, next to EnCodec's 24 kHz architecture.

Every model runs in its own freshly spawned process, so peak memory (`ru_maxrss`) belongs to
that model alone and thread settings cannot leak between runs. Weights are random: speed and
memory do not depend on them, and nothing is downloaded.

Speeds are real-time factors, seconds of audio processed per wall-clock second (higher is
faster; 1.0 is real time), best of `--reps` timed runs after one warm-up, batch 1.

    python benchmarks/speed.py                              # all non-tiny configs + EnCodec
    python benchmarks/speed.py --configs wavtok-small-75hz-causal encodec_24khz --reps 5
    python benchmarks/speed.py --decode-dtype bfloat16 --configs NAME

`--decode-dtype bfloat16` decodes under a CPU bf16 autocast, as `wavtok serve --dtype bfloat16`
does (encoding stays float32 there and here).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

ENCODEC = "encodec_24khz"
# EnCodec at its lowest bandwidth (2 codebooks): the closest to wavtok's 900 bit/s. The
# bandwidth changes only the residual quantizer's depth, a small share of the compute.
ENCODEC_BANDWIDTH_KBPS = 1.5


@dataclass
class Result:
    name: str
    params: int
    bitrate_bps: float
    causal: bool
    encode_rtf: float
    decode_rtf: float
    roundtrip_rtf: float
    peak_rss_mib: float
    model_rss_mib: float


def _rss_mib() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _best_seconds(func: Callable[[], object], reps: int, warm_up: bool = True) -> float:
    if warm_up:  # allocator, oneDNN kernel selection, lazy inits
        func()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def _build(name: str):
    """(model, encode(wav) -> codes, decode(codes) -> wav, bitrate, causal) on CPU, eval mode."""
    import torch

    if name == ENCODEC:
        from encodec import EncodecModel

        warnings.filterwarnings("ignore", category=FutureWarning)  # encodec's legacy weight_norm
        model = EncodecModel._get_model(
            target_bandwidths=[1.5, 3.0, 6, 12.0, 24.0],
            sample_rate=24000,
            channels=1,
            causal=True,
            model_norm="weight_norm",
            audio_normalize=False,
            name=ENCODEC,
        ).eval()
        model.set_target_bandwidth(ENCODEC_BANDWIDTH_KBPS)
        return (
            model,
            torch.inference_mode()(model.encode),
            torch.inference_mode()(model.decode),
            ENCODEC_BANDWIDTH_KBPS * 1000,
            True,
        )

    from codec import Codec

    model = Codec.from_config(name).eval()

    def encode(wav: torch.Tensor) -> torch.Tensor:
        return model.encode(wav)[0]

    def decode(codes: torch.Tensor) -> torch.Tensor:
        return model.decode(codes)[0]

    return model, encode, decode, model.bitrate, model.causal


def _measure(name: str, seconds: float, reps: int, threads: int, decode_dtype: str) -> Result:
    """Runs inside the spawned child: build, time and measure one model."""
    import torch

    from codec import precision

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sample_rate = 24000
    wav = 0.1 * torch.randn(1, 1, int(seconds * sample_rate))
    baseline = _rss_mib()
    model, encode, decode_float32, bitrate, causal = _build(name)
    # The server's rule (float32 where the CPU has no bf16 kernels), EnCodec included.
    reduced = precision.decode_dtype(decode_dtype, "cpu")

    def decode(codes):
        with precision.decode_autocast(reduced, "cpu"):
            return decode_float32(codes)

    params = sum(p.numel() for p in model.parameters())
    codes = encode(wav)
    t_enc = _best_seconds(lambda: encode(wav), reps)
    t_dec = _best_seconds(lambda: decode(codes), reps)
    # Both halves are warm by now.
    t_both = _best_seconds(lambda: decode(encode(wav)), reps, warm_up=False)
    peak = _rss_mib()
    return Result(
        name=name,
        params=params,
        bitrate_bps=bitrate,
        causal=causal,
        encode_rtf=seconds / t_enc,
        decode_rtf=seconds / t_dec,
        roundtrip_rtf=seconds / t_both,
        peak_rss_mib=peak,
        model_rss_mib=peak - baseline,
    )


def _child(name: str, seconds: float, reps: int, threads: int, decode_dtype: str, conn) -> None:
    try:
        conn.send(("ok", asdict(_measure(name, seconds, reps, threads, decode_dtype))))
    except Exception as e:  # report, so the parent can carry on with the other models
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def run_isolated(
    name: str, seconds: float, reps: int, threads: int, decode_dtype: str = "float32"
) -> Result:
    """Measure one model in a fresh spawned process; raises RuntimeError if it fails."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(name, seconds, reps, threads, decode_dtype, child))
    proc.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        status, payload = "error", f"worker died (exit code {proc.join() or proc.exitcode})"
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{name}: {payload}")
    return Result(**payload)


def default_models() -> list[str]:
    from codec.config import named_configs

    return [n for n in named_configs() if "tiny" not in n] + [ENCODEC]


def markdown_table(
    results: list[Result], seconds: float, threads: int, reps: int, decode_dtype: str = "float32"
) -> str:
    head = (
        f"CPU, {threads} thread(s), batch 1, {seconds:g} s of audio, best of {reps}, "
        f"decoding in {decode_dtype}; "
        "speeds in x real time (audio s / wall s, higher is faster).\n\n"
        "| model | causal | params (M) | bitrate (bit/s) | encode | decode | enc+dec "
        "| peak RSS (MiB) | model RSS (MiB) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = [
        f"| {r.name} | {'yes' if r.causal else 'no'} | {r.params / 1e6:.2f} | "
        f"{r.bitrate_bps:g} | {r.encode_rtf:.1f} | {r.decode_rtf:.1f} | {r.roundtrip_rtf:.1f} | "
        f"{r.peak_rss_mib:.0f} | {r.model_rss_mib:.0f} |"
        for r in results
    ]
    note = (
        "\n\npeak RSS: the process's maximum resident set; model RSS: that minus the RSS "
        "before the model was built (weights plus activations). "
        f"{ENCODEC}: random weights, {ENCODEC_BANDWIDTH_KBPS:g} kbit/s (2 codebooks). "
        # Other load skews multi-threaded timings badly (threads wait on each other).
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs."
    )
    return head + "\n".join(rows) + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", nargs="+", help=f"config names and/or {ENCODEC} (default: all non-tiny)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--reps", type=int, default=2, help="timed runs per measure (default: 2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length (default: 10)")
    parser.add_argument(
        "--decode-dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="decode precision",
    )
    args = parser.parse_args(argv)
    if args.reps < 1 or args.threads < 1 or args.seconds <= 0:
        parser.error("--reps and --threads must be at least 1 and --seconds positive")

    names = args.configs or default_models()
    results, failed = [], 0
    for name in names:
        start = time.perf_counter()
        try:
            result = run_isolated(name, args.seconds, args.reps, args.threads, args.decode_dtype)
        except RuntimeError as e:
            print(f"speed: error: {e}", file=sys.stderr)
            failed += 1
            continue
        results.append(result)
        print(f"{name}: done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if results:
        print(markdown_table(results, args.seconds, args.threads, args.reps, args.decode_dtype))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
