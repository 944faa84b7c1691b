#!/usr/bin/env bash
# Twelfth session: the default 80 % low-rank model (out/lowrank_s10/0.8_default) quantised to W8A8
# with the per-token recipe (every Linear input per token, GPTQ, rotation); `bash out/lowrank_s12/run.sh`
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
VS=${VS:-build/vitshrink}
IN=out/lowrank_s10/0.8_default
for v in "tok:--dynamic-for down up attn.qkv attn.proj mlp.fc1 mlp.fc2" "tok_gptq:--dynamic-for down up attn.qkv attn.proj mlp.fc1 mlp.fc2 --gptq" "tok_gptq_rot:--dynamic-for down up attn.qkv attn.proj mlp.fc1 mlp.fc2 --gptq --rotate"; do
  name=${v%%:*}; flags=${v#*:}
  OUT=out/lowrank_s12/0.8_w8a8_$name
  t0=$(date +%s.%N)
  $VS quantize $IN --act-observer mse --prob-quantizer agq $flags --calib $D --split $D/calib.txt --out $OUT > $OUT.quant.log 2>&1 || { echo "$name FAILED: $(tail -1 $OUT.quant.log)"; continue; }
  t1=$(date +%s.%N)
  $VS eval $OUT --data $D --split $D/eval.txt --reference $M --report $OUT.pi.json > $OUT.eval.log
  echo "$name: $(head -2 $OUT.eval.log | tr '\n' ' ') bytes $(stat -c %s $OUT/model.safetensors) quantise_s $(python3 -c "print(round($t1-$t0,1))") flags: $flags"
done
