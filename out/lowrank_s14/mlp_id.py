#!/usr/bin/python3
"""Probe (not a product path): low rank of ViT-Ti's per-head attention circuits instead of its Linears.
  QK: scores_h = x~_i^T (Wq~_h^T Wk~_h) x~_j, x~ = [LN1(x); 1].  Minimise sum_ij (score error)^2 =
      ||C^1/2 (B - B') C^1/2||_F^2 with C = sum x~ x~^T: truncated SVD of C^1/2 B C^1/2.
  OV: head output into proj = W_o,h W_v,h z_h + W_o,h b_v,h with z_h = P_h LN1(x) (rows of P sum to 1);
      v-bias folded into proj's bias; truncated SVD of (W_o,h W_v,h) C_z^1/2.
usage: mlp_id.py QK_RANK OV_RANK [FC_FRAC] [MLP_KEEP]  (MLP_KEEP: hidden units kept, OBS removal + LS refit of fc2)   (64 = unchanged; FC_FRAC: uniform act-aware rank fraction for fc1/fc2)"""
import os, sys, time, torch, numpy as np
import torch.nn as nn, torch.nn.functional as F
from PIL import Image
sys.path.insert(0, "tests/ref")
import torch_vit
torch.set_num_threads(2)
M = "../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
D = "../shared/data/imagenet-sample"
CACHE = "out/lowrank_s13/data.pt"
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
if os.path.exists(CACHE): Xc, Xe, Ye = torch.load(CACHE)
else:
    Xc, _ = batch("calib.txt"); Xe, Ye = batch("eval.txt"); torch.save((Xc, Xe, Ye), CACHE)
rq, rv = int(sys.argv[1]), int(sys.argv[2])
fc_frac = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
mlp_keep = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
ref = torch_vit.load_model(M).eval()
m = torch_vit.load_model(M).eval()
H, dh, dim = 3, 64, 192

def psd_sqrt(C, inv=False):
    e, V = torch.linalg.eigh(C); e = e.clamp(min=0); s = e.sqrt()
    if inv: s = torch.where(s > s.max() * 1e-7, 1 / s, torch.zeros_like(s))
    return V @ torch.diag(s) @ V.T

class CircuitAttn(nn.Module):
    """Per-head q/k of width rq (with biases folded as a constant-1 input), v of width rv, o per head."""
    def __init__(self, Wq, Wk, Wv, Wo, bo, scale):
        super().__init__()
        self.Wq, self.Wk, self.Wv, self.Wo = [nn.Parameter(t.float()) for t in (Wq, Wk, Wv, Wo)]
        self.bo = nn.Parameter(bo.float()); self.scale = scale
    def forward(self, x):
        xt = torch.cat([x, torch.ones_like(x[..., :1])], -1)            # B N 193
        q = torch.einsum("bnc,hrc->bhnr", xt, self.Wq); k = torch.einsum("bnc,hrc->bhnr", xt, self.Wk)
        v = torch.einsum("bnc,hrc->bhnr", xt, self.Wv)
        p = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        return torch.einsum("bhnr,hor->bno", p @ v, self.Wo) + self.bo

class NormAttn(nn.Module):  # block.attn replacement takes norm1(x) already
    pass

# statistics on the FP32 model: C per block (193x193), C_z per block and head (192x192), grams of fc inputs
stats = {}
def pre_attn(i):
    def f(mod, inp):
        x = inp[0]; B, N, _ = x.shape
        xt = torch.cat([x, torch.ones_like(x[..., :1])], -1).double()
        qkv = mod.qkv(x).reshape(B, N, 3, H, dh).permute(2, 0, 3, 1, 4)
        p = ((qkv[0] @ qkv[1].transpose(-2, -1)) * dh ** -0.5).softmax(-1).double()
        z = p @ x.double().unsqueeze(1)                                     # B H N 192
        s = stats.setdefault(i, {"C": 0, "Cz": 0, "fc1": 0, "fc2": 0})
        s["C"] = s["C"] + torch.einsum("bnc,bnd->cd", xt, xt)
        s["Cz"] = s["Cz"] + torch.einsum("bhnc,bhnd->hcd", z, z)
    return f
def pre_fc(i, name):
    def f(mod, inp):
        x = inp[0].reshape(-1, inp[0].shape[-1]).double(); stats[i][name] = stats[i][name] + x.T @ x
        if name == "fc2":
            xt = torch.cat([x, torch.ones_like(x[:, :1])], 1); stats[i]["fc2t"] = stats[i].get("fc2t", 0) + xt.T @ xt
    return f
hs = []
for i, b in enumerate(ref.blocks):
    hs.append(b.attn.register_forward_pre_hook(pre_attn(i)))
    hs.append(b.mlp.fc1.register_forward_pre_hook(pre_fc(i, "fc1")))
    hs.append(b.mlp.fc2.register_forward_pre_hook(pre_fc(i, "fc2")))
t0 = time.time()
with torch.no_grad():
    for i in range(0, len(Xc), 16): ref(Xc[i:i + 16])
for h in hs: h.remove()

