#!/usr/bin/env bash
# Twelfth session: each mixed-precision row of the ablation (greedy-isolated, 64 images) against its
# uniform twin, image by image (eval --reference, bench/paired_compare.py). `bash out/ptq_s12/paired.sh`
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
VS=${VS:-build/vitshrink}
pi() {  # model dir -> its per-image report beside it (made once)
  [ -f $1.pi.json ] || $VS eval $1 --data $D --split $D/eval.txt --reference $M --report $1.pi.json > /dev/null
}
S11=out/ptq_s11/methods; S12=out/ptq_s12/methods
while read -r U X; do
  pi $U; pi $X
  echo "== uniform $(basename $U)  vs  mixed $(basename $X)"
  python3 bench/paired_compare.py $U.pi.json $X.pi.json | tail -2
done <<LIST
$S11/W6A6__baseline $S12/W6A6___mixed_precision
$S11/W6A6__all__SQ_b__OPT_m__AGQ__BIG_ $S12/W6A6__all___mixed_precision
$S12/W6A6__best_without___rotate $S12/W6A6__best_without___rotate___mixed_precision____mp_separate_
$S11/W5A5__baseline $S12/W5A5___mixed_precision
$S11/W5A5__all__SQ_b__OPT_m__AGQ__BIG_ $S12/W5A5__all___mixed_precision
$S12/W5A5__best_without___rotate $S12/W5A5__best_without___rotate___mixed_precision____mp_separate_
$S11/W5A5__best__SQ_b__AGQ__BIG__every_input_per_token____rotate____gptq_ $S12/W5A5__best_without___rotate___mixed_precision____mp_separate_
$S11/W5A5__all___mixed_precision $S12/W5A5__all___mixed_precision
LIST
