# Shared by the PTQ experiment scripts (out/ptq_s6/run.sh, out/ptq_s7/diag.sh), sourced from the
# repository root: `row NAME FLAGS...` quantises ViT-Ti with FLAGS (calibrated on calib.txt),
# evaluates it on eval.txt and prints one line (top-1, top-5, file bytes, seconds to quantise).
# OUT: the folder the model, its logs and its eval report go to.
VS=${VS:-build/vitshrink}  # the binary (a copy lets experiments run while build/ is rebuilt)
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
ALL="--act-observer mse --sq-b --prob-quantizer agq --big --dynamic-for mlp.fc2"
row() {  # name, flags...
  local name=$1; shift
  local t0=$(date +%s.%N)
  $VS quantize $M "$@" --threads 2 --calib $D --split $D/calib.txt --out $OUT/$name > $OUT/$name.quant.log 2>&1 || { echo "$name FAILED: $(tail -1 $OUT/$name.quant.log)"; return; }
  local t1=$(date +%s.%N)
  $VS eval $OUT/$name --data $D --split $D/eval.txt --report $OUT/$name.eval.json > /dev/null
  echo "$name  $(python3 -c "import json; j=json.load(open('$OUT/$name.eval.json')); print('top1', round(j['top1'],2), 'top5', round(j['top5'],2))")  bytes $(stat -c %s $OUT/$name/model.safetensors)  quantise_s $(python3 -c "print(round($t1-$t0,1))")  flags: $*"
}
# `fid NAME`: that model's KL / top-1 agreement vs the FP32 model on eval.txt (eval --reference;
# the report, with every image's result, is OUT/NAME.fid.json).
fid() {
  $VS eval $OUT/$1 --data $D --split $D/eval.txt --reference $M --report $OUT/$1.fid.json > /dev/null
  echo "$1 fidelity: $(python3 -c "import json; j=json.load(open('$OUT/$1.fid.json')); r=j['reference']; print('top1', round(j['top1'],2), 'kl', round(r['kl'],4), 'agreement', round(r['agreement'],2))")"
}
