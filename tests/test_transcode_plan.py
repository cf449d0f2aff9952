"""Transcode planning and bookkeeping without running a model: length-bucketed batches, input
discovery, output conflicts and the job journal (`codec.transcode_plan`, `codec.transcode_core`)."""

from pathlib import Path

import pytest

from codec.transcode_core import Item, Journal, read_jsonl
from codec.transcode_plan import discover, make_batches, make_items

STATE = ".wavtok-transcode"


def test_batches_are_length_bucketed():
    durations = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 0.5]
    items = [Item(i, f"{i:02d}", "", "", d) for i, d in enumerate(durations)]
    batches = make_batches(items, batch_size=3, max_batch_seconds=20.0, window=2)
    assert sorted(it.index for b in batches for it in b) == list(range(10))
    for batch in batches:
        lengths = [it.duration_s for it in batch]
        assert lengths == sorted(lengths) and len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths) <= 20.0
    first_window = [it.index for b in batches for it in b][:6]  # 2 batches' worth sorted together
    assert first_window == [1, 5, 3, 0, 4, 2]
    assert make_batches(items, 3, 20.0, 2) == batches


def test_discover_skips_hidden_files_and_other_jobs_outputs(tmp_path):
    for name in ("a.wav", "s/b.flac", ".hidden.wav", "s/.c.wav.1.0123abcd.tmp", "x.txt",
                 "done/c.wav", f"done/{STATE}/manifest.jsonl", "me/d.wav"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = discover(tmp_path, tmp_path / "me", "encode")
    assert [rel for rel, _ in found] == ["a.wav", "s/b.flac"]


def test_outputs_claimed_twice_are_conflicts():
    items = make_items([("x/a.flac", Path("a.flac")), ("x/a.wav", Path("a.wav"))], "encode")
    assert [it.out_rel for it in items] == ["x/a.wtok", "x/a.wtok"]
    assert items[0].conflict is None and "x/a.flac" in items[1].conflict


def test_journal_is_exclusive_and_survives_torn_lines(tmp_path):
    journal = Journal(tmp_path / STATE)
    with pytest.raises(RuntimeError, match="another transcode job"):
        Journal(tmp_path / STATE)
    journal.commit([{"input": "a", "n": 1}], [])
    journal.close()
    with open(tmp_path / STATE / "manifest.jsonl", "ab") as f:
        f.write(b'{"input": "b", "n"')  # a run killed mid-append
    journal = Journal(tmp_path / STATE)
    journal.commit([{"input": "c", "n": 3}], [])
    journal.close()
    assert read_jsonl(tmp_path / STATE / "manifest.jsonl") == {
        "a": {"input": "a", "n": 1},
        "c": {"input": "c", "n": 3},
    }
