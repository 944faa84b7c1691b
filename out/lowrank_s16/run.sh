#!/usr/bin/env bash
# Sixteenth session: `VS=BINARY EXTRA="flags" bash out/lowrank_s16/run.sh NAME...`. NAME is
# KIND_P (KIND: svd, aware, mixed, comp, full = the issue's ablation columns, as
# bench/lowrank_table.sh; P: the parameter fraction) optionally followed by a tag (_att ...);
# EXTRA is appended to every cell's lowrank command.
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
VS=${VS:-build/vitshrink}
for name in "$@"; do
  OUT=out/lowrank_s16/$name
  kind=${name%%_*}; rest=${name#*_}; P=${rest%%_*}
  case $kind in
    svd) extra=(--factorization svd --allocation uniform --no-compensation --refine-steps 0) ;;
    aware) extra=(--allocation uniform --no-compensation --refine-steps 0) ;;
    mixed) extra=(--no-compensation --refine-steps 0) ;;
    comp) extra=(--refine-steps 0) ;;
    full) extra=() ;;
    *) echo "$name: unknown kind"; continue ;;
  esac
  cmd=($VS lowrank $M --params $P "${extra[@]}" ${EXTRA:-} --calib $D --split $D/calib.txt --out $OUT)
  t0=$(date +%s.%N)
  "${cmd[@]}" > $OUT.log 2>&1 || { echo "$name FAILED: $(tail -1 $OUT.log)"; continue; }
  t1=$(date +%s.%N)
  $VS eval $OUT --data $D --split $D/eval.txt --reference $M > $OUT.eval.log
  echo "$name: $(head -2 $OUT.eval.log | tr '\n' ' ') | $(grep -h "^lowrank" $OUT.log | tail -1) | wall $(python3 -c "print(round($t1-$t0,1))") s | ${cmd[*]}"
done
