"""The service end to end: a real uvicorn server on 127.0.0.1 with a tiny causal model.

Everything the server returns is compared with the library's own output for the same input.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from codec import tokenfile
from codec.audio import encode_audio_bytes, load_mono
from codec.client import AsyncWavtokClient, WavtokClient
from codec.model import Codec
from codec.precision import checked_decode_dtype
from server.settings import Settings
from server.testing import make_test_model, serve_in_thread

SR = 24000
LSB = 1  # int16 steps: streamed and offline float outputs differ by ~1e-8 before rounding


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_test_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def codec(model_dir):
    return Codec.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def server(model_dir):
    settings = Settings(
        _env_file=None,
        default_model=str(model_dir),
        max_wait_ms=50,
        max_batch_size=8,
        stream_chunk_frames=4,
        max_streams=4,
    )
    with serve_in_thread(settings) as (base, app):
        yield base, app


@pytest.fixture
def client(server):
    with WavtokClient(server[0], trust_env=False) as c:
        yield c


def pcm(seconds: float, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (int(seconds * SR),) if channels == 1 else (int(seconds * SR), channels)
    return (rng.standard_normal(shape) * 3000).astype(np.int16)


def audio_file(samples: np.ndarray, rate: int = SR, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def library_codes(codec: Codec, data: bytes) -> np.ndarray:
    wav, _ = load_mono(data, codec.sample_rate)
    return codec.encode(wav[None, None])[0][0].numpy()


def library_audio(codec: Codec, codes: np.ndarray, num_samples: int | None = None) -> np.ndarray:
    n = None if num_samples is None else torch.tensor([num_samples])
    return codec.decode(torch.from_numpy(codes)[None], num_samples=n)[0][0, 0].numpy()


def as_int16(audio: np.ndarray) -> np.ndarray:
    return np.frombuffer(encode_audio_bytes(torch.from_numpy(audio), SR, "PCM16"), "<i2")


def metric_samples(base: str, name: str) -> list:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return [
        s for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name
    ]


def test_health_ready_models_and_docs(client, server, codec):
    assert client.health() == {"status": "ok"}
    assert client.ready()
    (info,) = client.models()
    assert info["name"] == codec.name and info["default"] and info["causal"]
    assert info["codebook_size"] == codec.codebook_size and info["frame_rate"] == 75.0
    spec = httpx.get(f"{server[0]}/openapi.json").json()
    assert {"/v1/encode", "/v1/decode", "/v1/models", "/readyz"} <= set(spec["paths"])
    assert "EncodeResponse" in spec["components"]["schemas"]
    assert httpx.get(f"{server[0]}/docs").status_code == 200


def test_encode_matches_library(client, server, codec):
    data = audio_file(pcm(0.7))
    result = client.encode(data)
    assert np.array_equal(result.codes, library_codes(codec, data))
    assert result.codebook_id == codec.codebook_id
    assert result.num_samples == int(0.7 * SR) and result.model == codec.name
    # The same bytes as a multipart upload.
    r = httpx.post(f"{server[0]}/v1/encode", files={"file": ("a.wav", data, "audio/wav")})
    assert r.status_code == 200 and r.json()["codes"] == result.codes.tolist()


def test_encode_with_search_matches_the_library_search(client, server, codec):
    from codec.search import search_encode, settings_from

    data = audio_file(pcm(0.6, seed=3))
    result = client.encode(data, search=4)
    wav, _ = load_mono(data, SR)
    expected, _ = search_encode(codec, wav[None, None], settings=settings_from(4, codec.config))
    assert np.array_equal(result.codes, expected[0].numpy())
    assert not np.array_equal(result.codes, library_codes(codec, data))
    ids, _ = tokenfile.loads(client.encode_to_tokenfile(data, search=4))
    assert np.array_equal(ids, result.codes)
    beamed = client.encode(data, search=4, beam=3)
    settings = settings_from(4, codec.config, beam=3)
    expected, _ = search_encode(codec, wav[None, None], settings=settings)
    assert np.array_equal(beamed.codes, expected[0].numpy())
    assert not np.array_equal(beamed.codes, result.codes)
    refined = client.encode(data, search=4, refine=1)
    settings = settings_from(4, codec.config, refine=1)
    expected, _ = search_encode(codec, wav[None, None], settings=settings)
    assert np.array_equal(refined.codes, expected[0].numpy())
    assert not np.array_equal(refined.codes, result.codes)
    bads = (
        {"search": "-1"},
        {"search": "33"},
        {"search": "x"},
        {"search": 4, "beam": 0},
        {"search": 4, "refine": 5},
    )
    for bad in bads:
        r = httpx.post(
            f"{server[0]}/v1/encode",
            content=data,
            headers={"content-type": "audio/wav"},
            params=bad,
        )
        assert r.status_code == 422 and list(bad)[-1] in r.text, (bad, r.text)
    for option, value in (("beam", 2), ("refine", 1)):
        r = httpx.post(
            f"{server[0]}/v1/encode",
            content=data,
            headers={"content-type": "audio/wav"},
            params={option: value},
        )
        assert r.status_code == 422 and f"{option} needs search" in r.text


def test_plain_requests_do_not_wait_for_a_search(client, server):
    """Searches run on their own worker: while it is busy, plain encodes and decodes finish
    and a search waits."""
    runner = next(iter(server[1].state.registry.runners.values()))
    gate = threading.Event()
    busy = runner.search_executor.submit(gate.wait, 30)
    data = audio_file(pcm(0.3, seed=5))
    with ThreadPoolExecutor(1) as pool:
        searched = pool.submit(client.encode, data, search=2)
        try:
            plain = client.encode(data)
            assert len(client.decode(plain.codes)) > 0
            time.sleep(0.2)
            assert not searched.done()
        finally:
            gate.set()
        assert searched.result(timeout=30).num_frames == plain.num_frames
    busy.result()


def test_encode_downmixes_and_resamples(client, codec, tmp_path):
    stereo = pcm(0.5, seed=1, channels=2)
    data = audio_file(stereo, rate=16000, fmt="FLAC")
    path = tmp_path / "stereo.flac"
    path.write_bytes(data)
    result = client.encode(path)
    assert np.array_equal(result.codes, library_codes(codec, data))
    assert result.num_samples == len(stereo) * SR // 16000


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "media"),
    [
        ("OGG", "VORBIS", 24000, "audio/ogg"),
        ("OGG", "OPUS", 48000, "audio/ogg"),
        ("MP3", "MPEG_LAYER_III", 44100, "audio/mpeg"),
    ],
)
def test_encode_compressed_formats(server, codec, fmt, subtype, rate, media):
    buf = io.BytesIO()
    sf.write(buf, pcm(0.3, seed=8).astype(np.float32) / 32768, rate, format=fmt, subtype=subtype)
    data = buf.getvalue()
    r = httpx.post(f"{server[0]}/v1/encode", content=data, headers={"content-type": media})
    assert r.status_code == 200, r.text
    assert r.json()["codes"] == library_codes(codec, data).tolist()


def test_decode_matches_library(client, codec):
    result = client.encode(audio_file(pcm(0.6, seed=2)))
    ref = library_audio(codec, result.codes, result.num_samples)
    f32 = np.frombuffer(client.decode(result, format="f32"), "<f4")
    assert f32.shape == ref.shape and np.abs(f32 - ref).max() < 1e-4
    pcm16 = np.frombuffer(client.decode(result, format="pcm16"), "<i2")
    assert np.abs(pcm16.astype(int) - as_int16(ref)).max() <= LSB
    for fmt in ("wav", "flac"):
        audio, rate = sf.read(io.BytesIO(client.decode(result, format=fmt)), dtype="float32")
        assert rate == SR and audio.shape == ref.shape
        assert np.abs(audio - ref).max() < 2.0 / 32767
    # Without num_samples the output is a whole number of hops.
    full = np.frombuffer(client.decode(result.codes, format="f32"), "<f4")
    assert full.shape[-1] == result.num_frames * codec.hop_length


def test_tokenfile_round_trip(client, codec):
    data = audio_file(pcm(0.4, seed=3))
    blob = client.encode_to_tokenfile(data)
    codes, header = tokenfile.loads(blob)
    assert np.array_equal(codes, library_codes(codec, data))
    assert header.model == codec.name and header.num_samples == int(0.4 * SR)
    assert header.codebook_id == codec.codebook_id
    f32 = np.frombuffer(client.decode(blob, format="f32"), "<f4")
    ref = library_audio(codec, codes, header.num_samples)
    assert f32.shape == ref.shape and np.abs(f32 - ref).max() < 1e-4


def test_concurrent_requests_are_batched(server, codec):
    base = server[0]
    inputs = [audio_file(pcm(0.2 + 0.05 * i, seed=10 + i)) for i in range(8)]

    async def fire() -> tuple[list, list]:
        async with AsyncWavtokClient(base, trust_env=False) as c:
            encoded = await asyncio.gather(*(c.encode(d) for d in inputs))
            decoded = await asyncio.gather(*(c.decode(e, format="f32") for e in encoded))
        return encoded, decoded

    encoded, decoded = asyncio.run(fire())
    for data, enc, dec in zip(inputs, encoded, decoded, strict=True):
        # Padded batches must not change any item's result.
        assert np.array_equal(enc.codes, library_codes(codec, data))
        ref = library_audio(codec, enc.codes, enc.num_samples)
        assert np.abs(np.frombuffer(dec, "<f4") - ref).max() < 1e-4
    for op in ("encode", "decode"):
        samples = metric_samples(base, "wavtok_batch_size_bucket")
        ones = next(s.value for s in samples if s.labels["op"] == op and s.labels["le"] == "1.0")
        total = next(s.value for s in samples if s.labels["op"] == op and s.labels["le"] == "+Inf")
        assert total > ones, f"no {op} batch held more than one request"


def test_decode_stream_equals_non_streamed(client, server, codec):
    result = client.encode(audio_file(pcm(1.0, seed=4)))
    for fmt, tol in (("pcm16", LSB), ("f32", 1e-5)):
        dtype = "<i2" if fmt == "pcm16" else "<f4"
        whole = np.frombuffer(client.decode(result, format=fmt), dtype)
        streamed = np.frombuffer(b"".join(client.decode_stream(result, format=fmt)), dtype)
        assert streamed.shape == whole.shape
        assert np.abs(streamed.astype(np.float64) - whole).max() <= tol
    streamed_wav = b"".join(client.decode_stream(result, format="wav"))
    a, _ = sf.read(io.BytesIO(streamed_wav), dtype="int16")
    b, _ = sf.read(io.BytesIO(client.decode(result, format="wav")), dtype="int16")
    assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= LSB
    # Chunked transfer: no Content-Length, sent in pieces of `stream_chunk_frames` frames.
    body = {"codes": result.codes.tolist()}
    params = {"stream": "true", "format": "pcm16"}
    with httpx.stream("POST", f"{server[0]}/v1/decode", json=body, params=params) as r:
        assert r.status_code == 200 and "content-length" not in r.headers
        assert r.headers.get("transfer-encoding") == "chunked"
        assert sum(len(c) for c in r.iter_raw()) == result.num_frames * codec.hop_length * 2


def test_ws_encode_matches_offline(client, codec):
    samples = pcm(0.9, seed=5)
    ref = codec.encode(torch.from_numpy(samples.astype(np.float32) / 32768.0)[None, None])[0][0]
    chunks = [samples[i : i + 480] for i in range(0, len(samples), 480)]  # 20 ms
    assert np.array_equal(client.stream_encode(chunks), ref.numpy())
    # Frames need not align with samples: split the bytes at odd offsets.
    raw = samples.tobytes()
    odd = [raw[i : i + 1001] for i in range(0, len(raw), 1001)]
    assert np.array_equal(client.stream_encode(odd), ref.numpy())
    floats = samples.astype(np.float32) / 32768.0
    f32_chunks = [floats[i : i + 333] for i in range(0, len(floats), 333)]
    assert np.array_equal(client.stream_encode(f32_chunks, format="f32"), ref.numpy())


def test_ws_decode_matches_offline(client, codec):
    codes = client.encode(audio_file(pcm(0.8, seed=6))).codes
    ref = library_audio(codec, codes)
    chunks = [codes[i : i + 3] for i in range(0, len(codes), 3)]
    f32 = client.stream_decode(chunks, format="f32")
    assert f32.shape == ref.shape and np.abs(f32 - ref).max() < 1e-5
    pcm16 = client.stream_decode(chunks, format="pcm16")
    assert np.abs(pcm16.astype(int) - as_int16(ref)).max() <= LSB


def test_ws_is_full_duplex(client):
    """Codes must arrive while the client is still sending; otherwise this would time out."""
    got_codes = threading.Event()
    samples = pcm(0.5, seed=7)

    def chunks():
        for i in range(0, 4800, 480):
            yield samples[i : i + 480]
        assert got_codes.wait(5), "no codes before the end of the stream"
        yield samples[4800:]

    codes = client.stream_encode(chunks(), on_codes=lambda _: got_codes.set())
    assert len(codes) == -(-len(samples) // 320)


def test_ws_abandoned_stream_is_released(server):
    base = server[0]
    with connect(base.replace("http", "ws") + "/v1/stream/encode", proxy=None) as ws:
        ws.send('{"type": "start", "format": "pcm16"}')
        assert '"ready"' in ws.recv(timeout=5)
        ws.send(pcm(0.1).tobytes())
    # The client vanished without {"type": "end"}: the slot must come back.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        active = metric_samples(base, "wavtok_active_streams")
        if all(s.value == 0 for s in active):
            break
        time.sleep(0.05)
    assert all(s.value == 0 for s in metric_samples(base, "wavtok_active_streams"))
    outcomes = {s.labels["outcome"] for s in metric_samples(base, "wavtok_streams_total")}
    assert "disconnected" in outcomes


def test_bfloat16_decodes_in_bf16_and_never_changes_the_tokens(model_dir, codec):
    """`dtype=bfloat16` on a CPU: tokens stay the float32 model's, exactly; decoding runs in
    bf16 where oneDNN supports it and decodes this model right (close to, not equal to,
    float32) and in float32 elsewhere."""
    settings = Settings(_env_file=None, default_model=str(model_dir), dtype="bfloat16")
    wav = pcm(1.5, seed=3)
    data = audio_file(wav)
    ref_codes = library_codes(codec, data)
    ref_audio = library_audio(codec, ref_codes, len(wav))
    with serve_in_thread(settings) as (base, _), WavtokClient(base, trust_env=False) as client:
        result = client.encode(data)
        assert np.array_equal(np.asarray(result.codes), ref_codes)
        audio, _ = sf.read(io.BytesIO(client.decode(result, format="wav")), dtype="float32")
    ref = as_int16(ref_audio).astype(np.float32) / 32768
    if checked_decode_dtype("bfloat16", codec) is not None:
        # bf16 rounding moves samples by tens of int16 steps (83 here), float32 by at most 1.
        assert np.abs(audio - ref).max() > 8 * LSB / 32768
        assert np.corrcoef(audio, ref)[0, 1] > 0.99
    else:
        np.testing.assert_allclose(audio, ref, atol=LSB / 32768)
