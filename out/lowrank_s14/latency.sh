#!/usr/bin/env bash
# Latency of dense vs the 80 % low-rank models (default, --no-mlp-units), alternating twice:
# `bash out/lowrank_s14/latency.sh > out/lowrank_s14/latency.log`
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
for round in 1 2; do
  for m in $M out/lowrank_s14/c80 out/lowrank_s14/nm80; do
    echo "== round $round: $m"
    build/vitshrink bench $m --batch 1 8 --threads 2 --iters 20 2>&1 | grep -E "batch|ms"
  done
done
