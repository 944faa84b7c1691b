#!/usr/bin/env bash
# Round 9 continued (after after2.sh): 70 / 60 % full and ablation cells, then costlier settings at 80 %.
cd "$(dirname "$0")/../.."
while pgrep -f "after2.sh" > /dev/null; do sleep 10; done
export VS=out/bin/vs_s15c
bash out/lowrank_s15/run.sh full_0.7 full_0.6 svd_0.7 aware_0.7 mixed_0.7 comp_0.7 svd_0.6 aware_0.6 mixed_0.6 comp_0.6 >> out/lowrank_s15/run.log 2>&1
EXTRA="--refine-steps 600 --refine-loss relative --sensitivity-images 32" bash out/lowrank_s15/run.sh best >> out/lowrank_s15/run.log 2>&1
echo "after3.sh done" >> out/lowrank_s15/run.log
