#!/usr/bin/python3
"""Probe (not a product path): circuits low rank (see circuits.py) + activation-aware fc1/fc2 low rank,
ranks allocated greedily from single-item KL probes (16 calibration images, like vitshrink's
allocator), then optional block-wise refinement (own FP32 block on compressed inputs, Adam).
usage: mixed.py FRACTION [REFINE_STEPS] [ITEMS: all|attn|fc]"""
import os, sys, time, torch, numpy as np
import torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, "tests/ref")
import torch_vit
torch.set_num_threads(2); torch.manual_seed(0)
M = "../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
Xc, Xe, Ye = torch.load("out/lowrank_s13/data.pt")
frac = float(sys.argv[1]); steps = int(sys.argv[2]) if len(sys.argv) > 2 else 0
which = sys.argv[3] if len(sys.argv) > 3 else "all"
ref = torch_vit.load_model(M).eval()
H, dh, dim = 3, 64, 192
t0 = time.time()
def psd_sqrt(C, inv=False):
    e, V = torch.linalg.eigh(C); e = e.clamp(min=0); s = e.sqrt()
    if inv: s = torch.where(s > s.max() * 1e-7, 1 / s, torch.zeros_like(s))
    return V @ torch.diag(s) @ V.T

stats = {}
def pre_attn(i):
    def f(mod, inp):
        x = inp[0]; B, N, _ = x.shape
        xt = torch.cat([x, torch.ones_like(x[..., :1])], -1).double()
        qkv = mod.qkv(x).reshape(B, N, 3, H, dh).permute(2, 0, 3, 1, 4)
        p = ((qkv[0] @ qkv[1].transpose(-2, -1)) * dh ** -0.5).softmax(-1).double()
        z = p @ x.double().unsqueeze(1)
        s = stats.setdefault(i, {"C": 0, "Cz": 0, "fc1": 0, "fc2": 0})
        s["C"] = s["C"] + torch.einsum("bnc,bnd->cd", xt, xt)
        s["Cz"] = s["Cz"] + torch.einsum("bhnc,bhnd->hcd", z, z)
    return f
def pre_fc(i, name):
    def f(mod, inp):
        x = inp[0].reshape(-1, inp[0].shape[-1]).double(); stats[i][name] = stats[i][name] + x.T @ x
    return f
hs = []
for i, b in enumerate(ref.blocks):
    hs += [b.attn.register_forward_pre_hook(pre_attn(i)), b.mlp.fc1.register_forward_pre_hook(pre_fc(i, "fc1")),
           b.mlp.fc2.register_forward_pre_hook(pre_fc(i, "fc2"))]
with torch.no_grad():
    for i in range(0, len(Xc), 16): ref(Xc[i:i + 16])
for h in hs: h.remove()

class Attn(nn.Module):
    """Per head: q/k rows ordered by the score form's singular values, v/o by the OV map's."""
    def __init__(self, a, s):
        super().__init__()
        Wqkv = torch.cat([a.qkv.weight, a.qkv.bias[:, None]], 1).double().reshape(3, H, dh, dim + 1)
        Wo_full = a.proj.weight.double(); bo = a.proj.bias.double().clone()
        Ch, Cih = psd_sqrt(s["C"]), psd_sqrt(s["C"], inv=True)
        Wq, Wk, Wv, Wo = [], [], [], []
        for h in range(H):
            q, k, v = Wqkv[0, h], Wqkv[1, h], Wqkv[2, h]
            U, S, Vt = torch.linalg.svd(Ch @ q.T @ k @ Ch); sq = S[:dh].sqrt()
            Wq.append(sq[:, None] * (U[:, :dh].T @ Cih)); Wk.append(sq[:, None] * (Vt[:dh] @ Cih))
            o = Wo_full[:, h * dh:(h + 1) * dh]; bo += o @ v[:, dim]
            Mh = o @ v[:, :dim]
            U = torch.linalg.svd(Mh @ psd_sqrt(s["Cz"][h]))[0][:, :dh]
            Wv.append(U.T @ Mh); Wo.append(U)
        self.Wq, self.Wk, self.Wv, self.Wo = [nn.Parameter(torch.stack(t).float()) for t in (Wq, Wk, Wv, Wo)]
        self.bv = nn.Parameter(torch.zeros(H, dh)); self.bo = nn.Parameter(bo.float())
        self.rq, self.rv = [dh] * H, [dh] * H
    def forward(self, x):
        xt = torch.cat([x, torch.ones_like(x[..., :1])], -1); out = self.bo
        for h in range(H):
            rq, rv = self.rq[h], self.rv[h]
            q = xt @ self.Wq[h, :rq].T; k = xt @ self.Wk[h, :rq].T; v = x @ self.Wv[h, :rv].T + self.bv[h, :rv]
            p = (q @ k.transpose(-2, -1) * dh ** -0.5).softmax(-1)
            out = out + (p @ v) @ self.Wo[h, :, :rv].T
        return out

class LR(nn.Module):
    def __init__(self, lin, C):
        super().__init__()
        W = lin.weight.detach().double()
        U = torch.linalg.svd(W @ psd_sqrt(C), full_matrices=False)[0]
        self.A = nn.Parameter(U.float().contiguous()); self.B = nn.Parameter((U.T @ W).float().contiguous())
        self.bias = nn.Parameter(lin.bias.detach().clone()); self.W = lin.weight.detach().clone()
        self.r = None  # None = dense
    def forward(self, x):
        if self.r is None: return F.linear(x, self.W, self.bias)
        return F.linear(F.linear(x, self.B[:self.r]), self.A[:, :self.r], self.bias)

