"""The service with lookahead models: a real uvicorn server on 127.0.0.1 streams every frame
that an encoder or decoder lookahead holds back, equal to the offline result, and announces
the longer latency."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from websockets.sync.client import connect

from codec.client import WavtokClient
from server.settings import Settings
from server.testing import serve_in_thread

SR = 24000


def test_encoder_lookahead_model_streams_everything(tmp_path, signal):
    """An encoder with lookahead holds its last frames until the end; the streamed encode
    delivers them, equals the offline encode and announces the longer latency."""
    from conftest import encoder_lookahead_codec

    model = encoder_lookahead_codec(2)
    model.save_pretrained(tmp_path / "ahead")
    settings = Settings(_env_file=None, default_model=str(tmp_path / "ahead"))
    wav = signal(9 * 320 + 50, seed=5)
    ref = model.encode(wav)[0][0].numpy()
    with serve_in_thread(settings) as (base, _), WavtokClient(base, trust_env=False) as client:
        with connect(base.replace("http", "ws") + "/v1/stream/encode", proxy=None) as ws:
            ws.send('{"type": "start", "format": "f32"}')
            ready = json.loads(ws.recv())
        assert ready["latency_ms"] == pytest.approx(3 * 1000 * 320 / SR)
        f32 = wav.numpy().astype("<f4")
        chunks = [f32[i : i + 700] for i in range(0, len(f32), 700)]
        assert np.array_equal(client.stream_encode(chunks, format="f32"), ref)


def test_decoder_lookahead_model_streams_everything(tmp_path):
    """A decoder with lookahead holds its last frames until the end; both streamed paths
    deliver them and equal the offline decode."""
    from conftest import lookahead_codec

    model = lookahead_codec(2)
    model.save_pretrained(tmp_path / "ahead")
    settings = Settings(
        _env_file=None, default_model=str(tmp_path / "ahead"), stream_chunk_frames=4
    )
    codes = np.random.default_rng(3).integers(0, model.codebook_size, 23)
    ref = model.decode(torch.from_numpy(codes)[None])[0][0, 0].numpy()
    with serve_in_thread(settings) as (base, _), WavtokClient(base, trust_env=False) as client:
        with connect(base.replace("http", "ws") + "/v1/stream/decode") as ws:
            ws.send('{"type": "start", "format": "f32"}')
            ready = json.loads(ws.recv())
        assert ready["latency_ms"] == pytest.approx(2 * 1000 * 320 / SR)
        assert ready["codebook_id"] == model.codebook_id
        with connect(base.replace("http", "ws") + "/v1/stream/decode") as ws:
            ws.send(json.dumps({"type": "start", "codebook_id": model.codebook_id}))
            assert json.loads(ws.recv())["type"] == "ready"  # its own codebook is accepted
        chunks = [codes[i : i + 3] for i in range(0, len(codes), 3)]
        streamed = client.stream_decode(chunks, format="f32")
        assert streamed.shape == ref.shape and np.abs(streamed - ref).max() < 1e-5
        body = b"".join(client.decode_stream(codes.tolist(), format="f32"))
        http = np.frombuffer(body, "<f4")
        assert http.shape == ref.shape and np.abs(http - ref).max() < 1e-5
