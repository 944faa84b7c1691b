#!/usr/bin/env bash
# Eighth session: W4A4 / 5-bit experiments (one quantize + eval per row; log in out/ptq_s8/run.log).
set -u
cd "$(dirname "$0")/../.."
OUT=out/ptq_s8
source out/ptq_row.sh
DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
for r in "$@"; do
  case $r in
    recon4)
      row w4a4_dynall_recon --wbits 4 --abits 4 $ALL $DYN --reconstruct
      row w4a4_dynall_gptq_recon --wbits 4 --abits 4 $ALL $DYN --gptq --reconstruct
      ;;
    mps)
      row w5_mixeds_dynall_gptq --wbits 5 --abits 5 --avg-bits 5 --mp-separate $ALL --gptq $DYN
      ;;
    mpw)  # the seventh session's weights-only row again, this binary
      row w5_mixedw_dynall_gptq --wbits 5 --abits 5 --avg-bits 5 --mp-weights-only $ALL --gptq $DYN
      ;;
    u5)
      row w5a5_dynall_gptq --wbits 5 --abits 5 $ALL --gptq $DYN
      ;;
    rot4)
      row w4a4_dynall_gptq_rot --wbits 4 --abits 4 $ALL $DYN --gptq --rotate
      row w4a4_dynall_rot --wbits 4 --abits 4 $ALL $DYN --rotate
      ;;
    rot56)
      row w5a5_dynall_gptq_rot --wbits 5 --abits 5 $ALL $DYN --gptq --rotate
      row w5_mixedw_dynall_gptq_rot --wbits 5 --abits 5 --avg-bits 5 --mp-weights-only $ALL $DYN --gptq --rotate
      row w5_mixed_dynall_gptq_rot --wbits 5 --abits 5 --avg-bits 5 $ALL $DYN --gptq --rotate
      row w6a6_dynall_gptq_rot --wbits 6 --abits 6 $ALL $DYN --gptq --rotate
      ;;
  esac
done
