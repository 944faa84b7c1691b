#!/usr/bin/env bash
# Bit-packed 5-7-bit weight codes on disk: re-quantise ablation rows with the current binary, compare
# file bytes and top-1 with the ablation run (out/ptq_s11/methods.json, one code per byte), and
# load one model saved in the old layout.
set -u
cd "$(dirname "$0")/../.."
OUT=out/ptq_s11/packed
mkdir -p $OUT
source out/ptq_row.sh
BEST="--act-observer mse --sq-b --prob-quantizer agq --big --dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2 --gptq --rotate"
row w6_best --wbits 6 --abits 6 $BEST
row w5_best --wbits 5 --abits 5 $BEST
row w5_all_mixed --wbits 5 --abits 5 --act-observer percentile --sq-b --opt-m --prob-quantizer agq --big --avg-bits 5
row w8a8_main --wbits 8 --abits 8 --act-observer mse --dynamic-for mlp.fc2
echo "old layout (5-bit codes one per byte), read by the current binary:"
$VS eval out/ptq_s11/methods/W5A5__best__SQ_b__AGQ__BIG__every_input_per_token____rotate____gptq_ --data $D --split $D/eval.txt | tail -1
$VS info $OUT/w5_best | head -5
