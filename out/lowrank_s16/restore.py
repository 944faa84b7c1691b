# Diagnostic: a compressed model with block B put back as in the original model (every tensor of
# blocks.B.*, full head widths), to see how much of the compressed model's KL each block carries.
# /usr/bin/python3 restore.py COMPRESSED ORIGINAL B OUT
import json, os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../tests/ref'))
from torch_vit import read_safetensors, write_safetensors

comp, orig, B, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c, o = read_safetensors(comp + '/model.safetensors'), read_safetensors(orig + '/model.safetensors')
p = f'blocks.{B}.'
c = {k: v for k, v in c.items() if not k.startswith(p)}
c.update({k: v for k, v in o.items() if k.startswith(p)})
cfg = json.load(open(comp + '/config.json'))
cfg['pruning']['blocks'][B] = {'qk_dim': [64, 64, 64], 'v_dim': [64, 64, 64]}
os.makedirs(out, exist_ok=True)
write_safetensors(out + '/model.safetensors', c)
json.dump(cfg, open(out + '/config.json', 'w'), indent=1)