def obs_keep(fc1, fc2, G, n_keep):
    """Remove hidden units one by one, each time the one whose removal (with fc2 refitted by least squares
    on the rest) raises sum ||fc2 output error||^2 least; the constant column (bias) stays."""
    n = fc2.weight.shape[1]
    G = G.clone(); G += torch.eye(n + 1, dtype=G.dtype) * 1e-6 * G.diagonal()[:n].mean()
    Gi = torch.linalg.inv(G)
    W = torch.cat([fc2.weight.double(), fc2.bias.double()[:, None]], 1)
    alive = torch.ones(n + 1, dtype=torch.bool)
    for _ in range(n - n_keep):
        d = Gi.diagonal()[:n]
        cost = (W[:, :n] ** 2).sum(0) / d
        cost[~alive[:n]] = float("inf")
        j = int(cost.argmin())
        W -= torch.outer(W[:, j], Gi[j]) / Gi[j, j]
        Gi -= torch.outer(Gi[:, j], Gi[j]) / Gi[j, j]
        alive[j] = False; W[:, j] = 0; Gi[j] = 0; Gi[:, j] = 0; Gi[j, j] = 1
    idx = alive[:n].nonzero().squeeze(1)
    new1 = nn.Linear(192, len(idx)); new1.weight.copy_(fc1.weight[idx]); new1.bias.copy_(fc1.bias[idx])
    new2 = nn.Linear(len(idx), 192); new2.weight.copy_(W[:, idx].float()); new2.bias.copy_(W[:, n].float())
    return new1, new2

class LR(nn.Module):
    def __init__(self, lin, C, r):
        super().__init__()
        W = lin.weight.detach().double()
        U = torch.linalg.svd(W @ psd_sqrt(C), full_matrices=False)[0][:, :r]
        self.A = nn.Parameter(U.float().contiguous()); self.B = nn.Parameter((U.T @ W).float().contiguous())
        self.bias = nn.Parameter(lin.bias.detach().clone())
    def forward(self, x): return F.linear(F.linear(x, self.B), self.A, self.bias)

with torch.no_grad():
    for i, b in enumerate(m.blocks):
        s = stats[i]; a = b.attn
        Wqkv = torch.cat([a.qkv.weight, a.qkv.bias[:, None]], 1).double().reshape(3, H, dh, dim + 1)
        Wo_full = a.proj.weight.double(); bo = a.proj.bias.double().clone()
        C_half, C_ihalf = psd_sqrt(s["C"]), psd_sqrt(s["C"], inv=True)
        Wq, Wk, Wv, Wo = [], [], [], []
        for h in range(H):
            q, k, v = Wqkv[0, h], Wqkv[1, h], Wqkv[2, h]
            if rq >= dh: Wq.append(q); Wk.append(k)
            else:
                U, S, Vt = torch.linalg.svd(C_half @ q.T @ k @ C_half)
                sq = S[:rq].sqrt()
                Wq.append(sq[:, None] * (U[:, :rq].T @ C_ihalf)); Wk.append(sq[:, None] * (Vt[:rq] @ C_ihalf))
            o = Wo_full[:, h * dh:(h + 1) * dh]
            bo += o @ v[:, dim]                                    # v-bias through P (rows sum to 1) into proj bias
            v0 = torch.cat([v[:, :dim], torch.zeros(dh, 1, dtype=v.dtype)], 1)
            if rv >= dh: Wv.append(v0); Wo.append(o)
            else:
                Mh = o @ v[:, :dim]
                U = torch.linalg.svd(Mh @ psd_sqrt(s["Cz"][h]))[0][:, :rv]
                Wv.append(torch.cat([U.T @ Mh, torch.zeros(rv, 1, dtype=v.dtype)], 1)); Wo.append(U)
        b.attn = CircuitAttn(torch.stack(Wq), torch.stack(Wk), torch.stack(Wv), torch.stack(Wo), bo, dh ** -0.5)
        if mlp_keep < 1:
            b.mlp.fc1, b.mlp.fc2 = obs_keep(b.mlp.fc1, b.mlp.fc2, s["fc2t"], int(round(mlp_keep * 768)))
        if fc_frac < 1:
            for name in ("fc1", "fc2"):
                lin = getattr(b.mlp, name); o_, n_ = lin.weight.shape
                setattr(b.mlp, name, LR(lin, s[name], int(fc_frac * o_ * n_ / (o_ + n_))))
total = sum(p.numel() for p in ref.parameters())
# parameters as the C++ model would store them: q/k (rq x 192 + rq bias), v (rv x 192 + rv bias), proj (192 x H*rv + 192)
params = total
for b in m.blocks:
    params -= 4 * dim * dim + 4 * dim
    params += H * (2 * rq * (dim + 1) + rv * (dim + 1)) + dim * H * rv + dim
    params -= (768 - b.mlp.fc1.weight.shape[0]) * (2 * dim + 1)
    if fc_frac < 1:
        params -= 2 * 4 * dim * dim
        params += sum(p.numel() for n, p in b.mlp.named_parameters() if not n.endswith("bias"))
with torch.no_grad():
    lo = torch.cat([m(Xe[i:i + 64]) for i in range(0, len(Xe), 64)])
    lr_ = torch.cat([ref(Xe[i:i + 64]) for i in range(0, len(Xe), 64)])
kl = F.kl_div(F.log_softmax(lo, -1), F.log_softmax(lr_, -1), log_target=True, reduction="batchmean").item()
print(f"qk {rq} ov {rv} fc {fc_frac} mlp {mlp_keep}: params {params} ({params / total * 100:.2f} %) top1 {(lo.argmax(-1) == Ye).float().mean().item() * 100:.2f} "
      f"fp32 {(lr_.argmax(-1) == Ye).float().mean().item() * 100:.2f} kl {kl:.4f}  ({time.time() - t0:.0f}s)", flush=True)
