#!/usr/bin/env bash
# Probe: two-stage (90 % then 80 % of the original parameters) low rank by chaining the CLI; stage 2's
# refinement targets the stage-1 model (the CLI's reference is its input), a pessimistic proxy.
set -eu
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
VS=${VS:-build/vitshrink}
O=out/lowrank_s15
$VS lowrank $M --params 0.90 --keep-dense patch_embed.proj --calib $D --split $D/calib.txt --out $O/g90 > $O/g90.log 2>&1
$VS eval $O/g90 --data $D --split $D/eval.txt --reference $M > $O/g90.eval.log
echo "g90: $(head -2 $O/g90.eval.log | tr '\n' ' ')"
P=$(python3 -c "import json;print(4573733/json.load(open('$O/g90/config.json'))['lowrank']['params']['after'])")
$VS lowrank $O/g90 --params $P --calib $D --split $D/calib.txt --out $O/g80 > $O/g80.log 2>&1
$VS eval $O/g80 --data $D --split $D/eval.txt --reference $M > $O/g80.eval.log
echo "g80 (params $P of g90): $(head -2 $O/g80.eval.log | tr '\n' ' ') | $(grep -h '^lowrank' $O/g80.log | tail -1)"
