#!/usr/bin/env bash
# The low-rank ablation table of docs/lowrank.md: for each parameter budget, plain SVD (uniform
# ranks) -> activation-aware (uniform) -> + greedy mixed ranks -> + error compensation (comp) ->
# + block refinement (full, the defaults), each
# evaluated on the eval split (top-1, parameters) and, with LATENCY=1, benchmarked at batch 1 and 8.
#   bash bench/lowrank_table.sh [BUDGET...]        (default: 0.9 0.8 0.7 0.6)
#   VARIANTS="full" bash bench/lowrank_table.sh 0.8  (a subset of: svd aware mixed comp full)
# Writes out/lowrank/P_VARIANT/ (model), .eval.json, .bench.json and prints one line per cell.
# Heavy: one compression (~1-5 min) and one 872-image evaluation per cell on 2 cores.
set -euo pipefail
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # no busy-waiting threads on a shared machine
cd "$(dirname "$0")/.."
MODEL=${MODEL:-../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k}
DATA=${DATA:-../shared/data/imagenet-sample}
BUDGETS=("$@"); [ ${#BUDGETS[@]} -gt 0 ] || BUDGETS=(0.9 0.8 0.7 0.6)
read -r -a VARIANTS <<< "${VARIANTS:-svd aware mixed comp full}"
OUT=out/lowrank
mkdir -p "$OUT"
declare -A FLAGS=(
  [svd]="--factorization svd --allocation uniform --no-compensation --refine-steps 0"
  [aware]="--factorization activation --allocation uniform --no-compensation --refine-steps 0"
  [mixed]="--factorization activation --allocation greedy --no-compensation --refine-steps 0"
  [comp]="--factorization activation --allocation greedy --compensation --refine-steps 0"
  [full]="--factorization activation --allocation greedy --compensation"
)
for p in "${BUDGETS[@]}"; do
  for v in "${VARIANTS[@]}"; do
    dir="$OUT/${p}_$v"
    build/vitshrink lowrank "$MODEL" --params "$p" ${FLAGS[$v]} --calib "$DATA" --split "$DATA/calib.txt" --out "$dir"
    build/vitshrink eval "$dir" --data "$DATA" --split "$DATA/eval.txt" --report "$dir.eval.json" >/dev/null
    params=$(build/vitshrink info "$dir" | awk '/^parameters/ {print $2}')
    lat=""
    if [ "${LATENCY:-0}" = "1" ]; then
      build/vitshrink bench "$dir" --batch 1 8 --json "$dir.bench.json" >/dev/null
      lat=$(python3 -c "import json,sys; j=json.load(open('$dir.bench.json')); print(j)" | head -c 300)
    fi
    top1=$(python3 -c "import json; print(json.load(open('$dir.eval.json'))['top1'])")
    echo "budget $p  variant $v  top1 $top1  params $params $lat"
  done
done
