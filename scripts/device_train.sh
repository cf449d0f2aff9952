#!/usr/bin/env bash
# Run ON the lent GPU machine, from the repository root, after scripts/device_bundle.sh here:
#   device run: command "bash scripts/device_train.sh", carry [".whl", "data/carry"], timeout 590
# Fine-tunes the shipped model for TRAIN_SECONDS, then exports it into $OUT, which comes back.
# The tool returns files of at most 16 MiB, so the weights come back in parts; here:
#   cat FILES_AT/NAME/model.safetensors.part-* > models/NAME/model.safetensors
# (NAME: the shipped model's folder name unless set), then `wavtok eval` it before shipping.
set -euo pipefail
PYTHON=${PYTHON:-python3}
TRAIN_SECONDS=${TRAIN_SECONDS:-420}
CONFIG=${CONFIG:-codec/configs/train/gpu-finetune.yaml}
INIT=${INIT:-models/wavtok-cpu-75hz-causal}
DEVICE=${DEVICE:-cuda}
: "${OUT:?OUT must name the folder whose files come back}"
WORK=${WORK:-/tmp/wavtok}
NAME=${NAME:-$(basename "$INIT")}
DATA=${DATA:-data/carry}
WHEELS=${WHEELS:-.whl}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$WHEELS"/*.whl
    export PYTHONPATH="$WORK/site:$PWD"
fi
nvidia-smi -L 2>/dev/null || true
"$PYTHON" -m codec data prepare "$DATA" --out "$WORK/train" 2>&1 | tail -2
# SIGTERM makes the trainer checkpoint; the export below then takes the last checkpoint.
timeout -s TERM -k 60 "$TRAIN_SECONDS" "$PYTHON" -m codec train --config "$CONFIG" \
    --data "$WORK/train" --out "$WORK/run" --device "$DEVICE" --init-from "$INIT" \
    > "$OUT/train.log" 2>&1 || echo "training stopped (exit $?)"
tail -3 "$OUT/train.log"
"$PYTHON" -m codec export "$WORK/run" --out "$WORK/$NAME"
mkdir -p "$OUT/$NAME"
cp "$WORK/$NAME/config.yaml" "$WORK/$NAME/training.json" "$OUT/$NAME/"
split -b 15m -d "$WORK/$NAME/model.safetensors" "$OUT/$NAME/model.safetensors.part-"
ls -l "$OUT/$NAME"
