#!/usr/bin/env bash
# Ninth session: low rank + block refinement (--refine-steps) on ViT-Ti; one lowrank + eval per row.
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
OUT=out/lowrank_s9
row() {  # name, fraction, flags...
  local name=$1 frac=$2; shift 2
  local t0=$(date +%s.%N)
  build/vitshrink lowrank $M --params $frac "$@" --threads 2 --calib $D --split $D/calib.txt --out $OUT/$name > $OUT/$name.lowrank.log 2>&1 || { echo "$name FAILED: $(tail -1 $OUT/$name.lowrank.log)"; return; }
  local t1=$(date +%s.%N)
  build/vitshrink eval $OUT/$name --data $D --split $D/eval.txt --threads 2 --reference $M --report $OUT/$name.eval.json > /dev/null 2>&1
  echo "$name  $(python3 -c "import json; j=json.load(open('$OUT/$name.eval.json')); print('top1', round(j['top1'],2), 'top5', round(j['top5'],2), 'kl', round(j['reference']['kl'],4))")  params $(python3 -c "import json; print(json.load(open('$OUT/$name/config.json'))['lowrank']['params']['after'])")  seconds $(python3 -c "print(round($t1-$t0,1))")  flags: --params $frac $*"
}
for r in "$@"; do
  case $r in
    lr3) row 0.8_refine200_lr3e-4 0.8 --refine-steps 200 --refine-lr 3e-4 ;;
    s500) row 0.8_refine500 0.8 --refine-steps 500 ;;
    base) row 0.8_default 0.8 ;;
    r90) row 0.9_refine200 0.9 --refine-steps 200 ;;
    r70) row 0.7_refine200 0.7 --refine-steps 200 ;;
    r60) row 0.6_refine200 0.6 --refine-steps 200 ;;
    lr1e3) row 0.8_refine200_lr1e-3 0.8 --refine-steps 200 --refine-lr 1e-3 ;;
    lr3_500) row 0.8_refine500_lr3e-4 0.8 --refine-steps 500 --refine-lr 3e-4 ;;
    uni) row 0.8_uniform_refine200 0.8 --allocation uniform --refine-steps 200 ;;
  esac
done
# (after --refine-to-original)
for r in "$@"; do
  case $r in
    orig) row 0.8_refine200_to_original 0.8 --refine-to-original ;;
  esac
done
# (after the review: the refinement's loss is train::mse_loss, whose gradient is rounded from double)
for r in "$@"; do
  case $r in
    d80) row 0.8_default_r 0.8 ;;
    d90) row 0.9_default_r 0.9 ;;
    d70) row 0.7_default_r 0.7 ;;
    d60) row 0.6_default_r 0.6 ;;
    orig_r) row 0.8_to_original_r 0.8 --refine-to-original ;;
  esac
done
