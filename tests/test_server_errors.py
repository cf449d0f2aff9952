"""Every error answer of the service: status, JSON shape, WebSocket close codes; never a 500.

The server here is deliberately cramped: an API key, a 200 kB body limit, 2 s of audio, one
queued request and one stream.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from codec import tokenfile
from codec.client import WavtokAPIError, WavtokClient
from server.settings import Settings
from server.testing import make_test_model, serve_in_thread

KEY = "test-key"
SR = 24000
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(
        _env_file=None,
        default_model=str(make_test_model(tmp_path_factory.mktemp("model"))),
        api_keys=[KEY],
        max_body_bytes=MAX_BODY,
        max_audio_seconds=2.0,
        max_search_audio_seconds=0.5,
        max_queue=1,
        max_batch_size=1,
        max_wait_ms=0,
        max_streams=1,
    )
    with serve_in_thread(settings) as (base, app):
        yield base, app


@pytest.fixture
def http(server):
    with httpx.Client(
        base_url=server[0], headers={"authorization": f"Bearer {KEY}"}, timeout=10
    ) as c:
        yield c


def wav(seconds: float, rate: int = SR) -> bytes:
    buf = io.BytesIO()
    samples = (np.random.default_rng(0).standard_normal(int(seconds * rate)) * 0.1).astype("f4")
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def check_error(r: httpx.Response, status: int, code: str | None = None) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code
    return err["message"]


def until_closed(ws) -> list[str]:
    """Text messages received until the server closes the connection (5 s at most)."""
    texts = []
    deadline = time.monotonic() + 5
    with contextlib.suppress(ConnectionClosed):
        while time.monotonic() < deadline:
            msg = ws.recv(timeout=deadline - time.monotonic())
            if isinstance(msg, str):
                texts.append(msg)
    return texts


def post_encode(http: httpx.Client, body: bytes, ctype: str = "audio/wav", **kw) -> httpx.Response:
    return http.post("/v1/encode", content=body, headers={"content-type": ctype}, **kw)


def test_api_key_required(server, http):
    base = server[0]
    check_error(httpx.get(f"{base}/v1/models"), 401, "unauthorized")
    bad = {"authorization": "Bearer wrong"}
    check_error(httpx.get(f"{base}/v1/models", headers=bad), 401)
    check_error(httpx.post(f"{base}/v1/encode", content=wav(0.1), headers=bad), 401)
    assert httpx.get(f"{base}/healthz").status_code == 200  # probes stay open
    assert http.get("/v1/models").status_code == 200
    with pytest.raises(WavtokAPIError) as e:
        WavtokClient(base, trust_env=False).stream_encode([b"\0\0"])
    assert e.value.status == 1008
    # The key as a query parameter, for WebSocket clients that cannot set headers.
    url = base.replace("http", "ws") + f"/v1/stream/encode?api_key={KEY}"
    with connect(url, proxy=None) as ws:
        ws.send('{"type": "start"}')
        assert '"ready"' in ws.recv(timeout=5)


def test_body_too_large(server, http):
    check_error(post_encode(http, b"\0" * (MAX_BODY + 1)), 413, "body_too_large")

    def chunks():  # no Content-Length: the server must count what actually arrives
        for _ in range(MAX_BODY // 10_000 + 5):
            yield b"\0" * 10_000

    r = http.post("/v1/encode", content=chunks(), headers={"content-type": "audio/wav"})
    assert "content-length" not in r.request.headers
    check_error(r, 413, "body_too_large")
    check_error(http.post("/v1/decode", json={"codes": [1] * 100_000}), 413)


def test_search_has_its_own_length_limit(http):
    """Search encoding costs hundreds of times a plain encode: it gets a shorter limit."""
    message = check_error(post_encode(http, wav(1.0), params={"search": 2}), 422, "invalid_audio")
    assert "for search encoding" in message and "0.5 s" in message
    assert post_encode(http, wav(1.0)).status_code == 200
    assert post_encode(http, wav(0.4), params={"search": 2}).status_code == 200


def test_unsupported_media_type(http):
    check_error(post_encode(http, b"hello", "text/plain"), 415, "unsupported_media_type")
    check_error(http.post("/v1/encode", content=wav(0.1)), 415)
    r = http.post("/v1/decode", content=b"<codes/>", headers={"content-type": "application/xml"})
    check_error(r, 415)


@pytest.mark.parametrize(
    "body",
    [
        {"codes": [1, 2, 4096]},  # beyond the codebook
        {"codes": [1, -1]},
        {"codes": [[1, 2], [3, 4]]},  # wrong shape
        {"codes": []},
        {"codes": [1.5, 2]},
        {"codes": ["1", "2"]},
        {"codes": [True]},
        {"codes": [2**70]},
        {"codes": "1 2 3"},
        {},
        {"codes": [1, 2], "num_samples": 0},
        {"codes": [1, 2], "num_samples": 10_000},  # more than 2 frames can hold
        {"codes": [1] * 151},  # over max_audio_seconds at 75 Hz
    ],
)
def test_invalid_codes(http, body):
    check_error(http.post("/v1/decode", json=body), 422)


def test_invalid_token_files(http):
    good = tokenfile.dumps(
        np.arange(10),
        tokenfile.TokenHeader(
            model="wavtok-tiny-causal",
            sample_rate=SR,
            frame_rate=75.0,
            codebook_size=4096,
            num_samples=3200,
        ),
    )
    headers = {"content-type": "application/octet-stream"}
    assert http.post("/v1/decode", content=good, headers=headers).status_code == 200
    flipped = good[:-1] + bytes([good[-1] ^ 0xFF])  # checksum mismatch
    for bad in (b"", b"WTOK", good[:-3], flipped, b"RIFF" + good[4:], good[:9] + b"[" + good[10:]):
        check_error(http.post("/v1/decode", content=bad, headers=headers), 422, "invalid_codes")
    check_error(
        http.post("/v1/decode", content=b"{", headers={"content-type": "application/json"}), 422
    )


def test_codes_of_another_codebook_are_refused(http):
    """Tokens from a retrained model of the same name would decode to the wrong sounds."""
    r = http.post("/v1/decode", json={"codes": [1, 2], "codebook_id": "0123456789abcdef"})
    check_error(r, 422, "invalid_codes")
    assert "0123456789abcdef" in r.json()["error"]["message"]
    header = tokenfile.TokenHeader(
        model="wavtok-tiny-causal",
        sample_rate=SR,
        frame_rate=75.0,
        codebook_size=4096,
        num_samples=640,
        codebook_id="0123456789abcdef",
    )
    blob = tokenfile.dumps(np.arange(2), header)
    headers = {"content-type": "application/octet-stream"}
    r = http.post("/v1/decode", content=blob, headers=headers)
    check_error(r, 422, "invalid_codes")
    assert "decode with the model that encoded it" in r.json()["error"]["message"]
    # Same codebook size, other frame rate: the server checks the whole header, not just size.
    at_40hz = header.model_copy(update={"frame_rate": 40.0, "codebook_id": None})
    r = http.post("/v1/decode", content=tokenfile.dumps(np.arange(2), at_40hz), headers=headers)
    check_error(r, 422, "invalid_codes")
    assert "40 frames/s" in r.json()["error"]["message"]
    # The model's own codebook_id, from /v1/models, is accepted.
    own = http.get("/v1/models").json()["models"][0]["codebook_id"]
    assert http.post("/v1/decode", json={"codes": [1, 2], "codebook_id": own}).status_code == 200


def test_invalid_audio(http):
    check_error(post_encode(http, b"definitely not audio"), 422, "invalid_audio")
    check_error(post_encode(http, b""), 422, "invalid_audio")
    check_error(post_encode(http, wav(0.1)[:30]), 422, "invalid_audio")
    message = check_error(post_encode(http, wav(3.0, rate=8000)), 422, "invalid_audio")
    assert "limit" in message
    r = http.post("/v1/encode", files={"other": ("a.wav", wav(0.1), "audio/wav")})
    check_error(r, 422)
    check_error(post_encode(http, b"garbage", "multipart/form-data; boundary=xx"), 400)


def test_bad_parameters(http):
    check_error(http.post("/v1/decode?format=mp3", json={"codes": [1]}), 422)
    check_error(http.post("/v1/decode?format=flac&stream=true", json={"codes": [1]}), 422)


def test_unknown_model(server, http):
    check_error(post_encode(http, wav(0.1), params={"model": "nope"}), 404, "unknown_model")
    check_error(http.post("/v1/decode", json={"codes": [1], "model": "nope"}), 404)
    check_error(http.get("/v1/nothing-here"), 404)
    url = server[0].replace("http", "ws") + f"/v1/stream/decode?api_key={KEY}"
    with connect(url, proxy=None) as ws:
        ws.send('{"type": "start", "model": "nope"}')
        assert "unknown model" in " ".join(until_closed(ws))
    assert ws.close_code == 1008


def test_ws_protocol_errors(server):
    url = server[0].replace("http", "ws") + "/v1/stream/{}?api_key=" + KEY
    cases = [
        ("encode", [b"\0\0"], 1008),  # binary before start
        ("encode", ['{"type": "start", "sample_rate": 16000}'], 1008),
        ("encode", ['{"type": "start", "format": "mp3"}'], 1008),
        ("decode", ['{"type": "start"}', struct.pack("<H", 5000)], 1007),
        ("encode", ['{"type": "start", "format": "f32"}', struct.pack("<f", float("nan"))], 1007),
        ("encode", ['{"type": "start"}', '{"type": "pause"}'], 1008),
        ("decode", ['{"type": "start", "codebook_id": "0123456789abcdef"}'], 1008),
    ]
    for op, messages, code in cases:
        with connect(url.format(op), proxy=None) as ws:
            for m in messages:
                ws.send(m)
            replies = until_closed(ws)
        assert any('"error"' in r for r in replies), (op, messages)
        assert ws.close_code == code, (op, messages, ws.close_code)


def test_too_many_streams(server):
    client = WavtokClient(server[0], api_key=KEY, trust_env=False)
    url = server[0].replace("http", "ws") + f"/v1/stream/encode?api_key={KEY}"
    with connect(url, proxy=None) as first:
        first.send('{"type": "start"}')
        assert '"ready"' in first.recv(timeout=5)
        with pytest.raises(WavtokAPIError) as e:
            client.stream_encode([b"\0\0"])
        assert e.value.status == 1013 and "too many streams" in e.value.message
        r = httpx.post(
            f"{server[0]}/v1/decode?stream=true",
            json={"codes": [1, 2]},
            headers={"authorization": f"Bearer {KEY}"},
        )
        check_error(r, 503, "overloaded")
    # The slot frees once the first stream is gone.
    deadline = time.monotonic() + 5
    while True:
        try:
            assert len(client.stream_encode([b"\0\0" * 320])) == 1
            break
        except WavtokAPIError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def _block_model(app) -> threading.Event:
    """Occupy the model's only worker thread until the returned event is set."""
    release = threading.Event()
    runner = app.state.registry.get(None)
    runner.executor.submit(release.wait, 10)
    return release


