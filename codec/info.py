"""`wavtok info`: describe a token file, an audio file or a model, one `key: value` a line."""

from __future__ import annotations

import argparse
from pathlib import Path

from codec.cli import TOKEN_SUFFIX, describe_error


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `info` subcommand to the `wavtok` parser."""
    p = subparsers.add_parser("info", help="describe a token file, an audio file or a model")
    p.add_argument("target", help="a .wtok file, an audio file, a model directory or name")
    p.set_defaults(func=_run_info)


def _print_fields(fields: dict[str, object]) -> None:
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        print(f"{key + ':':<{width + 1}} {value}")


def _info_tokens(path: Path) -> None:
    import torch

    from codec import tokenfile
    from codec.quantizer import codebook_usage

    ids, header = tokenfile.load(path)
    size = path.stat().st_size
    duration = header.duration_s()
    usage = codebook_usage(torch.from_numpy(ids), header.codebook_size)
    fields: dict[str, object] = {"file": path, "kind": "token file"}
    fields.update(header.model_dump())
    if header.codebook_id is None:
        fields["codebook_id"] = "none (written before token files recorded it: not checked)"
    fields["duration_s"] = f"{duration:.3f}"
    fields["size_bytes"] = size
    fields["bitrate_bps"] = f"{8 * size / duration:.1f}" if duration > 0 else "n/a"
    fields["payload_bitrate_bps"] = f"{header.frame_rate * header.bits_per_code:.1f}"
    fields["codes_used"] = f"{usage.codes_used} of {usage.codebook_size}"
    fields["entropy_bits"] = f"{usage.entropy_bits + 0.0:.3f}"  # no "-0.000"
    fields["perplexity"] = f"{usage.perplexity:.1f}"
    _print_fields(fields)


def _info_audio(path: Path) -> None:
    import soundfile as sf

    from codec.audio import AudioError

    try:
        info = sf.info(str(path))
    except (RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{path}: unreadable audio ({describe_error(e)})") from None
    _print_fields(
        {
            "file": path,
            "kind": "audio",
            "format": f"{info.format} {info.subtype}",
            "sample_rate": info.samplerate,
            "channels": info.channels,
            "samples": info.frames,
            "duration_s": f"{info.frames / info.samplerate:.3f}" if info.samplerate else "n/a",
        }
    )


def _info_model(target: str) -> None:
    from codec.config import CodecConfig, named_configs
    from codec.model import CONFIG_FILE, Codec, codebook_id_of, resolve_model_dir

    try:
        model_dir = resolve_model_dir(target)
        cfg, kind = CodecConfig.from_yaml(model_dir / CONFIG_FILE), "model"
        codebook_id = codebook_id_of(model_dir)
    except FileNotFoundError:
        if target not in named_configs():
            raise
        cfg, kind = CodecConfig.named(target), "config preset (no weights)"
        codebook_id = "n/a (no weights)"
    params = sum(p.numel() for p in Codec(cfg).parameters())
    _print_fields(
        {
            "name": cfg.name,
            "kind": kind,
            "causal": cfg.causal,
            "sample_rate": cfg.sample_rate,
            "hop_length": cfg.hop_length,
            "frame_rate_hz": f"{cfg.frame_rate:g}",
            "codebook_size": cfg.quantizer.codebook_size,
            "codebook_id": codebook_id,
            "bitrate_bps": f"{cfg.bitrate:g}",
            "params": f"{params:,}",
            "latency_ms": f"{cfg.streaming_latency_ms:.1f}" if cfg.causal else "n/a (offline only)",
        }
    )


def _run_info(args: argparse.Namespace) -> int:
    from codec.audio import AUDIO_EXTENSIONS
    from codec.tokenfile import MAGIC

    path = Path(args.target)
    if path.is_file():
        with open(path, "rb") as f:
            is_tokens = f.read(len(MAGIC)) == MAGIC
        if is_tokens or path.suffix.lower() == TOKEN_SUFFIX:
            _info_tokens(path)
        else:
            _info_audio(path)
    elif not path.exists() and path.suffix.lower() in (*AUDIO_EXTENSIONS, TOKEN_SUFFIX):
        raise FileNotFoundError(f"{path}: no such file")
    else:
        _info_model(args.target)
    return 0
