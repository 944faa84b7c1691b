#!/usr/bin/env bash
# Twelfth session: issue 4, MPTQ-ViT's greedy on isolated sensitivities (--mp-search greedy-isolated)
# against the knapsack and the stepwise greedy; `bash out/ptq_s12/run.sh ROW...`
set -u
cd "$(dirname "$0")/../.."
OUT=out/ptq_s12
source out/ptq_row.sh
DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
T="--wbits 5 --abits 5 $ALL $DYN --gptq"
R="--wbits 5 --abits 5 $ALL $DYN --gptq --rotate"
AS="--wbits 5 --abits 5 --act-observer percentile --sq-b --opt-m --prob-quantizer agq --big --avg-bits 5"
for r in "$@"; do
  case $r in
    tks16) row w5_tok_gptq_knaps16 $T --avg-bits 5 --mp-search knapsack --mp-separate; fid w5_tok_gptq_knaps16
           cmp $OUT/w5_tok_gptq_knaps16/model.safetensors out/ptq_s11/w5_tok_gptq_knaps16/model.safetensors && echo "identical to the eleventh session's" ;;
    tgis64) row w5_tok_gptq_gis64 $T --avg-bits 5 --mp-search greedy-isolated --mp-separate --mp-images 64; fid w5_tok_gptq_gis64 ;;
    tgis96) row w5_tok_gptq_gis96 $T --avg-bits 5 --mp-search greedy-isolated --mp-separate --mp-images 96; fid w5_tok_gptq_gis96 ;;
    tgis16) row w5_tok_gptq_gis16 $T --avg-bits 5 --mp-search greedy-isolated --mp-separate; fid w5_tok_gptq_gis16 ;;
    agi16) row w5_all_gi16 $AS --mp-search greedy-isolated; fid w5_all_gi16 ;;
    agi64) row w5_all_gi64 $AS --mp-search greedy-isolated --mp-images 64; fid w5_all_gi64 ;;
    rgis64) row w5_rot_gis64 $R --avg-bits 5 --mp-search greedy-isolated --mp-separate --mp-images 64; fid w5_rot_gis64 ;;
  esac
done
# (after the defaults changed to greedy-isolated, 64 search images: the plain `--avg-bits 5`, W = A)
for r in "$@"; do
  case $r in
    tdef) row w5_tok_gptq_default_mixed $T --avg-bits 5; fid w5_tok_gptq_default_mixed ;;
  esac
done
for r in "$@"; do
  case $r in
    tdef0) row w5_tok_gptq_default_mixed_nocheck $T --avg-bits 5 --mp-check-images 0; fid w5_tok_gptq_default_mixed_nocheck ;;
  esac
done
for r in "$@"; do
  case $r in
    agis64) row w5_all_gis64 $AS --mp-separate; fid w5_all_gis64 ;;
  esac
done
