#!/usr/bin/env python3
"""Read a GGUF model file with the reference `gguf` package (gguf-py) and print what it sees.

    check_gguf.py MODEL.gguf [--q8-reference MODEL_F32.gguf]

Prints one JSON object: metadata (key -> {"type", "value"} with scalars and short arrays in
full, long arrays as their length), tensors (name, ggml type name, shape in PyTorch order,
byte count). With --q8-reference, every Q8_0 and Q4_0 tensor of MODEL is compared byte for byte
with gguf-py's own quantisation of the same-named F32 tensor of the reference file; the count of
matching tensors and the names of mismatching ones are reported per type.
"""
import argparse
import json
import sys

import numpy as np
import gguf


def field_value(field):
    types = field.types
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.ARRAY:
        n = len(field.data)
        if n > 64:
            return {"count": n}
        return field.contents()
    return field.contents()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--q8-reference")
    args = ap.parse_args()

    reader = gguf.GGUFReader(args.model)
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        type_names = [t.name for t in field.types]
        value = field_value(field)
        if isinstance(value, str) and len(value) > 4096:
            value = {"length": len(value), "head": value[:64]}
        metadata[key] = {"type": type_names, "value": value}
    tensors = [
        {
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(d) for d in reversed(list(t.shape))],
            "bytes": int(t.n_bytes),
            "offset": int(t.data_offset),
        }
        for t in reader.tensors
    ]
    out = {"metadata": metadata, "tensors": tensors}

    if args.q8_reference:
        reference = {t.name: t for t in gguf.GGUFReader(args.q8_reference).tensors}
        for qtype, key in ((gguf.GGMLQuantizationType.Q8_0, "q8_0_bit_exact"),
                           (gguf.GGMLQuantizationType.Q4_0, "q4_0_bit_exact")):
            matched, mismatched = 0, []
            for t in reader.tensors:
                if t.tensor_type != qtype:
                    continue
                ref = reference.get(t.name)
                if ref is None or ref.tensor_type != gguf.GGMLQuantizationType.F32:
                    mismatched.append(t.name + " (no F32 reference)")
                    continue
                values = np.asarray(ref.data, dtype=np.float32).reshape(-1, 32)
                expected = gguf.quants.quantize(values, qtype).tobytes()
                ours = np.asarray(t.data).tobytes()
                if expected == ours:
                    matched += 1
                else:
                    mismatched.append(t.name)
            out[key] = {"matched": matched, "mismatched": mismatched}

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
