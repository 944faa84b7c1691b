#!/usr/bin/env bash
# Seventh session: where W4A4 loses its accuracy (one quantize + eval per row; log in out/ptq_s7/diag.log).
set -u
cd "$(dirname "$0")/../.."
OUT=out/ptq_s7
source out/ptq_row.sh
for r in "$@"; do
  case $r in
    split)
      row w4a8 --wbits 4 --abits 8 $ALL
      row w8a4 --wbits 8 --abits 4 $ALL
      row w4a4_attn8 --wbits 4 --abits 4 --attn-bits 8 --prob-bits 8 $ALL
      row w4a4_dynall --wbits 4 --abits 4 $ALL --dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2
      ;;
    split5)
      row w5a8 --wbits 5 --abits 8 $ALL
      row w8a5 --wbits 8 --abits 5 $ALL
      ;;
    gptq)
      row w4a8_gptq --wbits 4 --abits 8 $ALL --gptq
      row w4a4_gptq --wbits 4 --abits 4 $ALL --gptq
      row w5a5_gptq --wbits 5 --abits 5 $ALL --gptq
      ;;
    gptqx)
      row w4a8_gptq_norm --wbits 4 --abits 8 $ALL --gptq
      row w4a8_gptq_d1 --wbits 4 --abits 8 $ALL --gptq --gptq-damping 1
      ;;
    gptq2)
      row w4a4_gptq2 --wbits 4 --abits 4 $ALL --gptq
      row w5a5_gptq2 --wbits 5 --abits 5 $ALL --gptq
      row w4a4_dynall_gptq2 --wbits 4 --abits 4 $ALL --gptq --dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2
      row w5_mixed_gptq2 --wbits 5 --abits 5 --avg-bits 5 $ALL --gptq
      ;;
    dyn5)
      row w5a5_dynall_gptq --wbits 5 --abits 5 $ALL --gptq --dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2
      row w5_mixed_dynall_gptq --wbits 5 --abits 5 --avg-bits 5 $ALL --gptq --dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2
      ;;
    mp5)
      DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
      row w5_mixed456_dynall_gptq --wbits 5 --abits 5 --avg-bits 5 --mp-bits 4 5 6 $ALL --gptq $DYN
      row w5_mixed_dynall_gptq_mp32 --wbits 5 --abits 5 --avg-bits 5 --mp-images 32 $ALL --gptq $DYN
      ;;
    final)
      DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
      row w6a6_dynall_gptq --wbits 6 --abits 6 $ALL --gptq $DYN
      row w6a6_gptq --wbits 6 --abits 6 $ALL --gptq
      ;;
    rtn)
      DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
      row w6a6_dynall --wbits 6 --abits 6 $ALL $DYN
      row w5a5_dynall --wbits 5 --abits 5 $ALL $DYN
      ;;
    mpw)
      DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
      row w5_mixedw_dynall_gptq --wbits 5 --abits 5 --avg-bits 5 --mp-weights-only $ALL --gptq $DYN
      row w5_mixedw_dynall_gptq_mp32 --wbits 5 --abits 5 --avg-bits 5 --mp-weights-only --mp-images 32 $ALL --gptq $DYN
      ;;
    s7final)  # the table's rows again, with the session's final binary
      DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
      row f_w4a8 --wbits 4 --abits 8 $ALL
      row f_w4a8_gptq --wbits 4 --abits 8 $ALL --gptq
      row f_w6a6_dynall --wbits 6 --abits 6 $ALL $DYN
      row f_w6a6_dynall_gptq --wbits 6 --abits 6 $ALL --gptq $DYN
      row f_w5a5_dynall --wbits 5 --abits 5 $ALL $DYN
      row f_w5a5_dynall_gptq --wbits 5 --abits 5 $ALL --gptq $DYN
      row f_w4a4_dynall --wbits 4 --abits 4 $ALL $DYN
      row f_w4a4_dynall_gptq --wbits 4 --abits 4 $ALL --gptq $DYN
      row f_w5_mixed_dynall_gptq --wbits 5 --abits 5 --avg-bits 5 $ALL --gptq $DYN
      row f_w5_mixedw_dynall_gptq --wbits 5 --abits 5 --avg-bits 5 --mp-weights-only $ALL --gptq $DYN
      ;;
  esac
done
