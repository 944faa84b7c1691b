#!/usr/bin/python3
"""Writes the torch.save fixtures for tests/test_pth.cpp into OUTDIR, plus expected.json:
{file: {tensor name: {"shape": [...], "dtype": "F32"|"I64"|..., "values": [...]}}} with the
values torch itself reports (f16/bf16/f64 via .float(), so the C++ conversion must be exact).

Exit status 77 means torch is unavailable (the C++ test skips).
Usage: /usr/bin/python3 make_pth_fixtures.py OUTDIR [MARKER]
(MARKER: the file the malicious fixtures would create if a loader ever executed them.)
"""
import argparse
import builtins
import collections
import json
import os
import struct
import sys
import zipfile

try:
    import torch
except ImportError:
    sys.exit(77)

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
expected = {}

# Element type each torch dtype has after loading (floats become F32; int16 widens, bool -> U8).
OUT_DTYPE = {torch.float32: "F32", torch.float16: "F32", torch.bfloat16: "F32",
             torch.float64: "F32", torch.int64: "I64", torch.int32: "I32", torch.int16: "I32",
             torch.int8: "I8", torch.uint8: "U8", torch.bool: "U8"}


def describe(sd):
    res = {}
    for k, t in sd.items():
        if not isinstance(t, torch.Tensor):
            continue
        vals = t.float() if t.is_floating_point() else t.long()
        res[k] = {"shape": list(t.shape), "dtype": OUT_DTYPE[t.dtype],
                  "values": vals.flatten().tolist()}
    return res


def save(name, obj, sd=None, **kw):
    torch.save(obj, os.path.join(out, name), **kw)
    if sd is not None:
        expected[name] = describe(sd)


def rewrite(src, dst, change):
    """Copies zip SRC to DST; change(name, bytes) returns new bytes or None to drop the entry."""
    with zipfile.ZipFile(os.path.join(out, src)) as zin, \
            zipfile.ZipFile(os.path.join(out, dst), "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)


def pkl_name(src):
    with zipfile.ZipFile(os.path.join(out, src)) as z:
        return next(n for n in z.namelist() if n.endswith("/data.pkl"))


# --- valid checkpoints -------------------------------------------------------------------------
plain = collections.OrderedDict()
plain["w32"] = torch.randn(3, 4)
plain["w16"] = (torch.randn(5) * 100).half()
plain["wbf"] = torch.randn(2, 3).bfloat16()
plain["scalar"] = torch.tensor(2.5)
plain["empty"] = torch.zeros(0, 3)
plain["tiny16"] = torch.tensor([6e-8, -1e-5, 65504.0, 0.0, -0.0]).half()  # subnormals, max, -0
save("plain.pth", plain, plain)

base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
views = {
    "t": base.t(),                                  # strides (1, 6)
    "s": base[1:3, ::2],                            # offset 6, strides (6, 2)
    "col": base[:, 5],                              # offset 5, stride 6
    "h16t": torch.randn(3, 5).half().t(),
    "p3": torch.randn(2, 3, 4).permute(2, 0, 1),
    "expand": torch.arange(4.0).expand(3, 4),       # stride 0
}
save("views.pth", views, views)

shared_base = torch.randn(10)
shared = {"a": shared_base[:6].view(2, 3), "b": shared_base[4:], "c": shared_base}
save("shared.pth", shared, shared)

save("nested_model.pth", {"model": plain, "epoch": 3}, plain)

net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
net(torch.randn(8, 4))  # training-mode forward: running stats move, num_batches_tracked = 1
opt = torch.optim.Adam(net.parameters())
net(torch.randn(8, 4)).sum().backward()
opt.step()
msd = net.state_dict()
ckpt = {"epoch": 7, "arch": "vit", "state_dict": msd, "optimizer": opt.state_dict(),
        "args": argparse.Namespace(lr=0.1, model="vit"), "version": torch.__version__,
        "metric": 81.5, "dtype": torch.float16, "big": 2 ** 70, "raw": b"\x00\x01"}
try:  # training scripts often store numpy scalars / arrays next to the weights
    import numpy
    ckpt["best_acc"] = numpy.float64(0.5)
    ckpt["hist"] = numpy.arange(3)
except ImportError:
    pass
save("nested_state_dict.pth", ckpt, msd)

ints = {"i64": torch.tensor([-(2 ** 40), 0, 2 ** 62]), "i32": torch.tensor([-5, 7], dtype=torch.int32),
        "i16": torch.tensor([[-300, 2], [3, 32767]], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8), "b": torch.tensor([True, False, True]),
        "f64": torch.tensor([1.0 / 3.0, 1e30, -2.5], dtype=torch.float64),
        "param": torch.nn.Parameter(torch.randn(2, 2))}
save("ints.pth", ints, ints)

save("proto4.pth", plain, plain, pickle_protocol=4)

# Python's zipfile layout (other prefix, deflate compression) must read the same.
with zipfile.ZipFile(os.path.join(out, "plain.pth")) as zin, \
        zipfile.ZipFile(os.path.join(out, "deflated.pth"), "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        zout.writestr("archive/" + info.filename.split("/", 1)[1], zin.read(info))
expected["deflated.pth"] = expected["plain.pth"]

# Big-endian: newer torch writes PREFIX/byteorder; emulate a big-endian writer.
be = {"w": torch.randn(2, 3), "h": torch.randn(3).half(), "n": torch.tensor([1, -2])}
save("be_src.pth", be)
# torch.save numbers storages "0", "1", ... in the order it meets them: here dict order.
elsize = {str(i): t.element_size() for i, t in enumerate(be.values())}


def to_big(name, data):
    parts = name.split("/")
    if len(parts) == 3 and parts[1] == "data":
        n = elsize[parts[2]]
        assert len(data) == n * list(be.values())[int(parts[2])].numel()
        return b"".join(data[i:i + n][::-1] for i in range(0, len(data), n))
    return data


rewrite("be_src.pth", "bigendian.pth", to_big)
with zipfile.ZipFile(os.path.join(out, "bigendian.pth"), "a") as z:
    z.writestr("be_src/byteorder", "big")
expected["bigendian.pth"] = describe(be)

# --- bad input ---------------------------------------------------------------------------------
marker = sys.argv[2] if len(sys.argv) > 2 else os.path.join(out, "PWNED")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + marker,))


