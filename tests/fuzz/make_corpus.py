#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (tests/fuzz/corpus/<target>/): small valid inputs of every
kind each reader takes, plus a few near-misses, so that fuzzing starts from real structure.
Plain Python (struct, json, gzip): no safetensors or numpy needed. Rerun after changing it;
the outputs are committed.

    python3 tests/fuzz/make_corpus.py
"""
import gzip
import json
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "corpus")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


SIZES = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "U8": 1, "BOOL": 1}


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes) in order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def f64(*v):
    return struct.pack("<%dd" % len(v), *v)


# ---- safetensors ---------------------------------------------------------------------------------
put("safetensors", "empty", safetensors([]))
put("safetensors", "one_f32", safetensors([("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6))]))
put("safetensors", "every_dtype", safetensors(
    [(dt.lower(), dt, [2], bytes(range(1, 1 + 2 * SIZES[dt])) if dt != "BOOL" else b"\x00\x01") for dt in SIZES],
    {"format": "pt", "note": "caf\u00e9"}))
put("safetensors", "scalar_and_empty", safetensors([("s", "F64", [], f64(3.5)), ("e", "I64", [0, 4], b"")]))
put("safetensors", "escapes", safetensors([("a\\\"b\u00e9\U0001F600", "U8", [1], b"\x07")], {"k\n": "v\t\u0001"}))
put("safetensors", "near_miss_wrap", struct.pack("<Q", 80) +
    b'{"w":{"dtype":"F64","shape":[2305843009213693953],"data_offsets":[0,8]}}'.ljust(80) + b"\0" * 8)

# ---- JSON ------------------------------------------------------------------------------------------
for i, doc in enumerate([
        b'{}', b'[]', b'{"a":[1,-2,3.5e2,true,false,null],"s":"q\\"\\\\\\n\\u00e9\\ud83d\\ude00"}',
        b'{"big":9007199254740993,"neg":-9223372036854775808,"f":1e-300,"g":-0.0}',
        b'[[[[[[[[[[1]]]]]]]]]]', b'{"a":{"b":{"c":"d"}},"e":[{},[],""]}',
        '{"k":"caf\u00e9 \u20ac \U0001F600"}'.encode(), b' \t\n{ "x" : [ 1 , 2 ] } \r\n']):
    put("json", "doc%d" % i, doc)

# ---- IDX: the first byte picks plain (even) or gzip-compressed-by-the-target (odd) ---------------


def idx(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">i", d) for d in dims) + payload


samples = {
    "u8": idx(0x08, [2, 3], bytes(range(6))),
    "i8": idx(0x09, [3], b"\x80\x00\x7f"),
    "i16": idx(0x0B, [2], struct.pack(">hh", -300, 300)),
    "i32": idx(0x0C, [2], struct.pack(">ii", -5, 100000)),
    "f32": idx(0x0D, [2, 2], struct.pack(">4f", 1, -2.5, 1e-3, 7)),
    "f64": idx(0x0E, [1], struct.pack(">d", 3.25)),
    "mnist_like": idx(0x08, [2, 4, 4], bytes((i * 37) % 256 for i in range(32))),
}
for name, b in samples.items():
    put("idx", "plain_" + name, b"\x00" + b)
    put("idx", "deflate_" + name, b"\x01" + b)
    put("idx", "gz_" + name, b"\x00" + gzip.compress(b, mtime=0))
# bit 1 of the first byte: read through a file rather than from memory
put("idx", "file_u8", b"\x02" + samples["u8"])
put("idx", "file_gz_f32", b"\x02" + gzip.compress(samples["f32"], mtime=0))

# ---- CIFAR-10: 3073-byte records (label, then R, G, B planes of 32x32); first byte as for IDX ------


def cifar(labels):
    return b"".join(bytes([lab]) + bytes((i * 31 + k) % 256 for k in range(3072)) for i, lab in enumerate(labels))


for name, b in {"one": cifar([3]), "three": cifar([0, 9, 5])}.items():
    put("cifar", "plain_" + name, b"\x00" + b)
    put("cifar", "deflate_" + name, b"\x01" + b)
    put("cifar", "gz_" + name, b"\x00" + gzip.compress(b, mtime=0))
put("cifar", "file_one", b"\x02" + cifar([3]))
put("cifar", "file_deflate_three", b"\x03" + cifar([0, 9, 5]))

# ---- checkpoints: the target's model (Linear(3,4), ReLU, Linear(4,2)), Adam and StepLR ------------
params = [("0.weight", [4, 3]), ("0.bias", [4]), ("2.weight", [2, 4]), ("2.bias", [2])]
tensors = []
for name, shape in params:
    n = 1
    for s in shape:
        n *= s
    tensors.append(("model." + name, "F32", shape, f32(*[0.1 * (k + 1) for k in range(n)])))
for i, (name, shape) in enumerate(params):
    n = 1
    for s in shape:
        n *= s
    tensors.append(("optimizer.state.%d.step" % i, "F64", [], f64(2)))
    tensors.append(("optimizer.state.%d.exp_avg" % i, "F32", shape, f32(*[0.01] * n)))
    tensors.append(("optimizer.state.%d.exp_avg_sq" % i, "F32", shape, f32(*[0.001] * n)))
for opt, v in [("lr", 0.005), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8), ("weight_decay", 0.0),
               ("amsgrad", 0.0), ("fused", 0.0)]:
    tensors.append(("optimizer.param_groups.0." + opt, "F64", [], f64(v)))
tensors.append(("scheduler.last_epoch", "F64", [], f64(2)))
tensors.append(("scheduler.base_lrs.0", "F64", [], f64(0.01)))
meta = {"format": "nabla.checkpoint.v1", "step": "2"}
put("checkpoint", "adam_steplr", safetensors(tensors, meta))
put("checkpoint", "model_only", safetensors(tensors[:4], meta))
put("checkpoint", "amsgrad", safetensors([t if t[0] != "optimizer.param_groups.0.amsgrad" else (t[0], "F64", [], f64(1))
                                          for t in tensors], meta))
print("corpus written under", root)
