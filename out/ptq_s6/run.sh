#!/usr/bin/env bash
# Sixth session: the PTQ methods with fc2's inputs quantised per token (dynamic) instead of OPT-m's
# static twin-uniform quantiser. One quantize + eval per row; log in out/ptq_s6/run.log.
# bash out/ptq_s6/run.sh [all] [mp]
set -u
cd "$(dirname "$0")/../.."
OUT=out/ptq_s6
source out/ptq_row.sh
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
