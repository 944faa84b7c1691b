#!/usr/bin/env bash
# Paired (image by image) comparisons on the eval split against uniform W5A5 (out/ptq_s10/w5_uniform):
# `vitshrink eval --reference` writes per-image KL and top-1, bench/paired_compare.py compares.
set -u
cd "$(dirname "$0")/../.."
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
VS=${VS:-build/vitshrink}
pi() {  # model folder, name
  [ -f out/ptq_s11/$2.pi.json ] || $VS eval $1 --data $D --split $D/eval.txt --reference $M --report out/ptq_s11/$2.pi.json > /dev/null
}
pi out/ptq_s10/w5_uniform w5_uniform
for spec in "$@"; do
  folder=${spec%%:*}; name=${spec##*:}
  pi $folder $name
  echo "== uniform W5A5 (A) vs $name (B: $folder)"
  python3 bench/paired_compare.py out/ptq_s11/w5_uniform.pi.json out/ptq_s11/$name.pi.json --json out/ptq_s11/$name.paired.json
done
