#!/usr/bin/python3
"""Training-step throughput, vitshrink vs PyTorch, side by side in one run (a benchmark program,
not a test).

One step = forward + KD loss (KL to fixed random teacher logits, T = 1) + backward + gradient
clipping (norm 1) + AdamW update, on one fixed random batch, every parameter trainable. vitshrink
runs build/bench/bench_train; PyTorch (Debian python3-torch, eager, the reference ViT of
tests/ref/torch_vit.py, torch.optim.AdamW) runs in a subprocess. Both get the same fairness
environment as bench_vs_pytorch.py: the given thread count, OpenMP OpenBLAS first on
LD_LIBRARY_PATH, OPENBLAS_CORETYPE unset unless OpenBLAS misdetects the CPU (bench_vs_pytorch.fair_env).

  bench/bench_train_vs_pytorch.py [--model DIR] [--batch 32] [--threads 2] [--iters 5]
                                  [--warmup 2] [--json out.json]
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_pytorch import DEFAULT_VIT_TINY, fair_env  # noqa: E402


def torch_worker(model_dir, batch, iters, warmup, threads):
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
    import torch_vit
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_vit.load_model(model_dir).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    img = cfg["model_args"]["img_size"]
    x = torch.randn(batch, 3, img, img)
    target = 3 * torch.randn(batch, cfg["num_classes"])
    ms = []
    for it in range(warmup + iters):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        s = model(x)
        loss = F.kl_div(F.log_softmax(s, -1), F.softmax(target, -1), reduction="batchmean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = (time.perf_counter() - t0) * 1000
        if it >= warmup:
            ms.append(dt)
    ms.sort()
    med = ms[len(ms) // 2]
    print(json.dumps({"engine": "pytorch", "torch_version": torch.__version__, "batch": batch,
                      "threads": torch.get_num_threads(), "iters": iters, "median_ms": round(med, 1),
                      "min_ms": round(ms[0], 1), "max_ms": round(ms[-1], 1),
                      "images_per_s": round(batch * 1000 / med, 2), "last_loss": loss.item()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_VIT_TINY)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bench-train", default=os.path.join(REPO, "build", "bench", "bench_train"))
    ap.add_argument("--json")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        return torch_worker(a.model, a.batch, a.iters, a.warmup, a.threads)
    env = fair_env(a.threads)
    common = ["--batch", str(a.batch), "--iters", str(a.iters), "--warmup", str(a.warmup), "--threads", str(a.threads)]
    load_before = os.getloadavg()
    rows = []
    for cmd in ([a.bench_train, a.model] + common,
                ["/usr/bin/python3", os.path.abspath(__file__), "--torch-worker", "--model", a.model] + common):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()
    ratio = rows[0]["median_ms"] / rows[1]["median_ms"]
    print(f"training step (fwd + bwd + clip + AdamW), {os.path.basename(os.path.normpath(a.model))}, "
          f"batch {a.batch}, {a.threads} threads, median of {a.iters}:")
    for r in rows:
        print(f"  {r['engine']:10s} {r['median_ms']:10.1f} ms  {r['images_per_s']:7.2f} img/s  (min {r['min_ms']}, max {r['max_ms']})")
    print(f"  ratio vitshrink / pytorch = {ratio:.2f} (< 1: vitshrink faster); load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump({"rows": rows, "ratio": ratio, "loadavg_before": load_before, "loadavg_after": load_after,
                       "settings": vars(a)}, f, indent=2)
        os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
