#!/usr/bin/env bash
# Ninth session: low rank + block refinement (--refine-steps) on ViT-Ti; one lowrank + eval per row.
set -u
cd "$(dirname "$0")/../.."
OUT=out/lowrank_s9
source out/lowrank_row.sh
for r in "$@"; do
  case $r in
    lr3) row 0.8_refine200_lr3e-4 0.8 --refine-steps 200 --refine-lr 3e-4 ;;
    s500) row 0.8_refine500 0.8 --refine-steps 500 ;;
    base) row 0.8_default 0.8 ;;
    r90) row 0.9_refine200 0.9 --refine-steps 200 ;;
    r70) row 0.7_refine200 0.7 --refine-steps 200 ;;
    r60) row 0.6_refine200 0.6 --refine-steps 200 ;;
    lr1e3) row 0.8_refine200_lr1e-3 0.8 --refine-steps 200 --refine-lr 1e-3 ;;
    lr3_500) row 0.8_refine500_lr3e-4 0.8 --refine-steps 500 --refine-lr 3e-4 ;;
    uni) row 0.8_uniform_refine200 0.8 --allocation uniform --refine-steps 200 ;;
  esac
done
# (after --refine-to-original)
for r in "$@"; do
  case $r in
    orig) row 0.8_refine200_to_original 0.8 --refine-to-original ;;
  esac
done
# (after the review: the refinement's loss is train::mse_loss, whose gradient is rounded from double)
for r in "$@"; do
  case $r in
    d80) row 0.8_default_r 0.8 ;;
    d90) row 0.9_default_r 0.9 ;;
    d70) row 0.7_default_r 0.7 ;;
    d60) row 0.6_default_r 0.6 ;;
    orig_r) row 0.8_to_original_r 0.8 --refine-to-original ;;
  esac
done
