#!/usr/bin/env bash
# KL of the compressed model MODEL with each block in turn put back as in the original (restore.py).
# `bash out/lowrank_s16/restore.sh MODEL`
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
for b in 0 1 2 3 4 5 6 7 8 9 10 11; do
  /usr/bin/python3 out/lowrank_s16/restore.py $1 $M $b /tmp/restore_$b
  echo "$1 block $b restored: $(build/vitshrink eval /tmp/restore_$b --data $D --split $D/eval.txt --reference $M | head -2 | tr '\n' ' ')"
  rm -rf /tmp/restore_$b
done
