# Shared by the low-rank experiment scripts (out/lowrank_s9/run.sh, out/lowrank_s10/run.sh), sourced
# from the repository root: `row NAME FRACTION FLAGS...` runs `vitshrink lowrank` on ViT-Ti, evaluates the
# result on eval.txt against the FP32 model and prints one line. OUT: the folder for models and logs.
M=../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k
D=../shared/data/imagenet-sample
row() {  # name, fraction, flags...
  local name=$1 frac=$2; shift 2
  local t0=$(date +%s.%N)
  build/vitshrink lowrank $M --params $frac "$@" --threads 2 --calib $D --split $D/calib.txt --out $OUT/$name > $OUT/$name.lowrank.log 2>&1 || { echo "$name FAILED: $(tail -1 $OUT/$name.lowrank.log)"; return; }
  local t1=$(date +%s.%N)
  build/vitshrink eval $OUT/$name --data $D --split $D/eval.txt --threads 2 --reference $M --report $OUT/$name.eval.json > /dev/null 2>&1
  echo "$name  $(python3 -c "import json; j=json.load(open('$OUT/$name.eval.json')); print('top1', round(j['top1'],2), 'top5', round(j['top5'],2), 'kl', round(j['reference']['kl'],4))")  params $(python3 -c "import json; print(json.load(open('$OUT/$name/config.json'))['lowrank']['params']['after'])")  seconds $(python3 -c "print(round($t1-$t0,1))")  flags: --params $frac $*"
}
