# Replays MPTQ-ViT's greedy rule on a knapsack run's isolated cost table (config.json: sensitivity) and
# compares with the knapsack's choice: `python3 out/ptq_s12/replay_greedy.py MODEL_DIR...`
import json,sys
for d in sys.argv[1:]:
    c=json.load(open(d+'/config.json'))
    mp=c['quantization']['mixed_precision'] if 'quantization' in c else None
    if mp is None:
        # search
        def find(o):
            if isinstance(o,dict):
                if 'mixed_precision' in o and isinstance(o['mixed_precision'],dict): return o['mixed_precision']
                for v in o.values():
                    r=find(v)
                    if r: return r
        mp=find(c)
    sens=mp['sensitivity']; chosen=mp.get('isolated', mp.get('knapsack'))['chosen']
    names=list(sens.keys())
    # weights: macs per row = in*out; derive from layer name
    def w(n):
        base=n.split(' ')[0]
        if 'qkv' in base: return 192*576
        if 'proj' in base: return 192*192
        if 'fc1' in base or 'fc2' in base: return 192*768
    groups={}
    for n in names:
        g=n.split(' ')[1] if ' ' in n else 'all'
        groups.setdefault(g,[]).append(n)
    cands=sorted(int(k) for k in sens[names[0]])
    bits={n:cands[-1] for n in names}
    tot={g:sum(w(n) for n in ns) for g,ns in groups.items()}
    def avg(g): return sum(bits[n]*w(n) for n in groups[g])/tot[g]
    for g,ns in groups.items():
        while avg(g)>5.0+1e-12:
            best=None
            for n in ns:
                i=cands.index(bits[n])
                if i==0: continue
                lo=cands[i-1]
                sc=(sens[n][str(lo)]-sens[n][str(bits[n])])/((bits[n]-lo)*w(n))
                if best is None or sc<best[0]: best=(sc,n,lo)
            bits[best[1]]=best[2]
    pred_g=sum(sens[n][str(bits[n])] for n in names)
    pred_k=sum(sens[n][str(chosen[n])] for n in names)
    pred_u=sum(sens[n]['5'] for n in names)
    diff=sum(bits[n]!=chosen[n] for n in names)
    print(d, 'greedy pred %.4f knap pred %.4f uniform %.4f; items differing %d/%d; avg'%(pred_g,pred_k,pred_u,diff,len(names)), {g:round(avg(g),3) for g in groups})
