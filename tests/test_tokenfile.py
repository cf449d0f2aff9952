import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import tokenfile
from codec.tokenfile import TokenFileError, TokenHeader


def header(codebook_size: int = 4096, num_samples: int = 24000) -> TokenHeader:
    return TokenHeader(
        model="wavtok-test",
        sample_rate=24000,
        frame_rate=75.0,
        codebook_size=codebook_size,
        num_samples=num_samples,
    )


def split(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(prefix, JSON header, payload) of a token file's bytes."""
    head_len = struct.unpack_from("<I", data, 5)[0]
    return data[:9], data[9 : 9 + head_len], data[9 + head_len :]


@pytest.mark.parametrize(
    ("size", "bits"), [(4096, 12), (1024, 10), (2, 1), (3, 2), (4097, 13), (65536, 16)]
)
@pytest.mark.parametrize("frames", [1, 7, 750])
def test_round_trip(size: int, bits: int, frames: int):
    rng = np.random.default_rng(size + frames)
    ids = rng.integers(0, size, frames)
    ids[0] = size - 1  # the largest id must survive packing
    data = tokenfile.dumps(ids, header(size))
    _, _, payload = split(data)
    assert len(payload) == math.ceil(frames * bits / 8)
    codes, head = tokenfile.loads(data)
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes, ids)
    assert (head.num_frames, head.bits_per_code, head.codebook_size) == (frames, bits, size)
    assert head.model == "wavtok-test" and head.num_samples == 24000


def test_accepts_torch_batch_of_one():
    ids = torch.randint(0, 4096, (1, 75))
    codes, _ = tokenfile.loads(tokenfile.dumps(ids, header()))
    np.testing.assert_array_equal(codes, ids[0].numpy())


def test_75_frames_cost_900_bits():
    data = tokenfile.dumps(np.arange(75), header())
    assert len(split(data)[2]) == math.ceil(900 / 8)  # 112.5 bytes, padded to a byte


def test_out_of_range_ids_rejected():
    with pytest.raises(ValueError, match=r"\[0, 4096\)"):
        tokenfile.dumps(np.array([0, 4096]), header())
    with pytest.raises(ValueError):
        tokenfile.dumps(np.array([-1]), header())


def good_bytes() -> bytes:
    return tokenfile.dumps(np.random.default_rng(0).integers(0, 4096, 100), header())


def test_truncated():
    data = good_bytes()
    with pytest.raises(TokenFileError, match="truncated token file: .* payload bytes"):
        tokenfile.loads(data[:-1])
    with pytest.raises(TokenFileError, match="truncated token file: header"):
        tokenfile.loads(data[:20])
    with pytest.raises(TokenFileError, match="too short"):
        tokenfile.loads(data[:5])


def test_flipped_payload_bit():
    data = bytearray(good_bytes())
    data[-10] ^= 0x04
    with pytest.raises(TokenFileError, match="checksum"):
        tokenfile.loads(bytes(data))


def test_trailing_bytes():
    with pytest.raises(TokenFileError, match="trailing"):
        tokenfile.loads(good_bytes() + b"\0")


def test_bad_magic():
    data = good_bytes()
    with pytest.raises(TokenFileError, match="bad magic"):
        tokenfile.loads(b"RIFF" + data[4:])


def test_wrong_version():
    data = bytearray(good_bytes())
    data[4] = 99
    with pytest.raises(TokenFileError, match="unsupported token file version 99"):
        tokenfile.loads(bytes(data))


@pytest.mark.parametrize(
    "head", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"model": "x"}', b'{"sample_rate": "a"}']
)
def test_garbage_header(head: bytes):
    prefix, _, payload = split(good_bytes())
    data = prefix[:5] + struct.pack("<I", len(head)) + head + payload
    with pytest.raises(TokenFileError, match="corrupt token file header"):
        tokenfile.loads(data)


def test_inconsistent_header():
    prefix, head, payload = split(good_bytes())
    fields = json.loads(head)
    fields["bits_per_code"] = 8
    head = json.dumps(fields).encode()
    with pytest.raises(TokenFileError, match="inconsistent"):
        tokenfile.loads(prefix[:5] + struct.pack("<I", len(head)) + head + payload)


def test_messages_are_one_line(tmp_path: Path):
    path = tmp_path / "bad.wtok"
    path.write_bytes(good_bytes()[:-3])
    with pytest.raises(TokenFileError) as err:
        tokenfile.load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_save_and_load(tmp_path: Path):
    ids = np.random.default_rng(1).integers(0, 4096, 33)
    path = tmp_path / "a.wtok"
    size = tokenfile.save(path, ids, header())
    assert size == path.stat().st_size
    codes, head = tokenfile.load(path)
    np.testing.assert_array_equal(codes, ids)
    assert head.num_frames == 33
    # Atomic write through a temporary file, which is gone afterwards.
    assert [p.name for p in tmp_path.iterdir()] == ["a.wtok"]
    tokenfile.save(path, ids[:5], header())  # overwrite in place
    assert tokenfile.load(path)[0].size == 5
    assert [p.name for p in tmp_path.iterdir()] == ["a.wtok"]


def test_saved_file_mode_follows_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        tokenfile.save(tmp_path / "a.wtok", np.arange(4), header())
    finally:
        os.umask(old)
    assert (tmp_path / "a.wtok").stat().st_mode & 0o777 == 0o644


def test_failed_save_leaves_nothing(tmp_path: Path):
    with pytest.raises(ValueError):
        tokenfile.save(tmp_path / "a.wtok", np.array([5000]), header())
    with pytest.raises(FileNotFoundError):
        tokenfile.save(tmp_path / "missing" / "a.wtok", np.arange(4), header())
    assert list(tmp_path.iterdir()) == []


def test_load_missing_and_directory(tmp_path: Path):
    with pytest.raises(TokenFileError, match="no such file"):
        tokenfile.load(tmp_path / "nope.wtok")
    with pytest.raises(TokenFileError, match="is a directory"):
        tokenfile.load(tmp_path)


def test_codebook_id_round_trips_and_guards_decoding():
    from types import SimpleNamespace

    model = SimpleNamespace(
        name="m",
        sample_rate=24000,
        frame_rate=75.0,
        codebook_size=4096,
        hop_length=320,
        codebook_id="00112233aabbccdd",
    )
    header = TokenHeader.for_model(model, 640)
    _, back = tokenfile.loads(tokenfile.dumps(np.arange(2), header))
    assert back.codebook_id == "00112233aabbccdd"
    assert back.mismatch(model, 2) is None
    other = SimpleNamespace(**{**vars(model), "codebook_id": "ffffffffffffffff"})
    assert "codebook 00112233aabbccdd" in back.mismatch(other, 2)
    assert back.model_copy(update={"codebook_id": None}).mismatch(other, 2) is None
    assert "no frames" in back.mismatch(model, 0)
    assert "inconsistent" in back.mismatch(model, 5)
