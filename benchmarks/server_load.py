"""Load test for the codec service: HTTP throughput/latency and real-time WebSocket capacity.

    python benchmarks/server_load.py --url http://127.0.0.1:8000
    python benchmarks/server_load.py --spawn --model DIR      # starts `server.main serve` itself

Phase 1: N clients each loop encode -> decode round trips of a fixed clip for T seconds;
reports audio-seconds processed per second, p50/p99 latency per request, errors. Phase 2 ramps
up concurrent encode streams (1, 2, 4, ...), each sending 24 kHz PCM16 in real time in 20 ms
chunks; a level passes when every stream's codes keep within `--max-lag-ms` of the audio sent.
Client and server share this machine's CPUs, so the stream count is a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect

CHUNK_S = 0.02


def make_clip(seconds: float, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


async def http_load(url: str, headers: dict, clients: int, duration: float, clip_s: float) -> dict:
    clip = make_clip(clip_s)
    latencies: list[float] = []
    errors = 0
    audio_seconds = 0.0
    deadline = time.perf_counter() + duration

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal errors, audio_seconds
        while time.perf_counter() < deadline:
            try:
                t0 = time.perf_counter()
                r = await http.post(
                    "/v1/encode", content=clip, headers={"content-type": "audio/wav"}
                )
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1
                    continue
                body = r.json()
                t0 = time.perf_counter()
                payload = {"codes": body["codes"], "num_samples": body["num_samples"]}
                r = await http.post("/v1/decode", params={"format": "pcm16"}, json=payload)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1
                    continue
                audio_seconds += 2 * clip_s  # one encode plus one decode of the clip
            except httpx.HTTPError:
                errors += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=60, limits=limits, trust_env=False
    ) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "throughput_audio_s_per_s": audio_seconds / elapsed,
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p99_ms": float(np.percentile(lat, 99)),
    }


async def one_stream(ws_url: str, headers: dict, seconds: float, max_lag: float) -> dict:
    """Send real-time audio; return the worst lag of codes behind the audio sent, and more."""
    rate, hop = 24000, 320
    chunk = int(rate * CHUNK_S)
    rng = np.random.default_rng()
    audio = (rng.standard_normal(int(seconds * rate)) * 3000).astype("<i2")
    frames = 0
    worst = 0.0
    behind_schedule = 0.0
    async with connect(ws_url, additional_headers=headers, proxy=None, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": rate, "format": "pcm16"}))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            return {"ok": False, "error": ready.get("message", "refused")}
        t0 = time.perf_counter()

        async def sender() -> None:
            nonlocal behind_schedule
            for i, start in enumerate(range(0, len(audio), chunk)):
                due = t0 + i * CHUNK_S
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
                else:
                    behind_schedule = max(behind_schedule, now - due)
                await ws.send(audio[start : start + chunk].tobytes())
            await ws.send(json.dumps({"type": "end"}))

        task = asyncio.create_task(sender())
        while True:
            msg = await ws.recv()
            now = time.perf_counter() - t0
            if isinstance(msg, bytes):
                frames += len(msg) // 2
                # Audio sent by now, minus audio whose codes came back (one frame is algorithmic).
                sent = min(now, seconds)
                worst = max(worst, sent - frames * hop / rate - hop / rate)
            elif json.loads(msg).get("type") in ("done", "error"):
                break
        await task
    return {
        "ok": worst <= max_lag and behind_schedule <= max_lag,
        "worst_lag_ms": worst * 1000,
        "client_behind_ms": behind_schedule * 1000,
    }


async def stream_ramp(url: str, headers: dict, max_streams: int, seconds: float, lag_ms: float):
    ws_url = url.replace("http", "ws", 1) + "/v1/stream/encode"
    best, levels = 0, []
    k = 1
    while k <= max_streams:
        results = await asyncio.gather(
            *(one_stream(ws_url, headers, seconds, lag_ms / 1000) for _ in range(k)),
            return_exceptions=True,
        )
        ok = all(isinstance(r, dict) and r["ok"] for r in results)
        lags = [r.get("worst_lag_ms", float("nan")) for r in results if isinstance(r, dict)]
        levels.append({"streams": k, "ok": ok, "worst_lag_ms": max(lags, default=float("nan"))})
        print(
            f"  {k:3d} streams: {'ok' if ok else 'UNDERRUN'}  worst lag {levels[-1]['worst_lag_ms']:.0f} ms"
        )
        if not ok:
            break
        best = k
        k = max_streams if k < max_streams < 2 * k else 2 * k
    return best, levels


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(model: str, max_streams: int, extra_env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "WAVTOK_MAX_STREAMS": str(max_streams), **extra_env}
    cmd = [sys.executable, "-m", "server.main", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--model", model, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).resolve().parent.parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2, trust_env=False).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server not ready within 120 s")


def peak_rss_mb(proc: subprocess.Popen | None, url: str, headers: dict) -> float | None:
    if proc is not None:
        with open(f"/proc/{proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=5, trust_env=False).text
    for line in text.splitlines():
        if line.startswith("wavtok_peak_rss_bytes "):
            return float(line.split()[1]) / 2**20
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--spawn", action="store_true", help="start a server for the run")
    p.add_argument("--model", help="model dir or name for --spawn")
    p.add_argument("--api-key")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--duration", type=float, default=5.0, help="HTTP phase, seconds")
    p.add_argument("--clip-seconds", type=float, default=2.0)
    p.add_argument("--max-streams", type=int, default=8, help="ramp ceiling (0: skip)")
    p.add_argument("--stream-seconds", type=float, default=2.0)
    p.add_argument("--max-lag-ms", type=float, default=100.0)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.spawn and not args.model:
        p.error("--spawn needs --model")
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    proc, url = spawn(args.model, args.max_streams, {}) if args.spawn else (None, args.url)
    try:
        print(f"HTTP: {args.clients} clients x {args.duration:.0f} s, {args.clip_seconds} s clip")
        report = asyncio.run(
            http_load(url, headers, args.clients, args.duration, args.clip_seconds)
        )
        for key, value in report.items():
            print(f"  {key}: {value:.1f}" if isinstance(value, float) else f"  {key}: {value}")
        if args.max_streams > 0:
            print(f"WebSocket ramp: real-time 20 ms chunks, {args.stream_seconds} s per stream")
            best, levels = asyncio.run(
                stream_ramp(url, headers, args.max_streams, args.stream_seconds, args.max_lag_ms)
            )
            report["max_realtime_streams"] = best
            report["stream_levels"] = levels
            print(f"  max real-time streams without underrun: {best}")
        rss = peak_rss_mb(proc, url, headers)
        report["server_peak_rss_mb"] = rss
        print(f"server peak RSS: {rss:.0f} MiB" if rss else "server peak RSS: unknown")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
