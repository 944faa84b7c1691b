#!/usr/bin/env bash
# Latency of dense vs the 80 % low-rank model (round 9 default = out/lowrank_s15/spread) and its W8A8
# version, alternating twice: `bash out/lowrank_s15/latency.sh > out/lowrank_s15/latency.log`
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
VS=${VS:-build/vitshrink}
for round in 1 2; do
  for m in $M out/lowrank_s15/spread out/lowrank_s15/w8a8; do
    echo "== round $round: $m"
    $VS bench $m --batch 1 8 --threads 2 --iters 20 2>&1 | grep -E "batch|ms"
  done
done
