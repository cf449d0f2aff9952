"""Run a real uvicorn server in a background thread on a free loopback port (tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import torch
import uvicorn

from codec.model import Codec
from server.app import create_app
from server.settings import Settings


def make_test_model(
    directory: str | Path, config: str = "wavtok-tiny-causal", seed: int = 0
) -> Path:
    """Save an untrained model whose codebook is random, so that codes actually vary.

    An untrained codebook is all zeros until k-means runs in training, which would map every
    frame to code 0 and make code comparisons in tests meaningless.
    """
    torch.manual_seed(seed)
    codec = Codec.from_config(config)
    wav = torch.randn(4, 1, 24000) * 0.1
    with torch.no_grad():
        latents = codec.encoder(wav)
        if isinstance(codec.quantizer.pre_norm, torch.nn.BatchNorm1d):
            codec.quantizer.pre_norm.running_mean.copy_(latents.mean(dim=(0, 2)))
            codec.quantizer.pre_norm.running_var.copy_(latents.var(dim=(0, 2)))
        codec.train()
        codec.quantizer(latents)  # k-means initialises the codebook from these latents
        # K-means over few frames repeats entries; exact ties would make argmin path-dependent.
        book = codec.quantizer.vq._codebook
        book.embed.add_(torch.randn_like(book.embed) * book.embed.std() * 0.5)
        book.embed_avg.copy_(book.embed * book.cluster_size[:, None])
    codec.eval()
    codec.save_pretrained(directory)
    return Path(directory)


@contextmanager
def serve_in_thread(
    settings: Settings, ready_timeout: float = 60.0
) -> Iterator[tuple[str, object]]:
    """Yield (base_url, app) once /readyz answers 200; shut the server down on exit."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with other tests
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", ws_max_size=settings.max_body_bytes, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if not thread.is_alive():
                raise RuntimeError("server thread exited during startup")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server at {base} not ready within {ready_timeout} s")
            time.sleep(0.05)
        yield base, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
