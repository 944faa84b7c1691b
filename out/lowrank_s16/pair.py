# Paired comparison of two `vitshrink eval --report` files on the same images: top-1 difference
# with its discordant counts and exact McNemar p, mean KL difference with its standard error.
# python3 pair.py A.json B.json
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
pa = {r['image']: r for r in a['per_image']}
pb = {r['image']: r for r in b['per_image']}
imgs = sorted(pa)
assert imgs == sorted(pb), 'different images'
n = len(imgs)
only_a = sum(1 for i in imgs if pa[i]['top1'] and not pb[i]['top1'])
only_b = sum(1 for i in imgs if pb[i]['top1'] and not pa[i]['top1'])
k, m = min(only_a, only_b), only_a + only_b
p = min(1.0, 2 * sum(math.comb(m, j) for j in range(k + 1)) / 2 ** m) if m else 1.0
d = [pb[i]['kl'] - pa[i]['kl'] for i in imgs]
mean = sum(d) / n
se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n)
ka = sum(pa[i]['kl'] for i in imgs) / n
print(f"top-1 {100*(only_b-only_a)/n:+.2f} (B only right {only_b}, A only right {only_a}, McNemar p {p:.2f}); "
      f"KL {ka:.4f} -> {ka+mean:.4f}: {mean:+.4f} +- {se:.4f} (SE, {100*mean/ka:+.1f} %, t {mean/se:.1f})")
