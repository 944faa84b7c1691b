# Diagnostic: a compressed model with block B put back as in the original model (every tensor of
# blocks.B.*, full head widths), to see how much of the compressed model's KL each block carries.
# python3 restore.py COMPRESSED ORIGINAL B OUT
import json, os, struct, sys
import numpy as np

def read(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == '__metadata__': continue
        assert v['dtype'] == 'F32', (k, v['dtype'])
        a, b = v['data_offsets']
        out[k] = np.frombuffer(data[a:b], dtype='<f4').reshape(v['shape'])
    return out

def write(path, tensors):
    head, off, blobs = {}, 0, []
    for k in sorted(tensors):
        b = np.ascontiguousarray(tensors[k], dtype='<f4').tobytes()
        head[k] = {'dtype': 'F32', 'shape': list(tensors[k].shape), 'data_offsets': [off, off + len(b)]}
        off += len(b); blobs.append(b)
    h = json.dumps(head).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h)
        for b in blobs: f.write(b)

comp, orig, B, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c, o = read(comp + '/model.safetensors'), read(orig + '/model.safetensors')
p = f'blocks.{B}.'
c = {k: v for k, v in c.items() if not k.startswith(p)}
c.update({k: v for k, v in o.items() if k.startswith(p)})
cfg = json.load(open(comp + '/config.json'))
cfg['pruning']['blocks'][B] = {'qk_dim': [64, 64, 64], 'v_dim': [64, 64, 64]}
os.makedirs(out, exist_ok=True)
write(out + '/model.safetensors', c)
json.dump(cfg, open(out + '/config.json', 'w'), indent=1)
