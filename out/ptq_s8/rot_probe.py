#!/usr/bin/python3
"""Probe (not a product path): does rotating each block Linear's input by an orthogonal matrix
(QuaRot-style, W -> W R, x -> x R) help W4A4 with per-token inputs on ViT-Ti? PyTorch fake
quantisation, attention and edges float, RTN weights per channel (min-max), first N eval images.
usage: rot_probe.py N"""
import sys, torch, numpy as np
from PIL import Image
sys.path.insert(0, "tests/ref")
import torch_vit
torch.set_num_threads(2)
M = "../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
D = "../shared/data/imagenet-sample"
classes = [l.split()[0] for l in open(D + "/classes.txt")]
names = [l.strip() for l in open(D + "/eval.txt") if l.strip()][: int(sys.argv[1])]

def load(p):
    im = Image.open(p).convert("RGB"); w, h = im.size; s = 248 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BICUBIC); w, h = im.size
    l, t = (w - 224) // 2, (h - 224) // 2
    a = np.asarray(im.crop((l, t, l + 224, t + 224)), dtype=np.float32) / 255.0
    return torch.from_numpy((a - 0.5) / 0.5).permute(2, 0, 1)

X = torch.stack([load(f"{D}/{n}") for n in names])
Y = torch.tensor([classes.index(n.split("_")[0]) for n in names])

def qtok(x, b):  # per-token asymmetric, range widened to include 0
    lo = x.amin(-1, keepdim=True).clamp(max=0); hi = x.amax(-1, keepdim=True).clamp(min=0)
    s = ((hi - lo) / (2 ** b - 1)).clamp(min=1e-8); z = torch.round(-lo / s)
    return (torch.clamp(torch.round(x / s) + z, 0, 2 ** b - 1) - z) * s

def qw(w, b):
    s = (w.abs().amax(1, keepdim=True) / (2 ** (b - 1) - 1)).clamp(min=1e-8)
    return torch.clamp(torch.round(w / s), -(2 ** (b - 1) - 1), 2 ** (b - 1) - 1) * s

def run(wb, ab, rotate):
    m = torch_vit.load_model(M).eval()
    g = torch.Generator().manual_seed(0)
    for blk in m.blocks:
        for lin in (blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2):
            d = lin.in_features
            R = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0].float() if rotate else None
            with torch.no_grad():
                w = lin.weight @ R if rotate else lin.weight
                lin.weight.copy_(qw(w, wb) if wb < 16 else w)
            def pre(mod, inp, R=R):
                x = inp[0] @ R if R is not None else inp[0]
                return (qtok(x, ab) if ab < 16 else x,)
            lin.register_forward_pre_hook(pre)
    with torch.inference_mode():
        p = torch.cat([m(X[i:i + 50]).argmax(-1) for i in range(0, len(X), 50)])
    return (p == Y).float().mean().item() * 100

for cfg in [(16, 16, False), (4, 4, False), (4, 4, True), (16, 4, False), (16, 4, True), (4, 16, False), (4, 16, True)]:
    print(f"W{cfg[0]}A{cfg[1]} rotate={cfg[2]}: top1 {run(*cfg):.2f}", flush=True)
