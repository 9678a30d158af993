"""safetensors_reader.py: an independent reader of safetensors files (struct + json + numpy,
checked through torch), used by tests/io/test_safetensors.c to check that tutor's writer
produces what Hugging Face expects and that tutor's reader sees what Python sees.

  safetensors_reader.py summary FILE.. -> JSON list, one per file: metadata, header order,
                                          per tensor dtype, shape, all values, sum
Exits with status 77 (the test is skipped) when numpy or torch cannot be imported.
  safetensors_reader.py f16table OUT   -> OUT: the 65536 half-precision bit patterns as f32
  safetensors_reader.py torchsave OUT  -> OUT: a pytorch_model.bin as torch.save writes it
"""
import json
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError:
    sys.exit(77)

NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
         "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
        "I8": 1, "U8": 1, "BOOL": 1}


def read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header_bytes = raw[8:8 + n]
    # What Hugging Face's writer guarantees and transformers relies on.
    assert n % 8 == 0, "header length %d is not a multiple of 8" % n
    text = header_bytes.decode("utf-8")
    assert text.rstrip(" ").endswith("}"), "header must be JSON padded with spaces"
    pairs = json.loads(text, object_pairs_hook=lambda kv: kv)
    header = dict(pairs)
    assert len(header) == len(pairs), "duplicate keys"
    meta = header.pop("__metadata__", None)
    assert meta is not None and dict(meta).get("format") == "pt", "__metadata__.format != pt"
    data = raw[8 + n:]
    order = [k for k, _ in pairs if k != "__metadata__"]
    spans = sorted((tuple(dict(header[k])["data_offsets"]), k) for k in order)
    at = 0
    for (b, e), k in spans:
        assert b == at, "tensor %s starts at %d, expected %d" % (k, b, at)
        at = e
    assert at == len(data), "data section %d bytes, tensors cover %d" % (len(data), at)
    out = {}
    for k in order:
        info = dict(header[k])
        dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        assert e - b == count * SIZE[dtype], "size of %s" % k
        buf = data[b:e]
        if dtype == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=NUMPY[dtype])
        # Through torch, as transformers would hold it.
        t = torch.from_numpy(arr.copy()).reshape(shape)
        assert list(t.shape) == list(shape)
        flat = t.reshape(-1)
        values = [bool(v) if dtype == "BOOL" else v for v in flat.tolist()]
        out[k] = {"dtype": dtype, "shape": shape, "values": values,
                  "sum": float(flat.to(torch.float64).sum()) if count else 0.0,
                  "aligned": (8 + n + b) % SIZE[dtype] == 0}
    return {"metadata": dict(meta), "order": order, "tensors": out}


def main():
    if sys.argv[1] == "summary":
        json.dump([read(path) for path in sys.argv[2:]], sys.stdout, allow_nan=False)
    elif sys.argv[1] == "f16table":
        bits = np.arange(65536, dtype=np.uint16)
        open(sys.argv[2], "wb").write(bits.view(np.float16).astype(np.float32).tobytes())
    elif sys.argv[1] == "torchsave":
        torch.save({"w": torch.zeros(3)}, sys.argv[2])
    else:
        sys.exit("unknown mode " + sys.argv[1])


if __name__ == "__main__":
    main()
