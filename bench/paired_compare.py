#!/usr/bin/env python3
"""Is model A better than model B, or is the difference noise? Image-by-image comparison of two
`vitshrink eval --report` files made on the same images (with --reference for the KL part).

Two top-1 accuracies on 872 images differ by ~0.75 point between models that differ only by noise,
so their difference alone says little. Paired on the same images, the noise shared by both
models cancels:
- top-1: the images only one model gets right (discordant pairs) and McNemar's exact two-sided
  p-value (binomial test on them);
- KL to the reference: the mean per-image difference B - A with its standard error, the ratio
  (mean B - mean A) / SE, and the share of images where A's KL is lower.

usage: bench/paired_compare.py A.eval.json B.eval.json [--json OUT]
"""
import argparse
import json
import math
import sys


def load(path):
    with open(path) as f:
        r = json.load(f)
    if "per_image" not in r:
        sys.exit(f"{path}: no per_image results (made by an older vitshrink eval?)")
    return r


def mcnemar_p(b, c):
    """Exact two-sided McNemar p-value: binomial(b + c, 1/2) at least as extreme as min(b, c)."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def compare(a, b):
    ia, ib = a["per_image"], b["per_image"]
    names_a, names_b = [r["image"] for r in ia], [r["image"] for r in ib]
    if names_a != names_b:
        sys.exit("the two reports are not on the same images in the same order")
    n = len(ia)
    only_a = sum(1 for x, y in zip(ia, ib) if x["top1"] and not y["top1"])
    only_b = sum(1 for x, y in zip(ia, ib) if y["top1"] and not x["top1"])
    out = {
        "images": n,
        "top1": {"a": 100.0 * sum(r["top1"] for r in ia) / n, "b": 100.0 * sum(r["top1"] for r in ib) / n,
                 "only_a_right": only_a, "only_b_right": only_b, "mcnemar_p": mcnemar_p(only_a, only_b)},
    }
    if all("kl" in r for r in ia + ib):
        d = [y["kl"] - x["kl"] for x, y in zip(ia, ib)]
        mean = sum(d) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1)) if n > 1 else 0.0
        se = sd / math.sqrt(n) if n > 0 else 0.0
        out["kl"] = {"a": sum(r["kl"] for r in ia) / n, "b": sum(r["kl"] for r in ib) / n,
                     "b_minus_a": mean, "se": se, "z": mean / se if se > 0 else 0.0,
                     "share_a_lower": sum(1 for v in d if v > 0) / n}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", help="also write the comparison here")
    args = p.parse_args()
    r = compare(load(args.a), load(args.b))
    t = r["top1"]
    print(f"{r['images']} images")
    print(f"top-1  A {t['a']:.2f}  B {t['b']:.2f}  only A right {t['only_a_right']}  only B right "
          f"{t['only_b_right']}  McNemar p {t['mcnemar_p']:.3f}")
    if "kl" in r:
        k = r["kl"]
        print(f"KL     A {k['a']:.5f}  B {k['b']:.5f}  B - A {k['b_minus_a']:+.5f} +- {k['se']:.5f} (SE)  "
              f"z {k['z']:+.2f}  A lower on {100 * k['share_a_lower']:.1f}% of images")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
