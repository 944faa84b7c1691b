# Probe: how uneven are the residual stream's channels in ViT-Ti (per-channel std of each block's output)?
import sys, torch
sys.path.insert(0, "tests/ref"); sys.path.insert(0, "out/lowrank_s13")
import torch_vit
torch.set_num_threads(2)
Xc, Xe, Ye = torch.load("out/lowrank_s13/data.pt")
m = torch_vit.load_model("../shared/models/vit_tiny_patch16_224.augreg_in21k_ft_in1k").eval()
outs = []
for b in m.blocks: b.register_forward_hook(lambda mod, i, o: outs.append(o.detach()))
with torch.no_grad(): m(Xc[:32])
for i, o in enumerate(outs):
    o = o.reshape(-1, o.shape[-1]); sd = o.std(0); var = sd ** 2
    top = var.sort(descending=True)
    print(f"block {i}: total var {var.sum():.1f}, top-3 channels {top.indices[:3].tolist()} share {top.values[:3].sum()/var.sum():.2f}, median std {sd.median():.3f}, max std {sd.max():.2f}")
o = outs[8]  # [32, 197, 192]
big = o.abs().amax(-1)
print("block 8 tokens with max |x| > 20:", int((big > 20).sum()), "of", big.numel(), "; cls max", big[:, 0].mean().item())
sd_tok = o.std(-1)
print("per-token std quantiles", torch.quantile(sd_tok.flatten(), torch.tensor([0.1, 0.5, 0.9, 0.99, 0.999])).tolist())
