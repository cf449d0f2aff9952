#!/usr/bin/env bash
# Run ON the lent GPU machine, from the repository root, after scripts/device_bundle.sh here:
#   device run: command "bash scripts/device_train.sh", carry [".whl", "data/carry"], timeout 560
# Fine-tunes the shipped model with each of JOBS ("name=config" pairs, run side by side on the
# one GPU: a step of this small model is bound by kernel launches, so runs overlap well) until
# FINISH_BY seconds after the script started, then exports each run into $OUT, which comes back.
# The tool returns at most 8 files and 64 MiB, so each model's weights come back halved
# (scripts/transport_weights.py pack) as $OUT/NAME.safetensors, and the configs and logs in
# $OUT/runs.tgz. Here:
#   tar xzf FILES_AT/runs.tgz -C DIR    (DIR/NAME/{config.yaml,training.json}, DIR/NAME.log)
#   python scripts/transport_weights.py unpack FILES_AT/NAME.safetensors DIR/NAME/model.safetensors
# then `wavtok eval DIR/NAME` before shipping anything.
set -uo pipefail
START=$SECONDS
PYTHON=${PYTHON:-python3}
FINISH_BY=${FINISH_BY:-510}
JOBS=${JOBS:-"gan=codec/configs/train/gpu-finetune.yaml gannoise=codec/configs/train/gpu-finetune-noise.yaml cont=codec/configs/train/gpu-continue.yaml"}
INIT=${INIT:-models/wavtok-cpu-75hz-causal}
DEVICE=${DEVICE:-cuda}
: "${OUT:?OUT must name the folder whose files come back}"
WORK=${WORK:-/tmp/wavtok}
DATA=${DATA:-data/carry}
WHEELS=${WHEELS:-.whl}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$WORK/site:$PWD"
fi
nvidia-smi -L 2>/dev/null || true
# A stale .whl (bundled before a dependency was added) fails here in seconds, not mid-run.
"$PYTHON" -c "import encodec, soundfile, pydantic, torch_stoi, codec.train" ||
    { echo "missing packages: run 'make device-bundle' here again" >&2; exit 1; }
"$PYTHON" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
"$PYTHON" -m codec data prepare "$DATA" --out "$WORK/train" 2>&1 | tail -1 || exit 1
mkdir -p "$WORK/export"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 20 \
    > "$WORK/export/gpu.csv" 2>/dev/null &
gpu_trace=$!
# Training stops FINISH_BY - EXPORT_SECONDS after the start; SIGTERM makes each trainer
# checkpoint at the end of its step, and the export takes that last checkpoint.
TRAIN_SECONDS=$((FINISH_BY - ${EXPORT_SECONDS:-45} - (SECONDS - START)))
echo "training each job for ${TRAIN_SECONDS} s"
pids=()
for job in $JOBS; do
    name=${job%%=*} config=${job#*=}
    timeout -s TERM -k 30 "$TRAIN_SECONDS" "$PYTHON" -m codec train --config "$config" \
        --data "$WORK/train" --out "$WORK/run-$name" --device "$DEVICE" --init-from "$INIT" \
        > "$OUT/$name.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for job in $JOBS; do
    name=${job%%=*}
    tail -2 "$OUT/$name.log"
    (
        "$PYTHON" -m codec export "$WORK/run-$name" --out "$WORK/export/$name" &&
            "$PYTHON" scripts/transport_weights.py pack \
                "$WORK/export/$name/model.safetensors" "$OUT/$name.safetensors" &&
            rm "$WORK/export/$name/model.safetensors"
    ) || echo "$name: export failed"
    mv "$OUT/$name.log" "$WORK/export/$name.log"
done
kill "$gpu_trace" 2>/dev/null
tar czf "$OUT/runs.tgz" -C "$WORK/export" .
ls -l "$OUT"
echo "done in $((SECONDS - START)) s"
