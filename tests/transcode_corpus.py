"""The transcode tests' corpus (mixed formats, nested folders, bad files) and helpers, shared by
test_transcode.py and test_transcode_shards.py; conftest.py builds them once a session as the
`corpus` and `reference` fixtures."""

import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import ROOT, speechlike

from codec import cli

SR = 24000
ARCTIC = ROOT.parent / "shared/data/train/speech/cmu_arctic"
GOOD = [
    "a.wav",
    "b.flac",
    "c.ogg",
    "silent.wav",
    "stereo.wav",
    "sub/deeper/arctic.wav",
    "sub/low.wav",
]
BAD = {"corrupt.wav": "unreadable audio", "short.wav": "too short"}
STATE = ".wavtok-transcode"


def transcode(*argv) -> int:
    return cli.main(["transcode", *(str(a) for a in argv)])


def tree(root: Path, suffix: str) -> dict[str, bytes]:
    """Relative path -> bytes of every `suffix` file under `root`, state dir excluded."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob(f"*{suffix}"))
        if STATE not in p.parts
    }


def stats(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime, inode) of every file but summary.json, which each run rewrites."""
    return {
        str(p): (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in root.rglob("*")
        if p.is_file() and p.name != "summary.json"
    }


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


def with_suffix(names, suffix: str) -> set[str]:
    return {Path(n).with_suffix(suffix).as_posix() for n in names}


def make_corpus(root: Path) -> Path:
    """Write the corpus into `root`: the files of `GOOD` and `BAD` plus a text file."""
    (root / "sub/deeper").mkdir(parents=True)
    sf.write(root / "a.wav", speechlike(SR, 1).numpy(), SR, subtype="PCM_16")
    sf.write(root / "b.flac", speechlike(16800, 2).numpy(), SR)
    sf.write(root / "c.ogg", speechlike(12000, 3).numpy(), SR, format="OGG", subtype="VORBIS")
    stereo = np.stack([speechlike(26460, s, 44100).numpy() for s in (4, 5)], axis=1)
    sf.write(root / "stereo.wav", stereo, 44100, subtype="FLOAT")
    sf.write(root / "sub/low.wav", speechlike(12800, 6, 16000).numpy(), 16000, subtype="PCM_16")
    arctic = sorted(ARCTIC.glob("*.wav"))
    if arctic:
        shutil.copy(arctic[0], root / "sub/deeper/arctic.wav")
    else:  # same shape as the real clip: 16 kHz speech-like, a few seconds
        sf.write(root / "sub/deeper/arctic.wav", speechlike(40000, 7, 16000).numpy(), 16000)
    sf.write(root / "silent.wav", np.zeros(12000, np.float32), SR, subtype="PCM_16")
    sf.write(root / "short.wav", np.full(100, 0.1, np.float32), SR, subtype="PCM_16")
    (root / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "notes.txt").write_text("not audio\n")
    return root


def encode_reference(corpus: Path, model_dir: Path, out: Path) -> Path:
    """An uninterrupted local encode (4 files a batch, 2 loader threads) into `out`."""
    assert transcode("encode", corpus, out, "--model", model_dir, "--batch-size", 4, "--quiet") == 0
    return out
