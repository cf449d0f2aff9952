"""CLI hook: `wavtok serve` (the main CLI calls `register`), also `python -m server.main serve`."""

from __future__ import annotations

import argparse
import logging
import sys

from codec.precision import DTYPE_NAMES
from server.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `serve` subcommand; options left out fall back to WAVTOK_* settings."""
    p = subparsers.add_parser(
        "serve",
        help="run the HTTP/WebSocket codec service",
        description="Serve encode/decode over HTTP and WebSocket. Every option can also be set "
        "with a WAVTOK_* environment variable or a .env file (see docs/api.md).",
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1; WAVTOK_HOST)")
    p.add_argument("--port", type=int, help="port (default 8000; WAVTOK_PORT)")
    p.add_argument("--model", help="default model: a name under the models dir, or a directory")
    p.add_argument("--device", help="cpu, cuda or cuda:N (WAVTOK_DEVICE)")
    p.add_argument("--models-dir", help="where model names are looked up (WAVTOK_MODELS_DIR)")
    p.add_argument(
        "--dtype",
        choices=DTYPE_NAMES,
        help="decode precision (bfloat16: CUDA or a bf16 CPU)",
    )
    p.add_argument("--log-level", help="uvicorn log level (default info)")
    p.set_defaults(func=run)
    return p


def build_settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "host": args.host,
        "port": args.port,
        "default_model": args.model,
        "device": args.device,
        "models_dir": args.models_dir,
        "dtype": getattr(args, "dtype", None),
        "log_level": getattr(args, "log_level", None),
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    """Start uvicorn with the app; returns the process exit code."""
    import uvicorn
    from pydantic import ValidationError

    from server.app import create_app
    from server.registry import resolve

    try:
        settings = build_settings(args)
        # Fail before binding the port rather than serve a permanently unready app.
        for spec in (settings.default_model, *settings.models):
            resolve(spec, settings.models_dir)
    except (ValidationError, FileNotFoundError) as e:
        print(f"wavtok serve: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        ws_max_size=settings.max_body_bytes,
        timeout_graceful_shutdown=10,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wavtok-server")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
