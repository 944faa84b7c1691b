#!/usr/bin/python3
"""Independent accuracy reference: PIL + numpy timm-style preprocessing and the plain PyTorch ViT
of torch_vit.py. Prints top-1/top-5 on a split.

  torch_eval.py MODEL_DIR DATA_DIR SPLIT_FILE
"""
import json
import math
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from torch_vit import load_model  # noqa: E402


def preprocess(path, cfg):
    size = cfg["input_size"][-1]
    scale = math.floor(size / cfg["crop_pct"])
    img = Image.open(path).convert("RGB")
    w, h = img.size
    # torchvision Resize(int): short side -> scale, long side -> int(scale * long / short)
    if w <= h:
        nw, nh = scale, int(scale * h / w)
    else:
        nw, nh = int(scale * w / h), scale
    img = img.resize((nw, nh), {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[cfg["interpolation"]])
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array(cfg["mean"], np.float32)) / np.array(cfg["std"], np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def main(model_dir, data, split):
    torch.set_num_threads(2)
    cfg = json.load(open(f"{model_dir}/config.json"))["pretrained_cfg"]
    wnids = [l.split()[0] for l in open(f"{data}/classes.txt")]
    files = [l.strip() for l in open(split) if l.strip()]
    model = load_model(model_dir)
    c1 = c5 = 0
    for i in range(0, len(files), 32):
        chunk = files[i:i + 32]
        x = torch.stack([preprocess(f"{data}/{f}", cfg) for f in chunk])
        with torch.no_grad():
            top = model(x).topk(5, dim=1).indices
        for f, t in zip(chunk, top.tolist()):
            label = wnids.index(f.split("_")[0])
            c1 += t[0] == label
            c5 += label in t
    n = len(files)
    print(json.dumps({"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "images": n}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
