#!/usr/bin/env bash
# Puts the weights of the opt-in model wavtok-cpu-75hz-causal-f0 in place (`make model-f0`).
#
# They are not in the working tree: the device tool sends at most 64 MiB of it to a lent GPU,
# and the default model, the training data and the wheels already take ~63 MiB of that. The
# weights live in this repository's history (commit F0_COMMIT), checked against their SHA-256.
# A clone without that history (a shallow one) rebuilds them instead with the committed recipe
# (~25 min on 2 CPU cores); a rebuilt model has its own codebook_id, and MODEL_CARD.md's figures
# are then those of the original.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=models/wavtok-cpu-75hz-causal-f0
WEIGHTS=$DIR/model.safetensors
SHA256=31b30f6a9dbd789501bac27cf1b5813bc6de6a5e3ed75e35f6e9aad1fa1af085
F0_COMMIT=f1147a3
PY=${PY:-.venv/bin/python}
matches() { echo "$SHA256  $1" | sha256sum -c --quiet >/dev/null 2>&1; }
if [ -f "$WEIGHTS" ] && matches "$WEIGHTS"; then
    echo "$WEIGHTS: in place"
    exit 0
fi
if git cat-file -e "$F0_COMMIT:$WEIGHTS" 2>/dev/null; then
    git show "$F0_COMMIT:$WEIGHTS" > "$WEIGHTS.tmp"
    if matches "$WEIGHTS.tmp"; then
        mv "$WEIGHTS.tmp" "$WEIGHTS"
        echo "$WEIGHTS: restored from commit $F0_COMMIT"
        exit 0
    fi
    rm -f "$WEIGHTS.tmp"
    echo "commit $F0_COMMIT holds other weights than expected; rebuilding" >&2
fi
echo "commit $F0_COMMIT is not in this clone: rebuilding $WEIGHTS (~25 min)" >&2
[ -f data/train-real/manifest.jsonl ] ||
    "$PY" -m codec data prepare ../shared/data/train --out data/train-real
"$PY" scripts/fit_f0_codebook.py models/wavtok-cpu-75hz-causal \
    --manifest data/train-real/manifest.jsonl --out runs/f0-fit
"$PY" -m codec train --config codec/configs/train/cpu-harmonic-f0-codes.yaml \
    --data data/train-real --out runs/f0 --init-from runs/f0-fit
card=$(mktemp)
cp "$DIR/MODEL_CARD.md" "$card"
"$PY" -m codec export runs/f0 --out "$DIR"
cp "$card" "$DIR/MODEL_CARD.md"
echo "$WEIGHTS: rebuilt; its codebook_id and scores differ from MODEL_CARD.md's" >&2
