#!/bin/bash
# Latency of SNP-pruned ViT-Ti against the original at batch 1 and 8 (2 threads), for
# docs/pruning.md: prunes (SNP + refit) to 70 % and 50 % of the MACs (residual width kept), then benchmarks the
# original and the pruned models back to back, then the attention core alone with uniform and
# uneven heads (bench_uneven_attention). Run from the repository root after building.
#   bash bench/prune_speed.sh [OUTDIR]      (default out/prune_speed)
# On a shared machine run it with OMP_WAIT_POLICY=passive (spinning OpenMP threads waiting for a
# core make everything several times slower under load); on a quiet machine leave it unset.
set -euo pipefail
M=${MODEL:-../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k}
D=${DATA:-../shared/data/imagenet-sample}
OUT=${1:-out/prune_speed}
mkdir -p "$OUT"
for t in 70 50; do
  [ -f "$OUT/snp$t/model.safetensors" ] ||
    build/vitshrink prune "$M" --method snp --refit --target-flops 0.$t --keep-embed 1 \
      --calib "$D" --split "$D/calib.txt" --out "$OUT/snp$t" --threads 2
done
uptime
echo "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}"
for m in "$M" "$OUT/snp70" "$OUT/snp50"; do
  build/vitshrink info "$m" | grep compute
  build/vitshrink bench "$m" --batch 1 8 --threads 2 --iters 20 --json "$OUT/$(basename "$m").json"
done
uptime
build/bench/bench_uneven_attention --iters 200 --threads 2
uptime
