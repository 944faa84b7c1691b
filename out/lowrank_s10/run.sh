#!/usr/bin/env bash
# Tenth session: low-rank block refinement with augmented views (--refine-views) on ViT-Ti; one lowrank + eval per row.
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
OUT=out/lowrank_s10
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
