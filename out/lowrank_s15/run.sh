#!/usr/bin/env bash
# Fifteenth session: experiments at 80 % of ViT-Ti's parameters towards issue 7's target.
# `VS=BINARY bash out/lowrank_s15/run.sh NAME...`; NAME picks the extra flags below.
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
VS=${VS:-build/vitshrink}
for name in "$@"; do
  OUT=out/lowrank_s15/$name
  P=0.80
  case $name in
    base) extra=() ;;
    orig) extra=(--refine-to-original) ;;
    lr2) extra=(--refine-lr 2e-3) ;;
    s600) extra=(--refine-steps 600) ;;
    rel) extra=(--refine-loss relative) ;;
    spread) extra=() ;;
    spreadrel) extra=(--refine-loss relative) ;;
    mlp*) export VS_MLP_KL_SCALE=${name#mlp}; extra=() ;;
    norefine) extra=(--refine-steps 0) ;;
    nocomp) extra=(--refine-steps 0 --no-compensation) ;;
    svd_*) P=${name#svd_}; extra=(--factorization svd --allocation uniform --no-compensation --refine-steps 0) ;;
    aware_*) P=${name#aware_}; extra=(--allocation uniform --no-compensation --refine-steps 0) ;;
    mixed_*) P=${name#mixed_}; extra=(--no-compensation --refine-steps 0) ;;
    comp_*) P=${name#comp_}; extra=(--refine-steps 0) ;;
    full_*) P=${name#full_}; extra=() ;;
    *) extra=(${EXTRA:-}) ;;
  esac
  cmd=($VS lowrank $M --params $P "${extra[@]}" --calib $D --split $D/calib.txt --out $OUT)
  t0=$(date +%s.%N)
  "${cmd[@]}" > $OUT.log 2>&1 || { echo "$name FAILED: $(tail -1 $OUT.log)"; continue; }
  t1=$(date +%s.%N)
  $VS eval $OUT --data $D --split $D/eval.txt --reference $M > $OUT.eval.log
  echo "$name: $(head -2 $OUT.eval.log | tr '\n' ' ') | $(grep -h "^lowrank" $OUT.log | tail -1) | wall $(python3 -c "print(round($t1-$t0,1))") s | ${cmd[*]}"
done
