#!/usr/bin/env bash
# Tenth session: low-rank block refinement with augmented views (--refine-views) on ViT-Ti; one lowrank + eval per row.
set -u
cd "$(dirname "$0")/../.."
OUT=out/lowrank_s10
source out/lowrank_row.sh
for r in "$@"; do
  case $r in
    v3) row 0.8_views3 0.8 --refine-views 3 ;;
    v3s600) row 0.8_views3_s600 0.8 --refine-views 3 --refine-steps 600 ;;
    v7s600) row 0.8_views7_s600 0.8 --refine-views 7 --refine-steps 600 ;;
    s600) row 0.8_s600 0.8 --refine-steps 600 ;;
  esac
done
# (after --refine-views 3 became the default)
for r in "$@"; do
  case $r in
    d90) row 0.9_default 0.9 ;;
    d80) row 0.8_default 0.8 ;;
    d70) row 0.7_default 0.7 ;;
    d60) row 0.6_default 0.6 ;;
    w8a8)  # the default 80 % model quantised W8A8 (integer execution)
      build/vitshrink quantize $OUT/0.8_default --act-observer mse --dynamic-for mlp.fc2.down --threads 2 --calib $D --split $D/calib.txt --out $OUT/0.8_default_w8a8 > $OUT/0.8_default_w8a8.quant.log 2>&1
      build/vitshrink eval $OUT/0.8_default_w8a8 --data $D --split $D/eval.txt --threads 2 --reference $M > $OUT/0.8_default_w8a8.eval.log 2>&1
      echo "0.8_default_w8a8  $(head -2 $OUT/0.8_default_w8a8.eval.log | tr '\n' ' ')  bytes $(stat -c %s $OUT/0.8_default_w8a8/model.safetensors)" ;;
  esac
done
