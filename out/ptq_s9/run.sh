#!/usr/bin/env bash
# Ninth session: 5-bit mixed precision with rotation (issue 4's mixed target).
set -u
cd "$(dirname "$0")/../.."
OUT=out/ptq_s9
source out/ptq_row.sh
DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
R="--wbits 5 --abits 5 --avg-bits 5 $ALL $DYN --gptq --rotate"
for r in "$@"; do
  case $r in
    w32) row w5_mixedw_rot_img32 $R --mp-weights-only --mp-images 32 ;;
    w64) row w5_mixedw_rot_img64 $R --mp-weights-only --mp-images 64 ;;
    w456) row w5_mixedw_rot_456 $R --mp-weights-only --mp-bits 4 5 6 ;;
    t64) row w5_mixed_rot_img64 $R --mp-images 64 ;;
    t456) row w5_mixed_rot_456_img32 $R --mp-bits 4 5 6 --mp-images 32 ;;
  esac
done
# (rows after the block-input cache of the mixed-precision search)
for r in "$@"; do
  case $r in
    c456) row w5_mixedw_rot_456_cache $R --mp-weights-only --mp-bits 4 5 6 ;;
    ct64) row w5_mixed_rot_img64_cache $R --mp-images 64 ;;
    t32) row w5_mixed_rot_img32 $R --mp-images 32 ;;
    t48) row w5_mixed_rot_img48 $R --mp-images 48 ;;
    t128) row w5_mixed_rot_img128 $R --mp-images 128 ;;
    t64_456) row w5_mixed_rot_456_img64 $R --mp-images 64 --mp-bits 4 5 6 ;;
  esac
done
# (rows after the held-out check against uniform bits, --mp-check-images 64 by default)
for r in "$@"; do
  case $r in
    k16) row w5_mixed_rot_check $R ;;
    k32) row w5_mixed_rot_img32_check $R --mp-images 32 ;;
    kw) row w5_mixedw_rot_check $R --mp-weights-only ;;
  esac
done
