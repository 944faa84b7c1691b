# Upper bound on what any per-layer bit allocation at the same average can gain over uniform 5 bit,
# in the knapsack's additive model: each item's isolated KL at 5 bits, scaled by 4^(5-b) (error ~
# 4^-b: the measured 6-bit / 5-bit ratios are ~1/4), bits continuous (any real width), average
# weighted by the items' weight counts = 5. usage: python3 bound.py CONFIG.json...
import json, math, sys
size = {'qkv': 110592, 'proj': 36864, 'fc1': 147456, 'fc2': 147456}
for path in sys.argv[1:]:
    mp = json.load(open(path))['quantization']['mixed_precision']
    groups = {}
    for name, d in mp['sensitivity'].items():
        g = name.split(' ')[1] if ' ' in name else 'tied'
        groups.setdefault(g, []).append((size[name.split(' ')[0].split('.')[-1]], max(d['5'], 1e-12)))
    total_u = total_c = 0.0
    for g, items in groups.items():
        W = sum(w for w, _ in items)
        def bits(lam):  # minimiser of d 4^(5-b) + lam w b for each item
            return [5 - math.log(lam * w / (math.log(4) * d)) / math.log(4) for w, d in items]
        lo, hi = 1e-20, 1.0
        for _ in range(400):
            mid = math.sqrt(lo * hi)
            if sum(w * b for (w, _), b in zip(items, bits(mid))) / W > 5: lo = mid
            else: hi = mid
        b = bits(hi)
        u = sum(d for _, d in items); c = sum(d * 4 ** (5 - bb) for (_, d), bb in zip(items, b))
        total_u += u; total_c += c
        print(f"{path} {g}: uniform {u:.4f} -> best continuous {c:.4f} ({100 * (1 - c / u):.1f} % lower; bits {min(b):.2f}..{max(b):.2f})")
    print(f"{path} all: {total_u:.4f} -> {total_c:.4f} ({100 * (1 - total_c / total_u):.1f} % lower); knapsack measured uniform {mp.get('isolated', mp.get('knapsack'))['kl_uniform']:.4f}")
