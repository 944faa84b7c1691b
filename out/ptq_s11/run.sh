#!/usr/bin/env bash
# Eleventh session: issue 4 experiments (W5A5 KL decomposition, knapsack rows, per-token recipes); `bash out/ptq_s11/run.sh ROW...`
set -u
cd "$(dirname "$0")/../.."
OUT=out/ptq_s11
source out/ptq_row.sh
DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
R="$ALL $DYN --gptq --rotate"
for r in "$@"; do
  case $r in
    a8) row w5_attn8 --wbits 5 --abits 5 --attn-bits 8 --prob-bits 8 $R; fid w5_attn8 ;;
    p8) row w5_prob8 --wbits 5 --abits 5 --prob-bits 8 $R; fid w5_prob8 ;;
    q8) row w5_qkv8 --wbits 5 --abits 5 --attn-bits 8 $R; fid w5_qkv8 ;;
    w8) row w8a5 --wbits 8 --abits 5 $R; fid w8a5 ;;
    i8) row w5i8 --wbits 5 --abits 8 --attn-bits 5 --prob-bits 5 $R; fid w5i8 ;;
    ks64) row w5_ks64 --wbits 5 --abits 5 $R --avg-bits 5 --mp-search knapsack --mp-separate --mp-images 64 --mp-check-images 0; fid w5_ks64 ;;
    ks128) row w5_ks128 --wbits 5 --abits 5 $R --avg-bits 5 --mp-search knapsack --mp-separate --mp-images 128; fid w5_ks128 ;;
    u5) row w5_uniform --wbits 5 --abits 5 $R; fid w5_uniform ;;
    e5) row w5_edge5 --wbits 5 --abits 5 --edge-bits 5 $R; fid w5_edge5 ;;
  esac
done
# (the held-out check's paired statistic, printed and in config.json)
for r in "$@"; do
  case $r in
    g16) row w5_greedy16 --wbits 5 --abits 5 $R --avg-bits 5; fid w5_greedy16; grep "mixed precision check" $OUT/w5_greedy16.quant.log ;;
  esac
done
# (mixed precision where layers differ: the static per-tensor "all" recipe of the ablation)
AS="--wbits 5 --abits 5 --act-observer percentile --sq-b --opt-m --prob-quantizer agq --big --avg-bits 5"
for r in "$@"; do
  case $r in
    ak16) row w5_all_knap16 $AS --mp-search knapsack; fid w5_all_knap16 ;;
    ak64) row w5_all_knap64 $AS --mp-search knapsack --mp-images 64; fid w5_all_knap64 ;;
    ag64) row w5_all_greedy64 $AS --mp-images 64; fid w5_all_greedy64 ;;
  esac
done
# (knapsack where layers differ, more recipes: fc2 inputs per token ($ALL), and + GPTQ)
for r in "$@"; do
  case $r in
    fu) row w5_fc2tok_uniform --wbits 5 --abits 5 $ALL; fid w5_fc2tok_uniform ;;
    fk16) row w5_fc2tok_knap16 --wbits 5 --abits 5 $ALL --avg-bits 5 --mp-search knapsack; fid w5_fc2tok_knap16 ;;
    fgu) row w5_fc2tok_gptq_uniform --wbits 5 --abits 5 $ALL --gptq; fid w5_fc2tok_gptq_uniform ;;
    fgk16) row w5_fc2tok_gptq_knap16 --wbits 5 --abits 5 $ALL --gptq --avg-bits 5 --mp-search knapsack; fid w5_fc2tok_gptq_knap16 ;;
    agu) row w5_all_gptq_uniform --wbits 5 --abits 5 --act-observer percentile --sq-b --opt-m --prob-quantizer agq --big --gptq; fid w5_all_gptq_uniform ;;
    agk16) row w5_all_gptq_knap16 $AS --gptq --mp-search knapsack; fid w5_all_gptq_knap16 ;;
  esac
done
# (every input per token without rotation: outlier channels make the layers differ)
T="--wbits 5 --abits 5 $ALL $DYN --gptq"
for r in "$@"; do
  case $r in
    tu) row w5_tok_gptq_uniform $T; fid w5_tok_gptq_uniform ;;
    tk16) row w5_tok_gptq_knap16 $T --avg-bits 5 --mp-search knapsack; fid w5_tok_gptq_knap16 ;;
    tk64) row w5_tok_gptq_knap64 $T --avg-bits 5 --mp-search knapsack --mp-images 64; fid w5_tok_gptq_knap64 ;;
    tks16) row w5_tok_gptq_knaps16 $T --avg-bits 5 --mp-search knapsack --mp-separate; fid w5_tok_gptq_knaps16 ;;
    tgs64) row w5_tok_gptq_greedys64 $T --avg-bits 5 --mp-separate --mp-images 64; fid w5_tok_gptq_greedys64 ;;
    tks96) row w5_tok_gptq_knaps96 $T --avg-bits 5 --mp-search knapsack --mp-separate --mp-images 96; fid w5_tok_gptq_knaps96 ;;
    tks64) row w5_tok_gptq_knaps64 $T --avg-bits 5 --mp-search knapsack --mp-separate --mp-images 64; fid w5_tok_gptq_knaps64 ;;
  esac
done
