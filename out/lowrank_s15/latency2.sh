#!/usr/bin/env bash
# Second latency measurement on a quiet machine (after every compression run): dense, the 80 % default
# (spread), the 80 % uniform activation-aware model (aware_0.8, uniform shapes) and the 80 % W8A8 model,
# alternating twice: `bash out/lowrank_s15/latency2.sh > out/lowrank_s15/latency2.log`
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
VS=${VS:-out/bin/vs_s15c}
for round in 1 2; do
  for m in $M out/lowrank_s15/spread out/lowrank_s15/aware_0.8 out/lowrank_s15/w8a8; do
    echo "== round $round: $m"
    $VS bench $m --batch 1 8 --threads 2 --iters 20 2>&1 | grep -E "batch|ms"
  done
done
