#!/usr/bin/env bash
# Round 9's remaining cells once the ablation queue is done: full defaults at 90 / 70 / 60 %, W8A8 of the
# 80 % model, latency.
cd "$(dirname "$0")/../.."
while pgrep -f "run.sh spreadrel" > /dev/null; do sleep 10; done
export VS=out/bin/vs_s15c
bash out/lowrank_s15/run.sh full_0.9 full_0.7 full_0.6 >> out/lowrank_s15/run.log 2>&1
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
O=out/lowrank_s15
$VS quantize $O/spread --act-observer mse --prob-quantizer agq --dynamic-for down up attn.qkv attn.proj mlp.fc1 mlp.fc2 --calib $D --split $D/calib.txt --out $O/w8a8 > $O/w8a8.log 2>&1
$VS eval $O/w8a8 --data $D --split $D/eval.txt --reference $M > $O/w8a8.eval.log
echo "w8a8 (of spread): $(head -2 $O/w8a8.eval.log | tr '\n' ' ') | $(grep -h '^quantized' $O/w8a8.log | tail -1)" >> $O/run.log
bash out/lowrank_s15/latency.sh > $O/latency.log 2>&1
echo "after.sh done" >> $O/run.log
