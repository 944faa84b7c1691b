#!/usr/bin/python3
"""Probe (not a product path): how far can low rank at 80 % of ViT-Ti's parameters get, and with
which refinement? PyTorch, uniform ranks over the block Linears (patch_embed / head dense),
activation-aware factorisation (whitened SVD on calib.txt), then:
  none    - the factors as they are
  block   - block by block in forward order, Adam on the factors + biases of the block's four
            Linears, loss ||block'(X') - block(X')||^2 (own FP32 block on the compressed inputs)
  block_fp - same, target block(X) (FP32 block on FP32 inputs, BRECQ-style)
  kd      - end-to-end KL to the FP32 logits on the 128 calibration images (distillation; reference)
usage: probe.py FRACTION METHOD [STEPS]"""
import sys, time, torch, numpy as np
import torch.nn as nn, torch.nn.functional as F
from PIL import Image
sys.path.insert(0, "tests/ref")
import torch_vit
torch.set_num_threads(2)
torch.manual_seed(0)
M = "../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
D = "../shared/data/imagenet-sample"
classes = [l.split()[0] for l in open(D + "/classes.txt")]
def names(split): return [l.strip() for l in open(f"{D}/{split}") if l.strip()]
def load(p):
    im = Image.open(p).convert("RGB"); w, h = im.size; s = 248 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BICUBIC); w, h = im.size
    l, t = (w - 224) // 2, (h - 224) // 2
    a = np.asarray(im.crop((l, t, l + 224, t + 224)), dtype=np.float32) / 255.0
    return torch.from_numpy((a - 0.5) / 0.5).permute(2, 0, 1)
def batch(split):
    n = names(split)
    return torch.stack([load(f"{D}/{x}") for x in n]), torch.tensor([classes.index(x.split("_")[0]) for x in n])
frac, method = float(sys.argv[1]), sys.argv[2]
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 300
Xc, _ = batch("calib.txt"); Xe, Ye = batch("eval.txt")
ref = torch_vit.load_model(M).eval()
m = torch_vit.load_model(M).eval()
total = sum(p.numel() for p in ref.parameters())
lins = lambda blk: [blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2]
block_params = sum(l.weight.numel() for b in ref.blocks for l in lins(b))
rho = 1 - (1 - frac) * total / block_params

class LR(nn.Module):
    def __init__(self, lin, C, r):
        super().__init__()
        W = lin.weight.detach().double()
        e, V = torch.linalg.eigh(C); e = e.clamp(min=0)
        S = V @ torch.diag(e.sqrt()) @ V.T
        U = torch.linalg.svd(W @ S, full_matrices=False)[0][:, :r]
        self.A = nn.Parameter(U.float().contiguous()); self.B = nn.Parameter((U.T @ W).float().contiguous())
        self.bias = nn.Parameter(lin.bias.detach().clone())
    def forward(self, x): return F.linear(F.linear(x, self.B), self.A, self.bias)

# Gram of every block Linear's input on the FP32 model.
grams = {}
def hook(name):
    def f(mod, inp):
        x = inp[0].reshape(-1, inp[0].shape[-1]).double(); grams[name] = grams.get(name, 0) + x.T @ x
    return f
hs = [l.register_forward_pre_hook(hook((i, j))) for i, b in enumerate(ref.blocks) for j, l in enumerate(lins(b))]
with torch.no_grad():
    for i in range(0, len(Xc), 32): ref(Xc[i:i + 32])
for h in hs: h.remove()
for i, b in enumerate(m.blocks):
    for j, (parent, attr) in enumerate([(b.attn, "qkv"), (b.attn, "proj"), (b.mlp, "fc1"), (b.mlp, "fc2")]):
        lin = getattr(parent, attr); o, n = lin.weight.shape
        r = int(rho * o * n / (o + n))
        setattr(parent, attr, LR(lin, grams[(i, j)], r))
params = sum(p.numel() for p in m.parameters())
print(f"rho {rho:.4f} params {params} ({params / total * 100:.2f} %)", flush=True)

def blocks_in(model, X):  # inputs of every block (and the final one), no grad
    with torch.no_grad():
        x = model.patch_embed(X); x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], 1) + model.pos_embed
        outs = [x]
        for b in model.blocks: x = b(x); outs.append(x)
    return outs

t0 = time.time()
if method in ("block", "block_fp"):
    with torch.no_grad():
        x_ref = m.patch_embed(Xc); x_ref = torch.cat([m.cls_token.expand(len(Xc), -1, -1), x_ref], 1) + m.pos_embed
    x_fp, x_c = x_ref.clone(), x_ref.clone()
    for i, (b, bf) in enumerate(zip(m.blocks, ref.blocks)):
        with torch.no_grad(): tgt = bf(x_fp if method == "block_fp" else x_c)
        opt = torch.optim.Adam(b.parameters(), lr=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for p in b.parameters(): p.requires_grad_(True)
        for s in range(steps):
            idx = torch.randint(0, len(Xc), (32,))
            loss = F.mse_loss(b(x_c[idx]), tgt[idx])
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        with torch.no_grad():
            x_fp = bf(x_fp); x_c = b(x_c)
            print(f"block {i}: loss {F.mse_loss(x_c, bf(x_c if method=='block' else x_fp)).item():.4g}  {time.time() - t0:.0f}s", flush=True)
elif method == "kd":
    with torch.no_grad(): T = torch.cat([ref(Xc[i:i + 32]) for i in range(0, len(Xc), 32)])
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for s in range(steps):
        idx = torch.randint(0, len(Xc), (32,))
        loss = F.kl_div(F.log_softmax(m(Xc[idx]), -1), F.log_softmax(T[idx], -1), log_target=True, reduction="batchmean")
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        if s % 50 == 0: print(f"step {s}: kl {loss.item():.4f}  {time.time() - t0:.0f}s", flush=True)
with torch.no_grad():
    p = torch.cat([m(Xe[i:i + 64]).argmax(-1) for i in range(0, len(Xe), 64)])
print(f"frac {frac} method {method} steps {steps}: top1 {(p == Ye).float().mean().item() * 100:.2f}  ({time.time() - t0:.0f}s)", flush=True)