m = torch_vit.load_model(M).eval()
with torch.no_grad():
    for i, b in enumerate(m.blocks):
        b.attn = Attn(b.attn, stats[i]); b.mlp.fc1 = LR(b.mlp.fc1, stats[i]["fc1"]); b.mlp.fc2 = LR(b.mlp.fc2, stats[i]["fc2"])
total = sum(p.numel() for p in ref.parameters())
# items: (kind, block, head/name); cost in parameters of a rank
def cost(kind, r):
    if kind == "qk": return 2 * r * (dim + 1)
    if kind == "ov": return r * (dim + 1) + dim * r
    return dim * 4 * dim if r is None else r * 5 * dim
def get(it): b = m.blocks[it[1]]; return b.attn.rq[it[2]] if it[0] == "qk" else b.attn.rv[it[2]] if it[0] == "ov" else getattr(b.mlp, it[2]).r
def put(it, r):
    b = m.blocks[it[1]]
    if it[0] == "qk": b.attn.rq[it[2]] = r
    elif it[0] == "ov": b.attn.rv[it[2]] = r
    else: getattr(b.mlp, it[2]).r = r
full = {"qk": dh, "ov": dh, "fc": None}
probes = {"qk": [48, 40, 32, 24, 16, 8], "ov": [56, 48, 40, 32, 24, 16], "fc": [144, 128, 112, 96, 80, 64, 48, 32]}
items = []
for i in range(12):
    if which in ("all", "attn"): items += [("qk", i, h) for h in range(H)] + [("ov", i, h) for h in range(H)]
    if which in ("all", "fc"): items += [("fc", i, "fc1"), ("fc", i, "fc2")]
def params_now():
    p = total
    for it in items: p += cost(it[0], get(it)) - cost(it[0], full[it[0]])
    return p
def fwd_blocks(model, x, first=0):
    for b in model.blocks[first:]: x = b(x)
    x = model.norm(x); return model.head(x[:, 0])
P = Xc[:16]
with torch.no_grad():
    x = ref.patch_embed(P); x = torch.cat([ref.cls_token.expand(16, -1, -1), x], 1) + ref.pos_embed
    block_in = [x]
    for b in ref.blocks: x = b(x); block_in.append(x)
    Tlog = F.log_softmax(ref.head(ref.norm(x)[:, 0]), -1)
def kl_now(first):
    with torch.no_grad():
        lo = F.log_softmax(fwd_blocks(m, block_in[first], first), -1)
    return F.kl_div(lo, Tlog, log_target=True, reduction="batchmean").item()
table = {}
for it in items:
    for r in probes[it[0]]:
        put(it, r); table[(it, r)] = kl_now(it[1])
    put(it, full[it[0]])
print(f"probes {len(table)} ({time.time() - t0:.0f}s)", flush=True)
# greedy: smallest increase in (summed single-item) KL per parameter saved, one probe step at a time
target = frac * total
state = {it: -1 for it in items}  # index into probes, -1 = full
while params_now() > target:
    best = None
    for it in items:
        j = state[it] + 1
        if j >= len(probes[it[0]]): continue
        r = probes[it[0]][j]; rc = get(it)
        saved = cost(it[0], rc) - cost(it[0], r)
        if saved <= 0: continue
        dk = table[(it, r)] - (table[(it, rc)] if state[it] >= 0 else 0.0)
        e = max(dk, 1e-9) / saved
        if best is None or e < best[0]: best = (e, it, r)
    if best is None: break
    state[best[1]] = state[best[1]] + 1; put(best[1], best[2])
alloc = {}
for it in items: alloc.setdefault((it[0], it[2] if it[0] == "fc" else "h"), []).append(get(it))
for k in sorted(alloc, key=str): print(k, alloc[k])
def evaluate(tag):
    with torch.no_grad():
        lo = torch.cat([m(Xe[i:i + 64]) for i in range(0, len(Xe), 64)])
        lr_ = torch.cat([ref(Xe[i:i + 64]) for i in range(0, len(Xe), 64)])
    kl = F.kl_div(F.log_softmax(lo, -1), F.log_softmax(lr_, -1), log_target=True, reduction="batchmean").item()
    print(f"{tag} frac {frac} items {which}: params {params_now()} ({params_now() / total * 100:.2f} %) top1 "
          f"{(lo.argmax(-1) == Ye).float().mean().item() * 100:.2f} kl {kl:.4f} probe-kl {kl_now(0):.4f} ({time.time() - t0:.0f}s)", flush=True)
evaluate("greedy")
if steps:
    with torch.no_grad():
        x_c = ref.patch_embed(Xc); x_c = torch.cat([ref.cls_token.expand(len(Xc), -1, -1), x_c], 1) + ref.pos_embed
    for i, (b, bf) in enumerate(zip(m.blocks, ref.blocks)):
        with torch.no_grad(): tgt = bf(x_c)
        ps = [p for n, p in b.named_parameters() if not n.endswith(".W")]
        opt = torch.optim.Adam(ps, lr=1e-4); sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for s in range(steps):
            idx = torch.randint(0, len(Xc), (32,))
            loss = F.mse_loss(b(x_c[idx]), tgt[idx])
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        with torch.no_grad(): x_c = b(x_c)
        print(f"block {i} loss {loss.item():.4g} ({time.time() - t0:.0f}s)", flush=True)
    evaluate(f"refine{steps}")
