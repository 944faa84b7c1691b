#!/usr/bin/python3
"""The post-training quantisation table of the README: quantise ViT-Ti with each setting,
evaluate it on the eval split with integer execution, and print top-1 / top-5 / file size /
time to quantise (a benchmark program, not a test; it takes a while: about a minute per row on
a quiet 2-core machine).

  bench/ptq_table.py [--rows all|quick] [--json out/ptq_table.json] [--simulate-too]

Every row is a `vitshrink quantize` command line followed by `vitshrink eval`; the commands are
printed and stored in the JSON so that any number can be reproduced by hand.
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared")
MODEL = os.path.join(SHARED, "models", "vit_tiny_patch16_224.augreg_in21k_ft_in1k")
DATA = os.path.join(SHARED, "data", "imagenet-sample")

# name, quantize flags (None: the FP32 model itself)
W8 = ["--wbits", "8", "--abits", "8"]
W6 = ["--wbits", "6", "--abits", "6"]
W4 = ["--wbits", "4", "--abits", "4"]
FC2_TOKEN = ["--dynamic-for", "mlp.fc2"]
# name, quantize flags (None: the FP32 model itself), also evaluate with --simulate
ROWS = [
    ("FP32", None, False),
    ("dynamic int8 (per-token activations; attention float)", W8 + ["--dynamic"], False),
    ("W8A8, act mse, fc2 inputs per token (main job)", W8 + ["--act-observer", "mse"] + FC2_TOKEN, True),
    ("W8A8, act minmax, fc2 inputs per token", W8 + ["--act-observer", "minmax"] + FC2_TOKEN, False),
    ("W8A8, act mse, every input per tensor", W8 + ["--act-observer", "mse"], False),
    ("W8A8, act minmax, every input per tensor", W8 + ["--act-observer", "minmax"], False),
    ("W6A6, act minmax", W6 + ["--act-observer", "minmax"], False),
    ("W6A6, act percentile", W6 + ["--act-observer", "percentile"], False),
    ("W6A6, act mse", W6 + ["--act-observer", "mse"], False),
    ("W6A6, act percentile, AGQ probabilities", W6 + ["--act-observer", "percentile", "--prob-quantizer", "agq"], False),
    ("W4A4, act minmax", W4 + ["--act-observer", "minmax"], False),
    ("W4A4, act percentile", W4 + ["--act-observer", "percentile"], False),
    ("W4A4, act mse", W4 + ["--act-observer", "mse"], False),
    ("W4A4, act percentile, AGQ probabilities", W4 + ["--act-observer", "percentile", "--prob-quantizer", "agq"], False),
]
# Issue 4's ablation: baseline (per-channel MSE weights, percentile activations, uniform
# probabilities), each method alone, the RepQ-ViT baseline, all of MPTQ-ViT's and PTQ4SAM's
# methods together (without and with greedy mixed precision at the same average bits: its
# candidates 4/5/6/8 start above the uniform width, so it only applies at 6 and 5 bits).
BASE = ["--act-observer", "percentile"]
ALL = ["--sq-b", "--opt-m", "--prob-quantizer", "agq", "--big"]
def methods(b):
    mp = ["--avg-bits", str(b)]
    rows = [("baseline", []), ("+SQ-b", ["--sq-b"]), ("+OPT-m", ["--opt-m"]), ("+AGQ", ["--prob-quantizer", "agq"]),
            ("+BIG", ["--big"])]
    rows += [("+mixed precision", mp)] if b in (5, 6) else []
    rows += [("RepQ baseline (RepQ + log-sqrt2 probabilities)", ["--repq", "--prob-quantizer", "logsqrt2"]),
             ("all (SQ-b, OPT-m, AGQ, BIG)", ALL)]
    rows += [("all + mixed precision", ALL + mp)] if b in (5, 6) else []
    return [(m, BASE + f) for m, f in rows] + [
        # vitshrink's strongest recipe (later sessions): every Linear input per token and rotated,
        # GPTQ weights (OPT-m has no static post-GELU input left to act on, so it is not named).
        ("best (SQ-b, AGQ, BIG, every input per token, --rotate, --gptq)", BEST)] + (
        [("best + mixed precision", BEST + mp)] if b in (5, 6) else []) + (
        # Without the rotation the layers differ (outlier channels), which is where mixed precision
        # pays; weight and input bits as separate items (twelfth session).
        [("best without --rotate", BEST_NOROT),
         ("best without --rotate + mixed precision (--mp-separate)", BEST_NOROT + mp + ["--mp-separate"])]
        if b in (5, 6) else [])
BEST = ["--act-observer", "mse", "--sq-b", "--prob-quantizer", "agq", "--big",
        "--dynamic-for", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "--gptq", "--rotate"]
BEST_NOROT = BEST[:-1]
ROWS_METHODS = [(f"W{b}A{b}, {m}", ["--wbits", str(b), "--abits", str(b)] + f, b == 6 and m.startswith("all ("))
                for b in (8, 6, 5, 4) for m, f in methods(b)]
QUICK = {"FP32", "W8A8, act mse, fc2 inputs per token (main job)"}


def run(cmd):
    print("  $ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vitshrink", default=os.path.join(REPO, "build", "vitshrink"))
    ap.add_argument("--rows", choices=["all", "quick", "methods"], default="all",
                    help="all: the PTQ table; quick: FP32 and the main job's W8A8; methods: issue 4's ablation")
    ap.add_argument("--json", default=os.path.join(REPO, "out", "ptq_table.json"))
    ap.add_argument("--workdir", default=os.path.join(REPO, "out", "ptq_table"))
    ap.add_argument("--threads", default="2")
    ap.add_argument("--only", nargs="*", default=[], help="run only the rows whose name contains one of these")
    ap.add_argument("--append", action="store_true", help="keep the rows already in --json (re-run rows replace them)")
    ap.add_argument("--simulate-too", action="store_true", help="also evaluate every model with --simulate "
                    "(the main-job row always is)")
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(MODEL, "model.safetensors")):
        sys.exit(f"{MODEL}: not found (../shared)")
    os.makedirs(args.workdir, exist_ok=True)
    fp32_bytes = os.path.getsize(os.path.join(MODEL, "model.safetensors"))
    results = []
    if args.append and os.path.isfile(args.json):
        with open(args.json) as f:
            results = json.load(f)["rows"]
    for name, flags, simulate in (ROWS_METHODS if args.rows == "methods" else ROWS):
        if args.rows == "quick" and name not in QUICK:
            continue
        if args.only and not any(o in name for o in args.only):
            continue
        results = [r for r in results if r["name"] != name]
        print(f"== {name}", flush=True)
        path, qcmd, qsec, qout = MODEL, None, None, ""
        if flags is not None:
            path = os.path.join(args.workdir, "".join(c if c.isalnum() else "_" for c in name))
            qcmd = [args.vitshrink, "quantize", MODEL, *flags, "--threads", args.threads, "--out", path]
            if "--dynamic" not in flags:
                qcmd += ["--calib", DATA, "--split", os.path.join(DATA, "calib.txt")]
            t0 = time.time()
            qout = run(qcmd)
            qsec = time.time() - t0
        row = {"name": name, "quantize": qcmd, "quantize_seconds": qsec, "load_avg": os.getloadavg(),
               "quantize_output": qout.strip().splitlines()[-40:],
               "bytes": os.path.getsize(os.path.join(path, "model.safetensors"))}
        for mode in (["integer", "simulated"] if (args.simulate_too or simulate) and flags else ["integer"]):
            rep = path + f"_{mode}.json" if flags else os.path.join(args.workdir, f"fp32_{mode}.json")
            ecmd = [args.vitshrink, "eval", path, "--data", DATA, "--split", os.path.join(DATA, "eval.txt"),
                    "--threads", args.threads, "--report", rep] + (["--simulate"] if mode == "simulated" else [])
            run(ecmd)
            with open(rep) as f:
                r = json.load(f)
            row[mode] = {"top1": r["top1"], "top5": r["top5"], "eval": ecmd, "quantized": r.get("quantized")}
            print(f"   {mode}: top-1 {r['top1']:.2f}  top-5 {r['top5']:.2f}", flush=True)
        results.append(row)
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json + ".tmp", "w") as f:
            json.dump({"load_avg": os.getloadavg(), "rows": results}, f, indent=2)
        os.replace(args.json + ".tmp", args.json)

    print("\n| setting | top-1 | top-5 | simulated top-1 | file bytes (% of FP32) | quantise s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        sim = f" {r['simulated']['top1']:.2f} |" if "simulated" in r else " |"
        qs = f"{r['quantize_seconds']:.0f}" if r["quantize_seconds"] else ""
        print(f"| {r['name']} | {r['integer']['top1']:.2f} | {r['integer']['top5']:.2f} |{sim} "
              f"{r['bytes']:,} ({100 * r['bytes'] / fp32_bytes:.1f} %) | {qs} |")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
