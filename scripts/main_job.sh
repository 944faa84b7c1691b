#!/usr/bin/env bash
# vitshrink's main job on the default model (ViT-Ti from ../shared): FP32 accuracy and latency,
# quantisation to W8A8 (every Linear layer and the attention products q.k^T and P.v in integer
# arithmetic, calibrated on calib.txt; fc2 inputs per token), the same measurements,
# and a side-by-side summary. Results land in out/ (JSON reports and the quantised model).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${VITSHRINK_SHARED:-../shared}
MODEL="$SHARED/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
DATA="$SHARED/data/imagenet-sample"
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "main job: $MODEL not found; skipping (the build is ready: build/vitshrink --help)"
  exit 0
fi
VS=build/vitshrink
THREADS=${THREADS:-2}
mkdir -p out
echo "== FP32: accuracy on $DATA/eval.txt"
$VS eval "$MODEL" --data "$DATA" --split "$DATA/eval.txt" --threads "$THREADS" --report out/fp32_eval.json
echo "== W8A8: quantise (calibration: $DATA/calib.txt)"
$VS quantize "$MODEL" --wbits 8 --abits 8 --act-observer mse --dynamic-for mlp.fc2 --calib "$DATA" --split "$DATA/calib.txt" --threads "$THREADS" --out out/vit_tiny_w8a8
echo "== W8A8: accuracy (integer execution: Linear layers and attention products)"
$VS eval out/vit_tiny_w8a8 --data "$DATA" --split "$DATA/eval.txt" --threads "$THREADS" --report out/w8a8_eval.json
echo "== latency, batch 1, $THREADS threads"
$VS bench "$MODEL" --batch 1 --threads "$THREADS" --json out/fp32_bench.json
$VS bench out/vit_tiny_w8a8 --batch 1 --threads "$THREADS" --json out/w8a8_bench.json
python3 - <<'PY'
import json, os
def load(n): return json.load(open(f"out/{n}.json"))
fe, qe, fb, qb = load("fp32_eval"), load("w8a8_eval"), load("fp32_bench"), load("w8a8_bench")
fs = os.path.getsize(os.path.join(fe["model"], "model.safetensors"))
qs = os.path.getsize("out/vit_tiny_w8a8/model.safetensors")
fm, qm = fb["runs"][0]["median_ms"], qb["runs"][0]["median_ms"]
print()
print(f"{'':14}{'top-1':>8}{'top-5':>8}{'file bytes':>14}{'batch-1 ms':>12}")
print(f"{'FP32':14}{fe['top1']:8.2f}{fe['top5']:8.2f}{fs:14,d}{fm:12.2f}")
print(f"{'W8A8 (int8)':14}{qe['top1']:8.2f}{qe['top5']:8.2f}{qs:14,d}{qm:12.2f}")
print(f"{'change':14}{qe['top1']-fe['top1']:+8.2f}{qe['top5']-fe['top5']:+8.2f}{qs/fs:13.1%} {fm/qm:10.2f}x")
PY