def test_overload_answers_503_and_recovers(server, http):
    base, app = server
    runner = app.state.registry.get(None)
    release = _block_model(app)
    try:
        body = wav(0.1)
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(post_encode, http, body) for _ in range(6)]
            time.sleep(1.0)  # let every request reach the batcher while the model is blocked
            release.set()
            responses = [f.result() for f in futures]
    finally:
        release.set()
    # One request runs (blocked), at most one waits in the queue of 1, the rest are refused.
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) in (1, 2), statuses
    assert statuses.count(503) + statuses.count(200) == 6, statuses
    for r in responses:
        if r.status_code == 503:
            check_error(r, 503, "overloaded")
            assert r.headers["retry-after"] == "1"
    assert runner.encoder.depth == 0
    assert post_encode(http, body).status_code == 200


def test_client_disconnect_withdraws_queued_request(server, http):
    base, app = server
    runner = app.state.registry.get(None)
    release = _block_model(app)
    try:
        body = wav(0.1)
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(post_encode, http, body)
            time.sleep(0.3)
            # This one queues behind the blocked batch, then its client gives up.
            quitter = pool.submit(
                httpx.post,
                f"{base}/v1/encode",
                content=body,
                headers={"content-type": "audio/wav", "authorization": f"Bearer {KEY}"},
                timeout=0.5,
            )
            with pytest.raises(httpx.TimeoutException):
                quitter.result()
            deadline = time.monotonic() + 5
            while runner.encoder.depth and time.monotonic() < deadline:
                time.sleep(0.02)
            assert runner.encoder.depth == 0
            release.set()
            assert running.result().status_code == 200
    finally:
        release.set()


def test_pathological_sample_rate_is_refused_quickly(http):
    """23999 Hz would need ~10 GB of resampling kernels; it must be a fast 422 instead."""
    start = time.monotonic()
    message = check_error(post_encode(http, wav(0.1, rate=23999)), 422, "invalid_audio")
    assert "sample rate" in message and time.monotonic() - start < 5
    assert post_encode(http, wav(0.1, rate=44100)).status_code == 200
