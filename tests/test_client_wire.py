import httpx
import numpy as np
import pytest

from codec.client_wire import (
    EncodeResult,
    WavtokAPIError,
    audio_payload,
    code_chunk,
    decode_payload,
    encode_result,
    pcm_chunk,
    raise_for_error,
    sniff_audio_type,
)
from codec.tokenfile import loads


def _result() -> EncodeResult:
    return EncodeResult(np.array([1, 2, 4095]), "m", 24000, 75.0, 4096, 960)


@pytest.mark.parametrize(
    "magic, kind",
    [
        (b"RIFF....", "audio/wav"),
        (b"fLaC", "audio/flac"),
        (b"OggS", "audio/ogg"),
        (b"ID3x", "audio/mpeg"),
    ],
)
def test_sniff_audio_type(magic, kind):
    assert sniff_audio_type(magic) == kind


def test_audio_payload_prefers_the_file_extension(tmp_path):
    path = tmp_path / "a.flac"
    path.write_bytes(b"RIFFxxxx")
    assert audio_payload(path) == (b"RIFFxxxx", "audio/flac")
    assert audio_payload(b"OggS....") == (b"OggS....", "audio/ogg")


def test_decode_payload_from_a_result_keeps_length_and_model():
    body = decode_payload(_result(), None, None)["json"]
    assert body == {"codes": [1, 2, 4095], "num_samples": 960, "model": "m"}
    assert decode_payload(_result(), 320, "other")["json"]["num_samples"] == 320
    raw = decode_payload(_result().to_tokenfile(), None, None)
    assert raw["headers"]["content-type"] == "application/octet-stream"
    codes, header = loads(raw["content"])
    assert codes.reshape(-1).tolist() == [1, 2, 4095] and header.num_samples == 960


def test_a_results_codebook_id_travels_with_its_codes():
    result = encode_result(
        {
            "codes": [1, 2],
            "model": "m",
            "sample_rate": 24000,
            "frame_rate": 75.0,
            "codebook_size": 4096,
            "num_samples": 640,
            "codebook_id": "00112233aabbccdd",
        }
    )
    assert decode_payload(result, None, None)["json"]["codebook_id"] == "00112233aabbccdd"
    assert loads(result.to_tokenfile())[1].codebook_id == "00112233aabbccdd"
    # A server that predates codebook_id: none is sent, and decoding goes unchecked as before.
    assert "codebook_id" not in decode_payload(_result(), None, None)["json"]


def test_pcm_chunk_float_round_trips_through_the_server_scaling():
    x = np.array([0.0, 0.5, -1.0, 1.0], dtype=np.float32)
    back = np.frombuffer(pcm_chunk(x, "pcm16"), "<i2") / 32768.0
    assert np.allclose(back, [0.0, 0.5, -1.0, 32767 / 32768])
    assert np.array_equal(np.frombuffer(pcm_chunk(x, "f32"), "<f4"), x)


def test_code_chunk_rejects_ids_that_do_not_fit_uint16():
    assert np.frombuffer(code_chunk([0, 65535]), "<u2").tolist() == [0, 65535]
    with pytest.raises(ValueError, match="65535"):
        code_chunk([70000])
    with pytest.raises(ValueError):
        code_chunk([-1])


def test_raise_for_error_carries_the_server_message():
    raise_for_error(httpx.Response(200, json={}))
    bad = httpx.Response(413, json={"error": {"message": "too long", "code": "too_large"}})
    with pytest.raises(WavtokAPIError) as err:
        raise_for_error(bad)
    assert (err.value.status, err.value.message, err.value.code) == (413, "too long", "too_large")
    with pytest.raises(WavtokAPIError, match="502: upstream"):
        raise_for_error(httpx.Response(502, text="upstream"))
