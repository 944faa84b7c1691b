#!/usr/bin/python3
"""Reference outputs from PIL + numpy for tests/test_image.cpp.

timm's eval transform is torchvision's Resize(scale_size) -> CenterCrop(size) -> ToTensor ->
Normalize on a PIL image opened with Image.open(path).convert("RGB"). torchvision is not needed:
its PIL code paths are restated below (torchvision 0.13+, functional._compute_resized_output_size,
functional.center_crop, to_tensor, normalize).

Subcommands (all outputs little-endian, written to --out):
  preprocess  float32 [N, 3, S, S] for N images.
  decode      per image: int32 width, height, channels, then the pixels of convert(--mode);
              width = height = channels = 0 where PIL cannot open or load the file.
  resize      per size WxH in --sizes: the pixels of Image.resize((W, H), filter) of one image
              (converted to --mode), concatenated.
  fixtures    writes PNG and JPEG variants (bit depths, palettes, alpha, interlacing, CMYK,
              progressive, subsampling) of a synthetic image into a directory.
"""
import argparse
import math
import struct
import sys
import zlib

import numpy as np
from PIL import Image

FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def tv_resize(img, size, interpolation):
    # torchvision Resize(int): short side -> size, long side -> int(size * long / short).
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), interpolation)


def tv_center_crop(img, crop):
    # torchvision CenterCrop: zero-pad when smaller, then offsets int(round((dim - crop) / 2.0)).
    w, h = img.size
    if crop > w or crop > h:
        left = (crop - w) // 2 if crop > w else 0
        top = (crop - h) // 2 if crop > h else 0
        right = (crop - w + 1) // 2 if crop > w else 0
        bottom = (crop - h + 1) // 2 if crop > h else 0
        padded = Image.new(img.mode, (w + left + right, h + top + bottom), 0)
        padded.paste(img, (left, top))
        img = padded
        w, h = img.size
        if (w, h) == (crop, crop):
            return img
    top = int(round((h - crop) / 2.0))
    left = int(round((w - crop) / 2.0))
    return img.crop((left, top, left + crop, top + crop))


def timm_eval(path, size, crop_pct, interpolation, mean, std):
    img = Image.open(path).convert("RGB")
    scale_size = math.floor(size / crop_pct)
    img = tv_resize(img, scale_size, FILTERS[interpolation])
    img = tv_center_crop(img, size)
    x = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255)  # ToTensor
    x = x.transpose(2, 0, 1)
    mean = np.asarray(mean, dtype=np.float32)[:, None, None]
    std = np.asarray(std, dtype=np.float32)[:, None, None]
    return (x - mean) / std  # Normalize, float32 throughout like torch


def cmd_preprocess(a):
    with open(a.out, "wb") as f:
        for p in a.images:
            x = timm_eval(p, a.size, a.crop_pct, a.interpolation, a.mean, a.std)
            f.write(np.ascontiguousarray(x, dtype="<f4").tobytes())


def cmd_decode(a):
    with open(a.out, "wb") as f:
        for p in a.images:
            try:
                img = Image.open(p).convert(a.mode)
                px = np.asarray(img, dtype=np.uint8)
            except Exception:  # PIL rejects the file: recorded as an empty image
                f.write(struct.pack("<3i", 0, 0, 0))
                continue
            f.write(struct.pack("<3i", img.width, img.height, len(img.getbands())))
            f.write(px.tobytes())


def cmd_resize(a):
    img = Image.open(a.image).convert(a.mode)
    with open(a.out, "wb") as f:
        for s in a.sizes.split(","):
            w, h = (int(v) for v in s.split("x"))
            f.write(np.asarray(img.resize((w, h), FILTERS[a.interpolation])).tobytes())


# ---- fixtures -------------------------------------------------------------------------------

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def pack_rows(a, depth):
    """Rows of samples (h, w*channels) -> bytes per row at `depth` bits, big-endian."""
    if depth == 16:
        return [r.astype(">u2").tobytes() for r in a]
    if depth == 8:
        return [r.astype(np.uint8).tobytes() for r in a]
    per = 8 // depth
    rows = []
    for r in a:
        r = np.concatenate([r, np.zeros((-len(r)) % per, r.dtype)]).reshape(-1, per).astype(int)
        shifts = [8 - depth * (i + 1) for i in range(per)]
        rows.append(bytes(int(sum(v << s for v, s in zip(g, shifts))) for g in r))
    return rows


