"""The `wavtok` command line: encode, decode and roundtrip, plus extension commands.

Extension modules (`EXTENSION_MODULES`) each expose `register(subparsers)`, which adds
subparsers whose `func(args) -> int` runs the command. A module that does not exist yet is
skipped; one that fails to load is reported as a warning so the built-in commands still work.

Any `ValueError`, `OSError` or `RuntimeError` from a command becomes one line on stderr,
`wavtok: error: <message>`, and exit status 1; output piped into a reader that stops early
(`| head`) ends quietly with status 141, as for other Unix tools. Models, audio libraries and numerical work load
only inside the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from codec.config import CodecConfig
    from codec.model import Codec
    from codec.search import SearchSettings
    from codec.tokenfile import TokenHeader

PROG = "wavtok"
EXTENSION_MODULES = [
    "codec.info",
    "codec.evaluate",
    "codec.compare",
    "codec.train_cli",
    "codec.data",
    "codec.transcode",
    "server.main",
]
TOKEN_SUFFIX = ".wtok"
# Errors a user can cause (bad file, bad model, bad device); anything else is a bug and keeps
# its traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError)


def add_search_argument(parser: argparse.ArgumentParser) -> None:
    """The `--search N` option of the commands that encode files (`codec.search`)."""
    parser.add_argument(
        "--search",
        type=int,
        default=0,
        metavar="N",
        help="choose each token among its N nearest codes by the decoded audio "
        "(analysis-by-synthesis: same bitstream, better fidelity, encodes several times "
        "slower; causal models only; 8 is a good choice; default: 0, the nearest code)",
    )
    parser.add_argument(
        "--beam",
        type=int,
        default=1,
        metavar="W",
        help="with --search: keep the W best token sequences instead of the best one (a beam "
        "search: closer still, ~2.5x slower at W = 4; default: 1)",
    )
    parser.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="P",
        help="with --search: choose every token again P more times, each pass hearing the "
        "tokens the previous one chose after it (closer still, each pass costs about one "
        "greedy search more; default: 0)",
    )


def search_settings(args: argparse.Namespace, config: CodecConfig) -> SearchSettings | None:
    """The checked `codec.search` settings that `add_search_argument`'s options ask for, or
    None for the nearest-code encoder; ValueError when they do not fit the model."""
    from codec.search import settings_from

    return settings_from(
        getattr(args, "search", 0), config, getattr(args, "beam", 1), getattr(args, "refine", 0)
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_error(err: BaseException) -> str:
    """A one-line message for `err`; OS errors name the file rather than quoting errno."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return _one_line(f"{err.filename}: {err.strerror}")
    return _one_line(str(err)) or type(err).__name__


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


def _default_model() -> str:
    from codec.model import DEFAULT_MODEL

    return DEFAULT_MODEL


# -- helpers shared by the commands --------------------------------------------------------------
def _require_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def _require_out_dir(path: str | Path) -> Path:
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{parent}: output directory does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file name")
    return path


def _check_audio_out(path: str | Path) -> Path:
    """An output path whose extension names a format soundfile can write."""
    import soundfile as sf

    path = _require_out_dir(path)
    fmt = path.suffix.lstrip(".").upper()
    if fmt not in sf.available_formats():
        raise ValueError(f"{path}: cannot tell the audio format from the extension (use .wav)")
    return path


def _load_model(args: argparse.Namespace) -> Codec:
    from codec.model import Codec

    return Codec.from_pretrained(args.model, device=args.device)


def _load_input(codec: Codec, path: str | Path) -> torch.Tensor:
    """Any audio file -> (T,) mono float samples at the model's rate."""
    from codec.audio import load_mono

    wav, _ = load_mono(_require_file(path), codec.sample_rate)
    return wav


