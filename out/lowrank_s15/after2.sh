#!/usr/bin/env bash
# Round 9, prioritised after time ran short: the 80 % ablation row, 90 % full / mixed / comp, W8A8 of the
# 80 % model, one latency round. (70 / 60 % ablation cells and full cells: not run this session.)
cd "$(dirname "$0")/../.."
export VS=out/bin/vs_s15c
bash out/lowrank_s15/run.sh svd_0.8 aware_0.8 mixed_0.8 comp_0.8 full_0.9 mixed_0.9 comp_0.9 >> out/lowrank_s15/run.log 2>&1
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
O=out/lowrank_s15
$VS quantize $O/spread --act-observer mse --prob-quantizer agq --dynamic-for down up attn.qkv attn.proj mlp.fc1 mlp.fc2 --calib $D --split $D/calib.txt --out $O/w8a8 > $O/w8a8.log 2>&1
$VS eval $O/w8a8 --data $D --split $D/eval.txt --reference $M > $O/w8a8.eval.log
echo "w8a8 (of spread): $(head -2 $O/w8a8.eval.log | tr '\n' ' ') | $(grep -h '^quantized' $O/w8a8.log | tail -1)" >> $O/run.log
while pgrep -f "scripts/test.sh|scripts/setup.sh" > /dev/null; do sleep 5; done  # no timing next to other work
bash out/lowrank_s15/latency.sh > $O/latency.log 2>&1
echo "after2.sh done" >> $O/run.log
