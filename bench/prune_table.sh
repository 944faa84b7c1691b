#!/usr/bin/env bash
# Section 1 of docs/pruning.md: top-1 right after pruning (no recovery training), same MACs,
# every method x every compensation, residual width kept (--keep-embed 1).
#   bash bench/prune_table.sh [TARGET...]     (default: 0.7 0.5)
#   METHODS="snp taylor" COMPS="refit" bash bench/prune_table.sh 0.7   (subsets)
# Writes out/prune_table/METHOD_COMP_TARGET/ (model) and .eval.json; prints one line per cell.
# One prune (5-50 s) and one 872-image evaluation (~10 s) per cell on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k}
DATA=${DATA:-../shared/data/imagenet-sample}
TARGETS=("$@"); [ ${#TARGETS[@]} -gt 0 ] || TARGETS=(0.7 0.5)
read -r -a METHODS <<< "${METHODS:-snp l1 taylor}"
read -r -a COMPS <<< "${COMPS:-none mean refit}"
OUT=out/prune_table
mkdir -p "$OUT"
declare -A FLAG=([none]="" [mean]="--compensate" [refit]="--refit")
for t in "${TARGETS[@]}"; do
  for m in "${METHODS[@]}"; do
    for c in "${COMPS[@]}"; do
      dir="$OUT/${m}_${c}_$t"
      build/vitshrink prune "$MODEL" --method "$m" ${FLAG[$c]} --target-flops "$t" --keep-embed 1 \
        --calib "$DATA" --split "$DATA/calib.txt" --out "$dir" >/dev/null 2>&1
      build/vitshrink eval "$dir" --data "$DATA" --split "$DATA/eval.txt" --threads 2 \
        --report "$dir.eval.json" >/dev/null 2>&1
      python3 -c "import json; j=json.load(open('$dir.eval.json')); print(f\"target $t  method $m  compensation $c  top1 {j['top1']:.2f}  top5 {j['top5']:.2f}\")"
    done
  done
done
