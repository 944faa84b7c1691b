#!/usr/bin/python3
"""vitshrink vs PyTorch on CPU, side by side, in one run (a benchmark program, not a test).

Measures every contender (vitshrink FP32, PyTorch FP32, PyTorch dynamic int8, and any extra
vitshrink model folders given with --model) on ViT-Ti (the real augreg weights from ../shared)
and a DeiT-S-shaped model (random weights, made once with tests/ref/torch_vit.py into a cache
folder), at each batch size, and prints median / p90 latency, images/s and the ratio
vitshrink / PyTorch (< 1: vitshrink is faster). See bench/README.md for the fairness settings.

  bench/bench_vs_pytorch.py [--batches 1 8] [--threads 2] [--json out.json] [--quick]
                            [--vitshrink build/vitshrink] [--model NAME=PATH ...]

The main process only needs the standard library. PyTorch runs in a worker subprocess (started
with /usr/bin/python3, Debian's python3-torch) whose environment is prepared for the OpenMP
build of OpenBLAS; the worker proves which libopenblas it loaded. vitshrink runs as
`vitshrink bench` subprocesses in the same environment.
"""
import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENBLAS_OPENMP_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
DEFAULT_VIT_TINY = os.path.join(REPO, "..", "shared", "models", "vit_tiny_patch16_224.augreg_in21k_ft_in1k")
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "imagenet-sample")
DEIT_SMALL_ARCH = "deit_small_patch16_224"
WARMUP = 3  # `vitshrink bench` always runs 3 untimed passes (src/eval/latency.cpp); same here.


# ------------------------------------------------------------------------------------------------
# Shared timing rule (identical to vs::eval::measure_latency in src/eval/latency.cpp)
# ------------------------------------------------------------------------------------------------