def write_png(path, samples, color_type, depth, interlace=False, palette=None, trns=None):
    """PNG writer for what PIL cannot save (16-bit colour, sub-byte gray, Adam7 interlacing)."""
    h, w = samples.shape[:2]
    a = samples.reshape(h, w, -1)
    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = a[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for row in pack_rows(sub.reshape(sub.shape[0], -1), depth):
            raw += b"\x00" + row
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace)))
    if palette is not None:
        out += png_chunk(b"PLTE", bytes(palette))
    if trns is not None:
        out += png_chunk(b"tRNS", bytes(trns))
    out += png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def cmd_fixtures(a):
    rs = np.random.RandomState(7)
    h, w = 37, 53
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx * yy) % 256], -1).astype(np.uint8)
    rgb[5:15, 10:30] = rs.randint(0, 256, (10, 20, 3))  # texture for the JPEG encoder
    gray8 = rgb[..., 0]
    alpha8 = rs.randint(0, 256, (h, w)).astype(np.uint8)
    wide = lambda v: (v.astype(np.uint16) << 8) | rs.randint(0, 256, v.shape).astype(np.uint16)
    pal = rs.randint(0, 256, 768).astype(np.uint8)
    d = a.dir.rstrip("/") + "/"

    rgb_im = Image.fromarray(rgb)
    rgb_im.save(d + "rgb.png")
    Image.fromarray(gray8).save(d + "gray.png")
    Image.fromarray(gray8).convert("1").save(d + "bilevel.png")
    Image.fromarray(np.stack([gray8, alpha8], -1), "LA").save(d + "gray_alpha.png")
    Image.fromarray(np.dstack([rgb, alpha8])).save(d + "rgba.png")
    p = Image.fromarray(rs.randint(0, 256, (h, w)).astype(np.uint8), "P")
    p.putpalette(pal.tolist())
    p.save(d + "palette.png")
    p.save(d + "palette_trns.png", transparency=3)
    p4 = Image.fromarray(rs.randint(0, 16, (h, w)).astype(np.uint8), "P")
    p4.putpalette(pal[:48].tolist())
    p4.save(d + "palette4.png", bits=4)
    Image.fromarray(rs.randint(0, 65536, (h, w)).astype(np.uint16), "I;16").save(d + "gray16.png")
    small16 = rs.randint(0, 400, (h, w)).astype(np.uint16)  # around the clip point of mode "I"
    Image.fromarray(small16, "I;16").save(d + "gray16_small.png")
    write_png(d + "gray2.png", gray8 >> 6, 0, 2)
    write_png(d + "gray4.png", gray8 >> 4, 0, 4)
    write_png(d + "gray_trns.png", gray8, 0, 8, trns=[0, 77])
    write_png(d + "rgb16.png", wide(rgb), 2, 16)
    write_png(d + "rgba16.png", wide(np.dstack([rgb, alpha8])), 6, 16)
    write_png(d + "gray_alpha16.png", wide(np.stack([gray8, alpha8], -1)), 4, 16)
    write_png(d + "rgb_interlaced.png", rgb, 2, 8, interlace=True)
    write_png(d + "palette2_interlaced.png", rs.randint(0, 4, (h, w)), 3, 2, interlace=True,
              palette=pal[:12])

    rgb_im.save(d + "baseline.jpg", quality=90)
    rgb_im.save(d + "progressive.jpg", quality=90, progressive=True)
    rgb_im.save(d + "subsample444.jpg", quality=90, subsampling=0)
    rgb_im.save(d + "subsample422.jpg", quality=90, subsampling=1)
    Image.fromarray(gray8).save(d + "gray.jpg", quality=90)
    cmyk = np.dstack([rgb, alpha8])
    Image.fromarray(cmyk, "CMYK").save(d + "cmyk.jpg", quality=90)  # Adobe marker, inverted


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("preprocess")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--crop-pct", type=float, required=True)
    p.add_argument("--interpolation", choices=sorted(FILTERS), required=True)
    p.add_argument("--mean", type=float, nargs=3, required=True)
    p.add_argument("--std", type=float, nargs=3, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("images", nargs="+")

    p = sub.add_parser("decode")
    p.add_argument("--mode", choices=["RGB", "L"], default="RGB")
    p.add_argument("--out", required=True)
    p.add_argument("images", nargs="+")

    p = sub.add_parser("resize")
    p.add_argument("--mode", choices=["RGB", "L"], default="RGB")
    p.add_argument("--interpolation", choices=sorted(FILTERS), required=True)
    p.add_argument("--sizes", required=True, help="comma-separated WxH list")
    p.add_argument("--out", required=True)
    p.add_argument("image")

    p = sub.add_parser("fixtures")
    p.add_argument("dir")

    a = ap.parse_args()
    {"preprocess": cmd_preprocess, "decode": cmd_decode, "resize": cmd_resize,
     "fixtures": cmd_fixtures}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