class EvilEval:
    def __reduce__(self):
        return (builtins.eval, ("__import__('os').system('touch %s')" % marker,))


save("evil_system.pth", {"w": torch.randn(2), "x": Evil()})
save("evil_eval.pth", {"w": torch.randn(2), "x": EvilEval()})
save("evil_proto4.pth", {"x": Evil()}, pickle_protocol=4)

save("legacy.pth", plain, _use_new_zipfile_serialization=False)
with open(os.path.join(out, "plain.pth"), "rb") as f:
    blob = f.read()
with open(os.path.join(out, "truncated.pth"), "wb") as f:
    f.write(blob[: len(blob) // 2])
with open(os.path.join(out, "garbage.pth"), "wb") as f:
    f.write(b"hello, not a checkpoint\n")
# Flip a byte inside w32's storage: the zip CRC must catch it.
w32 = struct.pack("<%df" % plain["w32"].numel(), *plain["w32"].flatten().tolist())
at = blob.index(w32) + 5
with open(os.path.join(out, "crc.pth"), "wb") as f:
    f.write(blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1:])

rewrite("plain.pth", "no_pkl.pth", lambda n, d: None if n.endswith("data.pkl") else d)
rewrite("plain.pth", "missing_storage.pth", lambda n, d: None if n.endswith("/data/0") else d)
rewrite("plain.pth", "small_storage.pth", lambda n, d: d[:8] if n.endswith("/data/0") else d)
save("complex.pth", {"c": torch.randn(2, dtype=torch.cfloat)})
save("list_top.pth", [torch.randn(2)])
save("no_tensors.pth", {"epoch": 3, "arch": "vit"})
rewrite("plain.pth", "bad_opcode.pth",
        lambda n, d: b"\x80\x02I42\n." if n.endswith("data.pkl") else d)
rewrite("plain.pth", "bad_memo.pth",
        lambda n, d: b"\x80\x02}q\x00h\x07." if n.endswith("data.pkl") else d)
rewrite("plain.pth", "no_stop.pth",
        lambda n, d: d[:-1] if n.endswith("data.pkl") else d)

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f, allow_nan=False)
