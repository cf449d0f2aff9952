#!/usr/bin/env bash
# Run HERE, before a session's device run: fills the two ignored folders that the GPU machine
# needs and that the `device` tool can carry (64 MiB in all, the repository included).
#   .whl/        wheels for Python 3.12 of what that machine's image lacks (see its KINDS.md)
#   data/carry/  the real training speech, re-encoded as 48 kbps Opus (about 30 MB for 80 min)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${SRC:-data/train-real}
[ -f "$SRC/manifest.jsonl" ] || { echo "no $SRC/manifest.jsonl: run 'wavtok data prepare ../shared/data/train --out $SRC' first" >&2; exit 1; }
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    soundfile pydantic pydantic_core cffi pycparser annotated-types typing-inspection \
    torch-stoi==0.2.3 pystoi 2>/dev/null
python3 -m pip wheel -q --no-deps -w .whl encodec==0.1.1 2>/dev/null
rm -rf data/carry && mkdir -p data/carry
for f in "$SRC"/audio/*.flac; do
    ffmpeg -loglevel error -i "$f" -c:a libopus -b:a 48k "data/carry/$(basename "${f%.flac}").opus"
done
du -sh .whl data/carry
# The device tool refuses a working tree over 64 MiB (tracked and untracked files + carried ones).
total=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } |
    xargs -0 du -cb 2>/dev/null | awk '/total$/ {s += $1} END {print s}')
total=$((total + $(du -sb .whl data/carry | awk '{s += $1} END {print s}')))
echo "working tree to carry: $((total / 1048576)) MiB of 64"
[ "$total" -lt $((64 * 1048576 - 262144)) ] || { echo "too close to 64 MiB: carry less (a lower Opus bitrate)" >&2; exit 1; }
