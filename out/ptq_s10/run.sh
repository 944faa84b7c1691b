#!/usr/bin/env bash
# Tenth session: knapsack mixed precision (--mp-search knapsack) for issue 4's 5-bit target.
# Each row: quantise, eval on eval.txt, and KL / agreement vs the FP32 model on eval.txt.
set -u
cd "$(dirname "$0")/../.."
OUT=out/ptq_s10
source out/ptq_row.sh
DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
R="--wbits 5 --abits 5 $ALL $DYN --gptq --rotate"
K="$R --avg-bits 5 --mp-search knapsack"
for r in "$@"; do
  case $r in
    u5) row w5_uniform $R; fid w5_uniform ;;
    k16) row w5_knap16 $K; fid w5_knap16 ;;
    k32) row w5_knap32 $K --mp-images 32; fid w5_knap32 ;;
    k64) row w5_knap64 $K --mp-images 64; fid w5_knap64 ;;
    k64w) row w5_knap64w $K --mp-images 64 --mp-weights-only; fid w5_knap64w ;;
    k64s) row w5_knap64s $K --mp-images 64 --mp-separate; fid w5_knap64s ;;
  esac
done
# (the knapsack's own choice, without the held-out check, to see it on the eval split)
for r in "$@"; do
  case $r in
    k64n) row w5_knap64_nocheck $K --mp-images 64 --mp-check-images 0; fid w5_knap64_nocheck ;;
    k64wn) row w5_knap64w_nocheck $K --mp-images 64 --mp-weights-only --mp-check-images 0; fid w5_knap64w_nocheck ;;
  esac
done
for r in "$@"; do
  case $r in
    k128) row w5_knap128 $K --mp-images 128; fid w5_knap128 ;;
    k128w) row w5_knap128w $K --mp-images 128 --mp-weights-only; fid w5_knap128w ;;
  esac
done
