#!/usr/bin/env bash
# Fourteenth session: low rank with attention circuits and MLP units (default) at every budget; nm*: --no-mlp-units
# (--no-circuits) at 80 %; `bash out/lowrank_s14/run.sh NAME...` (NAME: c90 c80 c70 c60 nc80 nm80 c80p64 c80s600 w8a8)
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
VS=${VS:-build/vitshrink}
for name in "$@"; do
  OUT=out/lowrank_s14/$name
  case $name in
    c80p64) cmd=($VS lowrank $M --params 0.80 --sensitivity-images 64 --calib $D --split $D/calib.txt --out $OUT) ;;
    c80s600) cmd=($VS lowrank $M --params 0.80 --refine-steps 600 --calib $D --split $D/calib.txt --out $OUT) ;;
    c*) cmd=($VS lowrank $M --params 0.${name#c} --calib $D --split $D/calib.txt --out $OUT) ;;
    nm*) cmd=($VS lowrank $M --params 0.${name#nm} --no-mlp-units --calib $D --split $D/calib.txt --out $OUT) ;;
    nc*) cmd=($VS lowrank $M --params 0.${name#nc} --no-circuits --calib $D --split $D/calib.txt --out $OUT) ;;
    w8a8) cmd=($VS quantize out/lowrank_s14/c80 --act-observer mse --prob-quantizer agq --dynamic-for down up attn.qkv attn.proj mlp.fc1 mlp.fc2 --calib $D --split $D/calib.txt --out $OUT) ;;
  esac
  t0=$(date +%s.%N)
  "${cmd[@]}" > $OUT.log 2>&1 || { echo "$name FAILED: $(tail -1 $OUT.log)"; continue; }
  t1=$(date +%s.%N)
  $VS eval $OUT --data $D --split $D/eval.txt --reference $M > $OUT.eval.log
  echo "$name: $(head -2 $OUT.eval.log | tr '\n' ' ') | $(grep -h "^lowrank\|^quantize" $OUT.log | tail -1) | wall $(python3 -c "print(round($t1-$t0,1))") s | ${cmd[*]}"
done
