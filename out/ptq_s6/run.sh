#!/usr/bin/env bash
# Sixth session: the PTQ methods with fc2's inputs quantised per token (dynamic) instead of OPT-m's
# static twin-uniform quantiser. One quantize + eval per row; log in out/ptq_s6/run.log.
# bash out/ptq_s6/run.sh [all] [mp]
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
ALL="--act-observer mse --sq-b --prob-quantizer agq --big --dynamic-for mlp.fc2"
row() {  # name, flags...
  local name=$1; shift
  local t0=$(date +%s.%N)
  build/vitshrink quantize $M "$@" --threads 2 --calib $D --split $D/calib.txt --out out/ptq_s6/$name > out/ptq_s6/$name.quant.log 2>&1 || { echo "$name FAILED: $(tail -1 out/ptq_s6/$name.quant.log)"; return; }
  local t1=$(date +%s.%N)
  build/vitshrink eval out/ptq_s6/$name --data $D --split $D/eval.txt --report out/ptq_s6/$name.eval.json > /dev/null
  echo "$name  $(python3 -c "import json; j=json.load(open('out/ptq_s6/$name.eval.json')); print('top1', j['top1'], 'top5', j['top5'])")  bytes $(stat -c %s out/ptq_s6/$name/model.safetensors)  quantise_s $(python3 -c "print(round($t1-$t0,1))")  flags: $*"
}
for r in "${@:-all}"; do
  case $r in
    all)
      row w6a6_all_pt --wbits 6 --abits 6 $ALL
      row w6a6_all_pt_optm --wbits 6 --abits 6 $ALL --opt-m
      row w5a5_all_pt --wbits 5 --abits 5 $ALL
      row w5_mixed_all_pt --wbits 5 --abits 5 --avg-bits 5 $ALL
      row w4a4_all_pt --wbits 4 --abits 4 $ALL
      row w6a6_baseline_pt --wbits 6 --abits 6 --act-observer mse --dynamic-for mlp.fc2
      ;;
    mp)  # mixed-precision variants, run after the rows above: more KL images, or candidates 4-6
      row w5_mixed_all_pt_mp64 --wbits 5 --abits 5 --avg-bits 5 --mp-images 64 $ALL
      row w5_mixed_all_pt_456 --wbits 5 --abits 5 --avg-bits 5 --mp-bits 4 5 6 $ALL
      ;;
  esac
done
