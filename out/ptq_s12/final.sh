#!/usr/bin/env bash
# Twelfth session, final check: the headline numbers re-run with the submitted binary; models
# compared byte for byte with the ablation's. `bash out/ptq_s12/final.sh`
set -u
cd "$(dirname "$0")/../.."
OUT=out/ptq_s12/final
mkdir -p $OUT
source out/ptq_row.sh
DYN="--dynamic-for attn.qkv attn.proj mlp.fc1 mlp.fc2"
row w5_best_norot_mixed --wbits 5 --abits 5 --act-observer mse --sq-b --prob-quantizer agq --big $DYN --gptq --avg-bits 5 --mp-separate; fid w5_best_norot_mixed
cmp $OUT/w5_best_norot_mixed/model.safetensors out/ptq_s12/methods/W5A5__best_without___rotate___mixed_precision____mp_separate_/model.safetensors && echo "identical to the ablation's"
row w5_all_mixed --wbits 5 --abits 5 --act-observer percentile --sq-b --opt-m --prob-quantizer agq --big --avg-bits 5; fid w5_all_mixed
cmp $OUT/w5_all_mixed/model.safetensors out/ptq_s12/methods/W5A5__all___mixed_precision/model.safetensors && echo "identical to the ablation's"
VS=$VS bash out/lowrank_s12/run.sh 2>&1 | head -1