def _encode(
    codec: Codec, wav: torch.Tensor, settings: SearchSettings | None = None
) -> tuple[torch.Tensor, TokenHeader]:
    """(T,) samples -> ((F,) int64 ids, header recording the original length T); with
    `settings`, the ids are chosen by `codec.search.search_encode`."""
    from codec.search import encode_with
    from codec.tokenfile import TokenHeader

    if settings is None:
        codes, _ = codec.encode(wav)
    else:
        from tqdm import tqdm

        # A search takes minutes on a long file: show how far it is (on a terminal only).
        with tqdm(desc="search", unit="frame", file=sys.stderr, disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            codes, _ = encode_with(codec, wav, None, settings, progress=progress)
    return codes[0], TokenHeader.for_model(codec, wav.shape[-1])


def _decode(codec: Codec, codes: torch.Tensor, header: TokenHeader) -> torch.Tensor:
    """(F,) ids -> (num_samples,) samples, trimmed to the header's original length."""
    import torch

    audio, lengths = codec.decode(codes[None], num_samples=torch.tensor([header.num_samples]))
    return audio[0, 0, : int(lengths[0])]


def check_header(codec: Codec, header: TokenHeader, num_frames: int) -> None:
    """Raise ValueError when a token file cannot be decoded by `codec`; warn on a name mismatch."""
    problem = header.mismatch(codec, num_frames)
    if problem:
        raise ValueError(problem)
    if header.model != codec.name:
        _warn(f"token file was written by model {header.model!r}, decoding with {codec.name!r}")


# -- commands -----------------------------------------------------------------------------------
def cmd_encode(args: argparse.Namespace) -> int:
    from codec import tokenfile

    _require_file(args.input)
    out = _require_out_dir(args.output)
    codec = _load_model(args)
    wav = _load_input(codec, args.input)
    codes, header = _encode(codec, wav, search_settings(args, codec.config))
    size = tokenfile.save(out, codes, header)
    duration = header.duration_s()
    print(
        f"{out}: {codes.numel()} frames, {duration:.2f} s, {size} bytes, "
        f"{8 * size / duration:.0f} bit/s"
    )
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import torch

    from codec import tokenfile
    from codec.audio import write_audio

    _require_file(args.input)
    out = _check_audio_out(args.output)
    ids, header = tokenfile.load(args.input)
    codec = _load_model(args)
    check_header(codec, header, int(ids.size))
    audio = _decode(codec, torch.from_numpy(ids), header)
    write_audio(out, audio, codec.sample_rate)
    print(f"{out}: {audio.numel()} samples, {audio.numel() / codec.sample_rate:.2f} s")
    return 0


def cmd_roundtrip(args: argparse.Namespace) -> int:
    from codec import tokenfile
    from codec.audio import write_audio

    _require_file(args.input)
    out = _check_audio_out(args.output)
    codec = _load_model(args)
    wav = _load_input(codec, args.input)
    codes, header = _encode(codec, wav, search_settings(args, codec.config))
    size = len(tokenfile.dumps(codes, header))
    audio = _decode(codec, codes, header)
    write_audio(out, audio, codec.sample_rate)
    duration = header.duration_s()
    print(
        f"{out}: {codes.numel()} frames, {duration:.2f} s, "
        f"{size} bytes as tokens, {8 * size / duration:.0f} bit/s"
    )
    return 0


# -- parser -------------------------------------------------------------------------------------
def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=_default_model(),
        help="model directory or shipped model name (default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def _register_extensions(subparsers: argparse._SubParsersAction) -> None:
    for name in EXTENSION_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            # Absent module (or absent parent package): that command is simply not built yet.
            if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
                continue
            _warn(f"commands from {name} unavailable: {describe_error(e)}")
            continue
        except Exception as e:  # a broken extension must not take the built-in commands down
            _warn(f"commands from {name} unavailable: {type(e).__name__}: {describe_error(e)}")
            continue
        try:
            module.register(subparsers)
        except Exception as e:
            _warn(f"commands from {name} unavailable: {type(e).__name__}: {describe_error(e)}")


def build_parser() -> argparse.ArgumentParser:
    """The full parser: built-in subcommands plus those of the extension modules present."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Single-codebook neural audio codec: audio <-> token files."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("encode", help="audio file -> .wtok token file")
    p.add_argument("input", help="audio file (wav, flac, ogg, mp3, ...)")
    p.add_argument("output", help="token file to write (.wtok)")
    _add_model_args(p)
    add_search_argument(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help=".wtok token file -> audio file")
    p.add_argument("input", help="token file (.wtok)")
    p.add_argument("output", help="audio file to write (.wav, .flac, ...)")
    _add_model_args(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("roundtrip", help="audio -> tokens -> audio, without a token file")
    p.add_argument("input", help="audio file")
    p.add_argument("output", help="audio file to write")
    _add_model_args(p)
    add_search_argument(p)
    p.set_defaults(func=cmd_roundtrip)

    _register_extensions(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 error, 2 usage error, 130 interrupted)."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help and usage errors; keep main() returning a status
            return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`wavtok compare ... | head`): not an error worth a message, and
        # Python must not try to flush into the closed pipe again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except USER_ERRORS as e:
        print(f"{PROG}: error: {describe_error(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
