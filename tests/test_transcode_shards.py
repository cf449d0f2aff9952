"""`wavtok transcode`: Parquet shards and the Ray backend, each checked against a local encode."""

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from transcode_corpus import (
    BAD,
    GOOD,
    SR,
    STATE,
    stats,
    transcode,
    tree,
    with_suffix,
)

from codec import tokenfile
from codec.transcode_core import read_jsonl


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


# -- shards -------------------------------------------------------------------------------------
def test_shards_hold_the_right_rows_deterministically(
    corpus, reference, tiny_model_dir, tmp_path, capsys
):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ("--model", tiny_model_dir, "--shards", "--shard-size", 3, "--quiet")
    assert transcode("encode", corpus, a, *common) == 0
    assert transcode("encode", corpus, b, *common, "--batch-size", 1, "--workers", 0) == 0
    names = sorted(p.name for p in a.glob("*.parquet"))
    assert names == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    assert not tree(a, ".wtok")  # tokens only in the state dir, no mirrored tree
    assert tree(a, ".parquet") == tree(b, ".parquet")  # byte-identical

    table = pa.concat_tables([pq.read_table(a / n) for n in names])
    assert table.num_rows == len(GOOD) and [pq.read_metadata(a / n).num_rows for n in names] == [
        3,
        3,
        1,
    ]
    assert table.column("path").to_pylist() == sorted(GOOD)
    assert table.schema.field("codes").type.value_type == pa.uint16()
    for row in table.to_pylist():
        ids, header = tokenfile.load(reference / Path(row["path"]).with_suffix(".wtok"))
        assert row["codes"] == ids.tolist() and row["num_frames"] == ids.size
        assert (row["num_samples"], row["sample_rate"], row["model"]) == (
            header.num_samples,
            SR,
            "wavtok-tiny-causal",
        )
        assert row["frame_rate"] == 75.0 and row["duration"] == header.num_samples / SR

    capsys.readouterr()
    before = stats(a)
    assert transcode("encode", corpus, a, *common) == 0
    assert "shards: 3 (0 written)" in capsys.readouterr().out
    assert all(stats(a)[p] == before[p] for p in before if p.endswith(".parquet"))


# -- Ray ----------------------------------------------------------------------------------------
def test_ray_encode_matches_local_bytes(ray_local, corpus, reference, tiny_model_dir, tmp_path):
    code = transcode(
        "encode", corpus, tmp_path, "--model", tiny_model_dir, "--batch-size", 3, "--quiet", "--ray"
    )
    assert code == 0
    assert tree(tmp_path, ".wtok") == tree(reference, ".wtok")
    assert set(read_jsonl(tmp_path / STATE / "errors.jsonl")) == set(BAD)
    manifest = read_jsonl(tmp_path / STATE / "manifest.jsonl")
    assert {k: v["output_sha256"] for k, v in manifest.items()} == {
        k: v["output_sha256"] for k, v in read_jsonl(reference / STATE / "manifest.jsonl").items()
    }


def test_ray_decode_matches_local(ray_local, reference, tiny_model_dir, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert transcode("decode", reference, local, "--model", tiny_model_dir, "--quiet") == 0
    assert (
        transcode("decode", reference, remote, "--model", tiny_model_dir, "--quiet", "--ray") == 0
    )
    a, b = tree(local, ".wav"), tree(remote, ".wav")
    assert set(a) == set(b) == with_suffix(GOOD, ".wav")
    for name in a:
        x, _ = sf.read(str(local / name), dtype="int16")
        y, _ = sf.read(str(remote / name), dtype="int16")
        assert x.shape == y.shape and np.abs(x.astype(int) - y).max() <= 1, name
