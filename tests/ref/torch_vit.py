#!/usr/bin/python3
"""Independent PyTorch reference for vitshrink's ViT/DeiT (written from timm's published
architecture, not from vitshrink's code). Used by the tests and benchmarks.

  torch_vit.py make ARCH OUTDIR [--seed S] [--pool avg]   random-init model -> OUTDIR/{config.json,model.safetensors}
                                                          and OUTDIR/pth/model.pth (torch.save of the same state_dict, fp16)
  torch_vit.py forward MODEL_DIR INPUT.bin OUT.bin  logits of a [B,3,S,S] float32 input (raw, shape in INPUT.bin.json)
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}


def arch_config(arch):
    family, size, *rest = arch.split("_")
    distilled = "distilled" in rest
    patch = int([r for r in rest if r.startswith("patch")][0][5:])
    img = int(rest[-1])
    dim, depth, heads = SIZES[size]
    vit = family == "vit"
    return {
        "architecture": arch,
        "num_classes": 1000,
        "global_pool": "token",
        "model_args": {"patch_size": patch, "embed_dim": dim, "depth": depth, "num_heads": heads,
                       "mlp_ratio": 4.0, "img_size": img},
        "pretrained_cfg": {"input_size": [3, img, img], "interpolation": "bicubic",
                           "crop_pct": (0.9 if vit else 0.875) if img <= 224 else 1.0,
                           "mean": [0.5] * 3 if vit else [0.485, 0.456, 0.406],
                           "std": [0.5] * 3 if vit else [0.229, 0.224, 0.225], "num_classes": 1000},
        "distilled": distilled,
    }


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        a = cfg["model_args"]
        dim, img, patch = a["embed_dim"], a["img_size"], a["patch_size"]
        self.distilled = cfg.get("distilled", False) or "distilled" in cfg["architecture"]
        prefix = 2 if self.distilled else 1
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if self.distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img // patch) ** 2 + prefix, dim))
        self.blocks = nn.Sequential(*[Block(dim, a["num_heads"], a.get("mlp_ratio", 4.0))
                                      for _ in range(a["depth"])])
        self.avg = cfg.get("global_pool") == "avg"
        if self.avg:  # timm: mean of the patch tokens, then fc_norm (norm is Identity)
            self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, cfg["num_classes"])
        if self.distilled:
            self.head_dist = nn.Linear(dim, cfg["num_classes"])

    def forward(self, x):
        x = self.patch_embed(x)
        tok = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.distilled:
            tok.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = torch.cat(tok + [x], dim=1) + self.pos_embed
        x = self.blocks(x)
        if self.avg:
            return self.head(self.fc_norm(x[:, 1 + int(self.distilled):].mean(dim=1)))
        x = self.norm(x)
        if self.distilled:
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        return self.head(x[:, 0])


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.float32).reshape(info["shape"]).copy())
    return out


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = tensors[name].detach().contiguous().float().numpy()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def load_model(model_dir):
    cfg = json.load(open(f"{model_dir}/config.json"))
    m = ViT(cfg)
    m.load_state_dict(read_safetensors(f"{model_dir}/model.safetensors"))
    return m.eval()


def make(arch, out, seed, pool="token"):
    import os
    torch.manual_seed(seed)
    cfg = arch_config(arch)
    cfg["global_pool"] = pool
    cfg["model_args"]["global_pool"] = pool
    m = ViT(cfg)
    # Non-trivial values everywhere (LayerNorm gammas and biases too), so that a wrong index or
    # a missing term shows up in the logits.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name in ("norm.weight", "fc_norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() >= 2 and "token" not in name and "pos_embed" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    os.makedirs(out, exist_ok=True)
    cfg.pop("distilled")
    json.dump(cfg, open(f"{out}/config.json", "w"), indent=2)
    write_safetensors(f"{out}/model.safetensors", m.state_dict())
    # The same weights as a PyTorch training checkpoint in fp16 (nested under "model"), for the
    # .pth loader; its logits are compared with those of the fp16-rounded weights.
    os.makedirs(f"{out}/pth", exist_ok=True)
    torch.save({"model": {k: v.half() for k, v in m.state_dict().items()}, "epoch": 7}, f"{out}/pth/model.pth")


def forward(model_dir, inp, out):
    torch.set_num_threads(2)
    shape = json.load(open(inp + ".json"))["shape"]
    x = torch.from_numpy(np.fromfile(inp, dtype=np.float32).reshape(shape))
    with torch.no_grad():
        y = load_model(model_dir)(x)
    y.numpy().astype(np.float32).tofile(out)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        args = sys.argv[4:]
        opt = lambda k, d: args[args.index(k) + 1] if k in args else d
        make(sys.argv[2], sys.argv[3], int(opt("--seed", 0)), opt("--pool", "token"))
    elif cmd == "forward":
        forward(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
