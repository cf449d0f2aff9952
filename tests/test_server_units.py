"""Service parts without a server: the dynamic batcher, settings, the CLI hook, deployment files."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from server.batching import BatcherClosed, DynamicBatcher, QueueFull
from server.main import build_settings, register
from server.settings import Settings
from server.testing import make_test_model

ROOT = Path(__file__).resolve().parent.parent


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def make_batcher(fn, **kw) -> tuple[DynamicBatcher, list[list], ThreadPoolExecutor]:
    seen: list[list] = []
    pool = ThreadPoolExecutor(1)

    def run_batch(items):
        seen.append(list(items))
        return fn(items)

    return DynamicBatcher(run_batch, pool, **kw), seen, pool


def test_batcher_gathers_up_to_max_batch_size():
    async def main():
        batcher, seen, _ = make_batcher(
            lambda xs: [x * 2 for x in xs], max_batch_size=4, max_wait_ms=200
        )
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.close()
        return results, seen

    results, seen = run(main())
    assert results == [i * 2 for i in range(10)]
    assert [len(b) for b in seen] == [4, 4, 2]  # the last batch left after max_wait_ms


def test_batcher_does_not_wait_longer_than_max_wait():
    async def main():
        batcher, seen, _ = make_batcher(lambda xs: xs, max_batch_size=64, max_wait_ms=30)
        start = time.perf_counter()
        assert await batcher.submit("a") == "a"
        elapsed = time.perf_counter() - start
        await batcher.close()
        return elapsed

    assert run(main()) < 0.5


def test_batcher_isolates_item_errors():
    def fn(xs):
        return [ValueError(f"bad {x}") if x < 0 else x for x in xs]

    async def main():
        batcher, _, _ = make_batcher(fn, max_batch_size=8, max_wait_ms=50)
        out = await asyncio.gather(*(batcher.submit(x) for x in (1, -1, 2)), return_exceptions=True)
        await batcher.close()
        return out

    ok1, err, ok2 = run(main())
    assert (ok1, ok2) == (1, 2) and isinstance(err, ValueError)


def test_batcher_whole_batch_failure_reaches_every_caller():
    def fn(xs):
        raise RuntimeError("device lost")

    async def main():
        batcher, _, _ = make_batcher(fn, max_batch_size=8, max_wait_ms=20)
        out = await asyncio.gather(*(batcher.submit(x) for x in range(3)), return_exceptions=True)
        await batcher.close()
        return out

    assert all(isinstance(e, RuntimeError) for e in run(main()))


def test_batcher_bounded_queue_and_cancellation():
    gate = threading.Event()

    def fn(xs):
        gate.wait(5)
        return xs

    async def main():
        batcher, seen, _ = make_batcher(fn, max_batch_size=1, max_wait_ms=0, max_queue=2)
        running = asyncio.create_task(batcher.submit("running"))
        await asyncio.sleep(0.05)  # taken into a batch; the worker is now blocked
        queued = asyncio.create_task(batcher.submit("queued"))
        leaving = asyncio.create_task(batcher.submit("leaving"))
        await asyncio.sleep(0.05)
        assert batcher.depth == 2
        with pytest.raises(QueueFull):
            await batcher.submit("refused")
        leaving.cancel()  # a caller that goes away frees its slot at once
        await asyncio.sleep(0)
        assert batcher.depth == 1
        gate.set()
        assert await running == "running" and await queued == "queued"
        await batcher.close()
        return seen

    seen = run(main())
    assert ["leaving"] not in seen and ["queued"] in seen


def test_batcher_close_fails_waiting_items():
    gate = threading.Event()

    async def main():
        batcher, _, _ = make_batcher(lambda xs: (gate.wait(5), xs)[1], max_wait_ms=0)
        first = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0.01)
        await batcher.close()
        gate.set()
        with pytest.raises(BatcherClosed):
            await second
        with pytest.raises(BatcherClosed):
            await first
        with pytest.raises(BatcherClosed):
            await batcher.submit(3)

    run(main())


def test_settings_from_env_and_dotenv(monkeypatch, tmp_path):
    monkeypatch.setenv("WAVTOK_API_KEYS", "a, b")
    monkeypatch.setenv("WAVTOK_CORS_ORIGINS", '["http://127.0.0.1:3000"]')
    monkeypatch.setenv("WAVTOK_MAX_BATCH_SIZE", "16")
    (tmp_path / ".env").write_text("WAVTOK_PORT=9123\nWAVTOK_DTYPE=bfloat16\n")
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.api_keys == ["a", "b"] and s.cors_origins == ["http://127.0.0.1:3000"]
    assert s.max_batch_size == 16 and s.port == 9123 and s.dtype == "bfloat16"
    with pytest.raises(ValueError):
        Settings(_env_file=None, device="gpu")


def test_cli_serve_subcommand(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["serve", "--port", "0", "--model", "m", "--models-dir", str(tmp_path), "--device", "cpu"]
    )
    settings = build_settings(args)
    assert settings.port == 0 and settings.default_model == "m"
    assert settings.models_dir == tmp_path
    # A model that does not exist fails fast with exit code 2, before any port is bound.
    assert args.func(args) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_is_valid():
    for extra in ([], ["--profile", "cpu"]):
        proc = subprocess.run(
            ["docker-compose", *extra, "config", "-q"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr


def test_serve_command_starts_and_stops(tmp_path):
    """`python -m server.main serve --model DIR` serves, then stops cleanly on SIGTERM."""
    model = make_test_model(tmp_path / "model")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "server.main", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--model", str(model), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180  # generous: a loaded CI machine imports torch slowly
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2, trust_env=False)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.1)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", trust_env=False).json()
        assert models["models"][0]["name"] == "wavtok-tiny-causal"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # uvicorn shuts down gracefully, then re-raises the signal, hence -SIGTERM.
    assert code in (0, -signal.SIGTERM)
    assert "Traceback" not in proc.stderr.read()


def asgi_get(app, path: str, **kw) -> httpx.Response:
    """One request straight into the ASGI app (no socket, no lifespan)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            return await c.request(kw.pop("method", "GET"), path, **kw)

    return asyncio.run(go())


def test_failed_model_load_keeps_app_unready(tmp_path):
    from server.app import create_app

    app = create_app(Settings(_env_file=None, default_model=str(tmp_path / "missing")))
    asyncio.run(app.state.registry.load())  # what the lifespan starts in the background
    r = asgi_get(app, "/readyz")
    assert r.status_code == 503 and "not found" in r.json()["error"]
    assert asgi_get(app, "/healthz").status_code == 200
    r = asgi_get(app, "/v1/models")
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def test_cors_preflight(tmp_path):
    from server.app import create_app

    origin = "http://127.0.0.1:3000"
    app = create_app(Settings(_env_file=None, default_model=str(tmp_path), cors_origins=[origin]))
    headers = {"origin": origin, "access-control-request-method": "POST"}
    r = asgi_get(app, "/v1/encode", method="OPTIONS", headers=headers)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