def summarize(ms, batch):
    """median = sorted[n/2], p90 = sorted[min(n-1, n*9/10)], images/s from the median."""
    s = sorted(ms)
    n = len(s)
    median = s[n // 2]
    return {"batch": batch, "iters": n, "median_ms": median, "p90_ms": s[min(n - 1, n * 9 // 10)],
            "mean_ms": sum(s) / n, "images_per_s": batch * 1000.0 / median}


def time_loop(fn, batch, warmup, min_iters, min_seconds):
    """`warmup` untimed calls, then timed calls until both min_iters and min_seconds are met."""
    for _ in range(warmup):
        fn()
    ms = []
    clock = time.perf_counter
    start = clock()
    while len(ms) < min_iters or clock() - start < min_seconds:
        t0 = clock()
        fn()
        ms.append((clock() - t0) * 1000.0)
        if len(ms) >= 10000:
            break
    return summarize(ms, batch)


# ------------------------------------------------------------------------------------------------
# PyTorch worker (runs inside the subprocess, under /usr/bin/python3 with torch)
# ------------------------------------------------------------------------------------------------

def _loaded_libs(substr):
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and substr in os.path.basename(parts[-1]) and parts[-1] not in libs:
                libs.append(parts[-1])
    return libs


def _openblas_info():
    import ctypes
    libs = _loaded_libs("openblas")
    info = {"libopenblas": libs, "libblas": _loaded_libs("libblas"), "libgomp": _loaded_libs("libgomp")}
    if libs:
        try:
            ob = ctypes.CDLL(libs[0])  # already loaded: dlopen returns the same handle
            ob.openblas_get_corename.restype = ctypes.c_char_p
            ob.openblas_get_config.restype = ctypes.c_char_p
            par = ob.openblas_get_parallel()
            info.update({"parallel": {0: "sequential", 1: "pthreads", 2: "openmp"}.get(par, str(par)),
                         "corename": ob.openblas_get_corename().decode(),
                         "config": ob.openblas_get_config().decode(),
                         "num_threads": ob.openblas_get_num_threads()})
        except (OSError, AttributeError) as e:
            info["error"] = repr(e)
    return info


class TorchWorker:
    """Answers one JSON request per stdin line with one JSON line on the protocol fd."""

    def __init__(self, threads, qengine):
        import warnings
        warnings.filterwarnings("ignore")
        import torch
        import torch.nn as nn
        sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
        import torch_vit
        self.torch, self.nn, self.torch_vit = torch, nn, torch_vit
        torch.set_num_threads(threads)
        supported = list(torch.backends.quantized.supported_engines)
        if qengine == "auto":
            qengine = next((e for e in ("onednn", "fbgemm", "qnnpack") if e in supported), "none")
        if qengine != "none":
            torch.backends.quantized.engine = qengine
        self.info = {"torch_version": torch.__version__, "python": sys.executable,
                     "num_threads": torch.get_num_threads(),
                     "quantized_engine": torch.backends.quantized.engine,
                     "quantized_engines_supported": supported,
                     "mkldnn_available": torch.backends.mkldnn.is_available(),
                     "env": {k: os.environ.get(k) for k in
                             ("OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "LD_LIBRARY_PATH")},
                     "openblas": _openblas_info()}
        self.models = {}

    def _model(self, model_dir, precision):
        key = (model_dir, precision)
        if key not in self.models:
            torch = self.torch
            if precision == "fp32":
                self.models[key] = self.torch_vit.load_model(model_dir)
            elif precision == "int8":
                fp32 = self._model(model_dir, "fp32")
                self.models[key] = torch.ao.quantization.quantize_dynamic(
                    fp32, {self.nn.Linear}, dtype=torch.qint8).eval()
            else:
                raise ValueError(f"unknown precision {precision}")
        return self.models[key]

    def measure(self, req):
        """Times every variant (eager, jit.trace+freeze, + optimize_for_inference) and returns
        all of them plus the best (lowest median). A variant whose output differs from eager's is
        rejected, so a broken graph rewrite cannot win."""
        torch = self.torch
        batch = req["batch"]
        torch.manual_seed(0)
        x = torch.randn(batch, 3, req["img_size"], req["img_size"])
        variants = {}
        with torch.inference_mode():
            model = self._model(req["model_dir"], req["precision"])
            ref = model(x)
            scale = max(1.0, ref.abs().max().item())
            builders = [("eager", lambda: model),
                        ("jit.trace+freeze", lambda: torch.jit.freeze(torch.jit.trace(model, x).eval())),
                        ("jit.trace+freeze+optimize_for_inference", lambda: torch.jit.optimize_for_inference(
                            torch.jit.freeze(torch.jit.trace(model, x).eval())))]
            for name, build in builders:
                if name not in req["variants"]:
                    continue
                try:
                    fn = build()
                    if name != "eager":
                        for _ in range(3):  # let the JIT's profiling executor settle before the check
                            y = fn(x)
                        diff = (y - ref).abs().max().item()
                        if not diff <= 1e-3 * scale:
                            raise RuntimeError(f"output differs from eager by {diff:g}")
                    variants[name] = time_loop(lambda: fn(x), batch, req["warmup"], req["iters"], req["seconds"])
                except Exception as e:  # noqa: BLE001 -- report and go on with the other variants
                    variants[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
                fn = None
        ok = {k: v for k, v in variants.items() if "error" not in v}
        if not ok:
            return {"error": "; ".join(f"{k}: {v['error']}" for k, v in variants.items()), "variants": variants}
        best = min(ok, key=lambda k: ok[k]["median_ms"])
        return dict(ok[best], variant=best, variants=variants, threads=torch.get_num_threads())


def torch_worker_main(threads, qengine):
    # Keep the protocol on a private fd; anything the libraries print to stdout goes to stderr.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    worker = TorchWorker(threads, qengine)
    proto.write(json.dumps(worker.info) + "\n")
    proto.flush()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            resp = worker.measure(req)
        except Exception as e:  # noqa: BLE001
            resp = {"error": f"{type(e).__name__}: {e}"}
        proto.write(json.dumps(resp) + "\n")
        proto.flush()


# ------------------------------------------------------------------------------------------------
# Orchestrator (main process, standard library only)
# ------------------------------------------------------------------------------------------------

# Cores OpenBLAS falls back to when it cannot identify the CPU (a VM that hides the model, as on
# this project's Intel machine: it reported "Prescott", 3.9x slower on a ViT matmul than SkylakeX).
GENERIC_OPENBLAS_CORES = {"Prescott", "Katmai", "Coppermine", "Northwood", "Banias", "Core2", "Penryn",
                          "Dunnington", "Nehalem", "Atom", "Unknown"}


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_CORETYPE = []  # memo: [value or None]


def openblas_coretype():
    """The OPENBLAS_CORETYPE that gives OpenBLAS its best kernels here: None (let it detect the CPU)
    unless its own detection falls back to a generic pre-AVX core on a CPU with AVX2 / AVX-512."""
    if _CORETYPE:
        return _CORETYPE[0]
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    lib = os.path.join(OPENBLAS_OPENMP_DIR, "libopenblas.so.0")
    probe = ("import ctypes,sys; ob=ctypes.CDLL(sys.argv[1]); ob.openblas_get_corename.restype=ctypes.c_char_p; "
             "print(ob.openblas_get_corename().decode())")
    try:
        detected = subprocess.run([sys.executable, "-c", probe, lib], env=env, capture_output=True, text=True,
                                  timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        detected = ""
    flags = _cpu_flags()
    choice = None
    if detected in GENERIC_OPENBLAS_CORES:
        choice = "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else None
    _CORETYPE.append(choice)
    return choice


def fair_env(threads):
    """Environment for BOTH sides: OpenMP OpenBLAS first on the library path, OMP_NUM_THREADS =
    threads, and OPENBLAS_CORETYPE unset (the earlier machine's environment set it to Haswell, which
    halved OpenBLAS) unless OpenBLAS's own detection fails (openblas_coretype())."""
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(k, None)
    core = openblas_coretype()
    if core:
        env["OPENBLAS_CORETYPE"] = core
    env["LD_LIBRARY_PATH"] = OPENBLAS_OPENMP_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env["OMP_NUM_THREADS"] = str(threads)
    return env


class TorchClient:
    def __init__(self, python, threads, qengine, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--torch-worker", "--threads", str(threads), "--qengine", qengine],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=fair_env(threads), text=True)
        self.info = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.log.flush()
            with open(self.log_path) as f:
                tail = f.read()[-3000:]
            raise SystemExit(f"PyTorch worker died (log {self.log_path}):\n{tail}")
        return json.loads(line)

    def request(self, req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.log.close()


@dataclasses.dataclass
class Group:
    """One architecture: every contender in a group runs on the same shape of network."""
    name: str
    arch: str
    path: str        # FP32 model folder (config.json + model.safetensors) for the PyTorch side
    img_size: int


@dataclasses.dataclass
class Contender:
    """One row per group and batch. `run(group, batch)` returns a timing dict (median_ms, p90_ms,
    images_per_s, iters, ...) or {"error": ...}. The row's ratio is median(ratio[0]) /
    median(ratio[1]) (contender names, vitshrink side first); None marks the reference row."""
    name: str
    engine: str                  # "vitshrink" | "pytorch"
    precision: str               # "fp32" | "int8" | ...
    run: Callable[[Group, int], dict]
    ratio: Optional[tuple] = None
    groups: Optional[set] = None  # only these group names (None: every group)


def read_config(path):
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


def ensure_deit_small(cache_dir, python):
    out = os.path.join(cache_dir, DEIT_SMALL_ARCH)
    if os.path.isfile(os.path.join(out, "config.json")) and os.path.isfile(os.path.join(out, "model.safetensors")):
        return out
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=DEIT_SMALL_ARCH + ".", dir=cache_dir)
    print(f"making random-weight {DEIT_SMALL_ARCH} in {out} ...", flush=True)
    subprocess.run([python, os.path.join(REPO, "tests", "ref", "torch_vit.py"), "make", DEIT_SMALL_ARCH, tmp],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return out


# The W8A8 recipe of the main job (scripts/main_job.sh): integer Linear layers and attention
# products, calibrated on the first 32 images of calib.txt (enough for latency; the weights of
# the DeiT-S-shaped model are random anyway).
W8A8_RECIPE = ["--wbits", "8", "--abits", "8", "--act-observer", "mse", "--dynamic-for", "mlp.fc2"]


def quantize_w8a8(exe, group, cache_dir, data_dir, threads):
    """Quantizes the group's FP32 folder with the current binary (every run: the code may have changed)."""
    os.makedirs(cache_dir, exist_ok=True)
    split = os.path.join(cache_dir, "calib32.txt")
    with open(os.path.join(data_dir, "calib.txt")) as f:
        names = [l for l in f.read().splitlines() if l.strip()][:32]
    with open(split, "w") as f:
        f.write("\n".join(names) + "\n")
    out = os.path.join(cache_dir, group.name + "_w8a8")
    cmd = [exe, "quantize", group.path, *W8A8_RECIPE, "--calib", data_dir, "--split", split,
           "--threads", str(threads), "--out", out]
    print(f"quantizing {group.name} to W8A8 ...", flush=True)
    subprocess.run(cmd, env=fair_env(threads), check=True, stdout=subprocess.DEVNULL)
    return out


def vitshrink_runner(exe, model_path, threads, iters, seconds):
    """model_path None: the group's own FP32 folder; a callable: model_path(group)."""
    def run(group, batch):
        path = model_path(group) if callable(model_path) else (model_path or group.path)
        with tempfile.TemporaryDirectory() as td:
            js = os.path.join(td, "bench.json")
            cmd = [exe, "bench", path, "--batch", str(batch), "--threads", str(threads),
                   "--iters", str(iters), "--seconds", str(seconds), "--json", js]
            p = subprocess.run(cmd, env=fair_env(threads), capture_output=True, text=True)
            if p.returncode != 0:
                msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
                return {"error": f"vitshrink bench exited {p.returncode}: {msg[-1] if msg else ''}"}
            with open(js) as f:
                r = json.load(f)["runs"][0]
        return {k: r[k] for k in ("batch", "iters", "median_ms", "p90_ms", "mean_ms", "images_per_s",
                                  "threads", "peak_rss_bytes") if k in r}
    return run


def torch_runner(client, precision, variants, iters, seconds):
    def run(group, batch):
        return client.request({"model_dir": group.path, "precision": precision, "batch": batch,
                               "img_size": group.img_size, "variants": variants, "warmup": WARMUP,
                               "iters": iters, "seconds": seconds})
    return run


def fmt_row(cells, widths):
    return "  ".join(str(c).ljust(w) if i < 4 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def print_table(results, contenders, groups, batches):
    by = {(r["group"], r["batch"], r["contender"]): r for r in results}
    head = ["model", "batch", "contender", "variant", "median ms", "p90 ms", "images/s", "ratio"]
    rows = []
    for g in groups:
        for b in batches:
            for c in contenders:
                r = by.get((g.name, b, c.name))
                if r is None:
                    continue
                if "error" in r["timing"]:
                    rows.append([g.name, b, c.name, "FAILED", "-", "-", "-", "-"])
                    continue
                t = r["timing"]
                ratio = "ref" if c.ratio is None else ("n/a" if r.get("ratio") is None else f"{r['ratio']:.2f}")
                rows.append([g.name, b, c.name, t.get("variant", "-"), f"{t['median_ms']:.2f}",
                             f"{t['p90_ms']:.2f}", f"{t['images_per_s']:.1f}", ratio])
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    print(fmt_row(head, widths))
    print("  ".join("-" * w for w in widths))
    last = None
    for row in rows:
        if last is not None and row[:2] != last:
            print()
        last = row[:2]
        print(fmt_row(row, widths))
    print()
    for c in contenders:
        if c.ratio:
            print(f"ratio of '{c.name}' = median({c.ratio[0]}) / median({c.ratio[1]})   (< 1: vitshrink faster)")
    for r in results:
        if "error" in r["timing"]:
            print(f"FAILED {r['group']} batch {r['batch']} {r['contender']}: {r['timing']['error']}")


SPEEDUPS = [("vitshrink w8a8", "vitshrink fp32"), ("vitshrink w8a8", "pytorch int8"),
            ("vitshrink fp32", "pytorch fp32"), ("vitshrink w8a8", "pytorch fp32")]


def speedup_rows(results, groups, batches):
    """How many times faster the first of each pair is than the second (> 1: first faster).

    `speedup` divides the two rows' reported (median-round) times. With several rounds, `paired`
    is the median over rounds of the same round's ratio: both sides of a round ran back to back
    in one cell, so the VM's drift between rounds (10-40 % here) cancels instead of deciding the
    ratio; `per_round` lists those ratios."""
    by = {(r["group"], r["batch"], r["contender"]): r["timing"] for r in results}
    rows = []
    for g in groups:
        for b in batches:
            for fast, slow in SPEEDUPS:
                a, c = by.get((g.name, b, fast), {}), by.get((g.name, b, slow), {})
                if "median_ms" in a and "median_ms" in c:
                    row = {"group": g.name, "batch": b, "faster": fast, "than": slow,
                           "speedup": c["median_ms"] / a["median_ms"]}
                    ra, rc = a.get("rounds_median_ms"), c.get("rounds_median_ms")
                    if ra and rc and len(ra) == len(rc) and all(ra) and all(rc):
                        per = [y / x for x, y in zip(ra, rc)]
                        row["per_round"] = per
                        row["paired"] = sorted(per)[(len(per) - 1) // 2]
                    rows.append(row)
    if rows:
        print("\nspeed-ups (median of the second / median of the first; > 1: the first is faster;"
              " paired: the median round's ratio of the two, each round's pair run back to back)")
        for r in rows:
            paired = (f"   paired {r['paired']:.2f}x (rounds " + " / ".join(f"{x:.2f}" for x in r["per_round"]) + ")"
                      if "paired" in r else "")
            print(f"  {r['group']:<12} batch {r['batch']:<3} {r['faster']:<15} vs {r['than']:<15} {r['speedup']:.2f}x{paired}")
    return rows


def print_torch_variants(results):
    print("PyTorch variants (the row above reports the best median of these):")
    for r in results:
        v = r["timing"].get("variants")
        if not v:
            continue
        parts = [f"{name} {t['median_ms']:.2f} ms" if "error" not in t else f"{name} FAILED ({t['error']})"
                 for name, t in v.items()]
        print(f"  {r['group']:<12} batch {r['batch']:<3} {r['contender']:<14} " + " | ".join(parts))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Take numbers only on a quiet machine (load average near 0).")
    ap.add_argument("--vitshrink", default=os.path.join(REPO, "build", "vitshrink"), help="vitshrink CLI")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write every number (and the settings) here")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 timed passes, no minimum time")
    ap.add_argument("--iters", type=int, default=20, help="minimum timed passes (default 20)")
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per row (default 2)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="sweeps over every row, order flipped each time; each row reports its median round (default 3)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="extra vitshrink model folder as a row; it joins the group whose architecture "
                         "(config.json) it has, else gets its own group")
    ap.add_argument("--vit-tiny", default=DEFAULT_VIT_TINY, help="ViT-Ti model folder")
    ap.add_argument("--data", default=DEFAULT_DATA, help="ImageNet-style folder with calib.txt (W8A8 calibration)")
    ap.add_argument("--no-w8a8", action="store_true", help="skip the vitshrink W8A8 rows")
    ap.add_argument("--cache-dir", default=os.path.join(REPO, ".cache", "bench_vs_pytorch"),
                    help="where the random-weight DeiT-S is made (once)")
    ap.add_argument("--torch-python", default="/usr/bin/python3", help="python with torch (Debian python3-torch)")
    ap.add_argument("--qengine", default="auto", help="torch quantized engine (auto: onednn, else fbgemm, else qnnpack)")
    ap.add_argument("--allow-any-blas", action="store_true", help="do not abort when OpenMP OpenBLAS is not loaded")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.torch_worker:
        return torch_worker_main(args.threads, args.qengine)

    if args.quick:
        args.iters, args.seconds, args.rounds = 3, 0.0, 1
    if args.rounds < 1:
        sys.exit("--rounds must be >= 1")
    exe = os.path.abspath(args.vitshrink)
    if not os.access(exe, os.X_OK):
        sys.exit(f"no vitshrink executable at {exe} (build it: cmake --build build --target vitshrink)")

    load0 = os.getloadavg()
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    if load0[0] > 0.5:
        print("WARNING: the machine is busy (1-min load average > 0.5): these numbers are NOT representative")
    print(f"settings: threads {args.threads}, warm-up {WARMUP}, >= {args.iters} timed passes and >= {args.seconds:g} s"
          f" per row, median and p90{' (QUICK smoke run)' if args.quick else ''}")

    # Models (groups)
    groups = []
    tiny_cfg = read_config(args.vit_tiny)
    groups.append(Group("vit_tiny", tiny_cfg["architecture"], os.path.abspath(args.vit_tiny),
                        tiny_cfg["model_args"]["img_size"]))
    deit = ensure_deit_small(os.path.abspath(args.cache_dir), args.torch_python)
    groups.append(Group("deit_small", DEIT_SMALL_ARCH, deit, read_config(deit)["model_args"]["img_size"]))

    # PyTorch worker, with the fair environment, and proof of which OpenBLAS it loaded
    log_path = os.path.join(os.path.abspath(args.cache_dir), "torch_worker.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    client = TorchClient(args.torch_python, args.threads, args.qengine, log_path)
    ti = client.info
    ob = ti["openblas"]
    print(f"pytorch {ti['torch_version']}: torch threads {ti['num_threads']}, quantized engine "
          f"'{ti['quantized_engine']}' (supported: {', '.join(ti['quantized_engines_supported'])}), "
          f"OMP_NUM_THREADS={ti['env']['OMP_NUM_THREADS']}, OPENBLAS_CORETYPE="
          f"{ti['env']['OPENBLAS_CORETYPE'] or '(unset)'}")
    print(f"pytorch loaded libopenblas: {', '.join(ob['libopenblas']) or 'NONE'} "
          f"(parallel: {ob.get('parallel', '?')}, core: {ob.get('corename', '?')}, threads: {ob.get('num_threads', '?')})")
    blas_ok = (bool(ob["libopenblas"]) and all(p.startswith(OPENBLAS_OPENMP_DIR + "/") for p in ob["libopenblas"])
               and ob.get("parallel") == "openmp")
    if not blas_ok:
        msg = "PyTorch did not load the OpenMP build of OpenBLAS from " + OPENBLAS_OPENMP_DIR
        if not args.allow_any_blas:
            client.close()
            sys.exit("ERROR: " + msg + " (install libopenblas0-openmp, or pass --allow-any-blas)")
        print("WARNING: " + msg)

    # Contenders: add more rows here (each a function (group, batch) -> timing dict).
    fp32_variants = ["eager", "jit.trace+freeze", "jit.trace+freeze+optimize_for_inference"]
    contenders = [
        Contender("vitshrink fp32", "vitshrink", "fp32",
                  vitshrink_runner(exe, None, args.threads, args.iters, args.seconds),
                  ratio=("vitshrink fp32", "pytorch fp32")),
        Contender("pytorch fp32", "pytorch", "fp32",
                  torch_runner(client, "fp32", fp32_variants, args.iters, args.seconds)),
        # int8 dynamic quantization of every nn.Linear (PyTorch's own int8 path).
        Contender("pytorch int8", "pytorch", "int8",
                  torch_runner(client, "int8", fp32_variants, args.iters, args.seconds),
                  ratio=("pytorch int8", "pytorch fp32")),
    ]
    if not args.no_w8a8:
        w8a8 = {g.name: quantize_w8a8(exe, g, os.path.abspath(args.cache_dir), args.data, args.threads)
                for g in groups}
        contenders.append(Contender("vitshrink w8a8", "vitshrink", "w8a8",
                                    vitshrink_runner(exe, lambda g: w8a8[g.name], args.threads, args.iters,
                                                     args.seconds),
                                    ratio=("vitshrink w8a8", "pytorch fp32")))
    for spec in args.model:
        if "=" not in spec:
            sys.exit(f"--model wants NAME=PATH, got {spec!r}")
        name, path = spec.split("=", 1)
        path = os.path.abspath(path)
        cfg = read_config(path)
        arch = cfg.get("architecture", os.path.basename(path))
        g = next((g for g in groups if g.arch == arch), None)
        if g is None:  # own group; PyTorch rows try to load it (and say FAILED if they cannot)
            g = Group(name, arch, path, cfg.get("model_args", {}).get("img_size", 224))
            groups.append(g)
        contenders.append(Contender(name, "vitshrink", "as stored",
                                    vitshrink_runner(exe, path, args.threads, args.iters, args.seconds),
                                    ratio=(name, "pytorch fp32"), groups={g.name}))

    # Measure: cells in order, contenders alternating forward / backward from one cell to the next,
    # so that neither side systematically runs first (on a cooler or hotter machine). With
    # --rounds R the whole sweep runs R times (the order flipped each round) and every cell reports
    # the round with the median time: this VM's speed drifts by 5-10 % within minutes, and one
    # draw per contender let that drift decide ratios near a target.
    per_cell = {}
    t_start = time.time()
    for rnd in range(args.rounds):
        cell = rnd
        for g in groups:
            for b in args.batches:
                order = [c for c in contenders if c.groups is None or g.name in c.groups]
                if cell % 2:
                    order.reverse()
                cell += 1
                for c in order:
                    load = os.getloadavg()[0]
                    tag = f" (round {rnd + 1}/{args.rounds})" if args.rounds > 1 else ""
                    print(f"  {g.name} batch {b}: {c.name}{tag} ...", end="", flush=True)
                    t = c.run(g, b)
                    print(" FAILED" if "error" in t else f" {t['median_ms']:.2f} ms"
                          + (f" ({t['variant']})" if "variant" in t else ""), flush=True)
                    per_cell.setdefault((g.name, b, c.name), []).append((t, load, g))
    results = []
    for (gname, b, cname), runs in per_cell.items():
        ok = sorted((r for r in runs if "median_ms" in r[0]), key=lambda r: r[0]["median_ms"])
        t, load, g = ok[(len(ok) - 1) // 2] if ok else runs[0]
        c = next(c for c in contenders if c.name == cname)
        if len(runs) > 1:
            t = dict(t, rounds_median_ms=[r[0].get("median_ms") for r in runs])
        results.append({"group": gname, "arch": g.arch, "batch": b, "contender": cname,
                        "engine": c.engine, "precision": c.precision, "load_avg_1min": load,
                        "timing": t})
    client.close()

    by = {(r["group"], r["batch"], r["contender"]): r["timing"] for r in results}
    for r in results:
        c = next(c for c in contenders if c.name == r["contender"])
        r["ratio_of"] = list(c.ratio) if c.ratio else None
        r["ratio"] = None
        if c.ratio:
            num, den = (by.get((r["group"], r["batch"], n), {}) for n in c.ratio)
            if "median_ms" in num and "median_ms" in den:
                r["ratio"] = num["median_ms"] / den["median_ms"]

    load1 = os.getloadavg()
    print(f"\nvitshrink vs PyTorch on CPU, {args.threads} threads ({time.time() - t_start:.0f} s; "
          f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f})\n")
    print_table(results, contenders, groups, args.batches)
    speedups = speedup_rows(results, groups, args.batches)
    print()
    print_torch_variants(results)

    if args.json:
        out = {"machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "load_avg_start": load0,
                           "load_avg_end": load1, "hostname": platform.node()},
               "settings": {"threads": args.threads, "batches": args.batches, "warmup": WARMUP,
                            "min_iters": args.iters, "min_seconds": args.seconds, "quick": args.quick,
                            "vitshrink": exe, "timing_rule": "median=sorted[n/2], p90=sorted[min(n-1,n*9/10)]",
                            "order": "contenders alternate forward/backward from one (model, batch) cell to the next",
                            "rounds": args.rounds, "round_rule": "each row: the round with the median median_ms (lower middle)"},
               "pytorch": ti,
               "models": [dataclasses.asdict(g) for g in groups],
               "contenders": [{"name": c.name, "engine": c.engine, "precision": c.precision,
                               "ratio_of": list(c.ratio) if c.ratio else None,
                               "groups": sorted(c.groups) if c.groups else None} for c in contenders],
               "results": results,
               "speedups": speedups}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
