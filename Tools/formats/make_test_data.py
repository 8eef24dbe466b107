#!/usr/bin/env python3
"""Writes the small checkpoints in Tests/Data/formats/ that the Formats tests read.

Run from the package root with torch (2.13, CPU) and safetensors installed:

    python3 Tools/formats/make_test_data.py

Real torch.save output for the layouts the shared fixtures do not cover (legacy stream,
strided and offset views, nested state dicts, parameters, pickle protocols 4 and 5, many
dtypes, big-endian storages), a sharded safetensors set, broken archives, and hand-built
malicious pickles. `expected.json` records every tensor's dtype, shape and values.

Each malicious file is first loaded by Python's own unpickler in a child process to prove
that its payload really runs there (it creates a marker file, which is then removed); the
Swift tests then check that our reader refuses it and that the marker never appears.
"""

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "Tests" / "Data" / "formats"
MARKER_DIR = "/tmp"  # the tests look for the markers here too


def expected_entry(t):
    t = t.detach()
    values = t.contiguous().reshape(-1)
    if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        vals = [float(v) for v in values.to(torch.float64).tolist()]
    elif t.dtype == torch.bool:
        vals = [int(v) for v in values.tolist()]
    else:
        vals = [int(v) for v in values.tolist()]
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "values": vals}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    torch.manual_seed(1234)
    expected = {}

    def record(name, tensors, **extra):
        expected[name] = {"order": list(tensors), "tensors": {k: expected_entry(v) for k, v in tensors.items()}, **extra}

    # -- a state dict of views and dtypes, saved in the ZIP layout ------------------------
    base = torch.randn(6, 8)
    shared = torch.randn(5, 3).to(torch.bfloat16)
    views = {
        "transposed": base.t(),                        # non-contiguous, strides (1, 8)
        "row_slice": base[2:4],                        # storage offset 16, contiguous
        "column": base[:, 3],                          # offset 3, stride 8
        "every_other": base[1::2, ::3],                # offset 8, strides (16, 3)
        "tied_a": shared,                              # two names, one storage
        "tied_b": shared,
        "tied_view": shared[1:],                       # a third view of the same storage
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
        "half": torch.randn(3, 4).half(),
        "half_transposed": torch.randn(4, 3).half().t(),
        "double": torch.randn(2, 2, dtype=torch.float64),
        "long": torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3),
        "int": torch.tensor([7, -8, 9], dtype=torch.int32),
        "short": torch.tensor([-300, 300], dtype=torch.int16),
        "char": torch.tensor([-5, 5], dtype=torch.int8),
        "byte": torch.tensor([0, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "expanded": torch.tensor([1.0, 2.0, 3.0]).expand(2, 3),  # stride 0
    }
    torch.save(views, OUT / "views.pth")
    record("views.pth", views, layout="zip", state_dict_key=None)

    # Same dict in the legacy stream, pickle protocol 2.
    torch.save(views, OUT / "views-legacy.pth", _use_new_zipfile_serialization=False)
    record("views-legacy.pth", views, layout="legacy", state_dict_key=None)

    # Pickle protocols 4 and 5 (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL).
    small = {"weight": torch.randn(3, 2), "bias": torch.randn(3).half(), "table": torch.randn(2, 3).t()}
    torch.save(small, OUT / "protocol4.pth", pickle_protocol=4)
    record("protocol4.pth", small, layout="zip", state_dict_key=None)
    torch.save(small, OUT / "protocol5-legacy.pth", pickle_protocol=5, _use_new_zipfile_serialization=False)
    record("protocol5-legacy.pth", small, layout="legacy", state_dict_key=None)

    # -- a training checkpoint: the weights nested under "model" beside optimiser state ---
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    state = model.state_dict()
    checkpoint = {"epoch": 3, "model": state, "optimizer": optimizer.state_dict(), "config": {"lr": 0.001, "name": "tiny"}}
    torch.save(checkpoint, OUT / "nested-model.pth")
    record("nested-model.pth", dict(state), layout="zip", state_dict_key="model")
    torch.save({"state_dict": state, "step": 10}, OUT / "nested-state-dict-legacy.pth", _use_new_zipfile_serialization=False)
    record("nested-state-dict-legacy.pth", dict(state), layout="legacy", state_dict_key="state_dict")

    # nn.Parameter values pickle through torch._utils._rebuild_parameter.
    params = {"p": torch.nn.Parameter(torch.randn(2, 3)), "q": torch.nn.Parameter(torch.randn(3).half(), requires_grad=False)}
    torch.save(params, OUT / "parameters.pth")
    record("parameters.pth", params, layout="zip", state_dict_key=None)

    # -- storages written big-endian: the same archive with byteorder "big" ----------------
    rewrite(OUT / "protocol4.pth", OUT / "big-endian.pth", byteorder=b"big", swap=True)
    record("big-endian.pth", small, layout="zip", state_dict_key=None)

    # -- broken archives ---------------------------------------------------------------------
    rewrite(OUT / "protocol4.pth", OUT / "missing-storage.pth", drop_storage="1")
    rewrite(OUT / "protocol4.pth", OUT / "deflated.pth", compress=True)

    # -- sharded safetensors ----------------------------------------------------------------
    shard_tensors = {
        "model.embed_tokens.weight": torch.randn(8, 4).to(torch.bfloat16),
        "model.norm.weight": torch.randn(4),
        "lm_head.weight": torch.randn(8, 4).half(),
        "model.layers.0.mlp.up_proj.weight": torch.randn(6, 4),
    }
    names = list(shard_tensors)
    first = {k: shard_tensors[k] for k in names[:2]}
    second = {k: shard_tensors[k] for k in names[2:]}
    save_file(first, OUT / "sharded-00001-of-00002.safetensors", metadata={"format": "pt"})
    save_file(second, OUT / "sharded-00002-of-00002.safetensors", metadata={"format": "pt"})
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in shard_tensors.values())},
        "weight_map": {k: ("sharded-00001-of-00002.safetensors" if k in first else "sharded-00002-of-00002.safetensors") for k in names},
    }
    (OUT / "sharded.safetensors.index.json").write_text(json.dumps(index, indent=2))
    record("sharded.safetensors.index.json", shard_tensors, layout="sharded", state_dict_key=None)

    # A tensor carrying a Python attribute pickles through torch._tensor._rebuild_from_type_v2.
    annotated = torch.randn(2, 2)
    annotated.note = "kept by Python, ignored by us"
    attributes = {"annotated": annotated, "plain": torch.randn(3)}
    torch.save(attributes, OUT / "tensor-attributes.pth")
    record("tensor-attributes.pth", attributes, layout="zip", state_dict_key=None)

    # -- malicious pickles --------------------------------------------------------------------
    malicious = make_malicious()
    (OUT / "expected.json").write_text(json.dumps({"checkpoints": expected, "malicious": malicious}, indent=1))

    for path in sorted(OUT.iterdir()):
        size = path.stat().st_size
        assert size < 100_000, f"{path.name} is {size} bytes"
        print(f"{size:7d}  {path.name}")


def rewrite(source, target, byteorder=None, swap=False, drop_storage=None, compress=False):
    """Copies a torch ZIP archive, changing its byte order, dropping a storage or compressing."""
    with zipfile.ZipFile(source) as zin:
        prefix = zin.namelist()[0].split("/")[0] + "/"
        data = zin.read(prefix + "data.pkl")
        element_sizes = storage_element_sizes(data)
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(target, "w", compression=method) as zout:
            for info in zin.infolist():
                content = zin.read(info.filename)
                name = info.filename
                if drop_storage is not None and name == prefix + "data/" + drop_storage:
                    continue
                if name == prefix + "byteorder" and byteorder is not None:
                    content = byteorder
                if swap and name.startswith(prefix + "data/"):
                    size = element_sizes[name[len(prefix + "data/"):]]
                    content = b"".join(content[i:i + size][::-1] for i in range(0, len(content), size))
                zout.writestr(name, content)


def storage_element_sizes(pickled):
    """Storage key -> element size, read from the persistent ids of a data.pkl."""
    sizes = {}

    class Reader(__import__("pickle").Unpickler):
        def find_class(self, module, name):
            if name.endswith("Storage"):
                return name
            return lambda *args, **kwargs: None

        def persistent_load(self, pid):
            _, storage_type, key, _, _ = pid
            sizes[key] = {"HalfStorage": 2, "FloatStorage": 4, "BFloat16Storage": 2, "DoubleStorage": 8}[storage_type]
            return None

    Reader(io.BytesIO(pickled)).load()
    return sizes


def binunicode(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def zip_with_pickle(path, pickled, prefix="archive"):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(prefix + "/data.pkl", pickled)
        z.writestr(prefix + "/byteorder", b"little")
        z.writestr(prefix + "/version", b"3\n")


def legacy_stream(pickled_data):
    """The legacy layout around a given data pickle (no storages)."""
    import pickle
    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=2)
    out.write(pickled_data)
    pickle.dump([], out, protocol=2)
    return out.getvalue()


def make_malicious():
    """Hand-built pickles whose payload would create a marker file; returns their descriptions."""
    cases = {}

    def marker(tag):
        return f"{MARKER_DIR}/minimindv-pickle-payload-{tag}"

    # 1. GLOBAL os.system + REDUCE: the classic. Protocol 2, in a ZIP like a real .pth.
    m = marker("os-system")
    pickled = b"\x80\x02" + b"cos\nsystem\n" + binunicode(f"touch {m}") + b"\x85R."
    zip_with_pickle(OUT / "malicious-os-system.pth", pickled)
    cases["malicious-os-system.pth"] = {"global": "os.system", "marker": m}

    # 2. builtins.eval via STACK_GLOBAL (protocol 4), hidden in the data pickle of a legacy stream.
    m = marker("eval")
    code = f"open({m!r}, 'w').close()"
    pickled = (b"\x80\x04" + b"\x8c\x08builtins" + b"\x8c\x04eval" + b"\x93" + binunicode(code) + b"\x85R" + b".")
    (OUT / "malicious-eval-legacy.pth").write_bytes(legacy_stream(pickled))
    cases["malicious-eval-legacy.pth"] = {"global": "builtins.eval", "marker": m}

    # 3. A real state dict whose last entry runs a command: torch.save writes it as posix.system.
    m = marker("posix-system")

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {m}",))

    torch.save({"weight": torch.ones(2), "zz_payload": Payload()}, OUT / "malicious-after-weights.pth")
    cases["malicious-after-weights.pth"] = {"global": "posix.system", "marker": m}

    # 4. Classes that are harmless but unknown: refused by name all the same.
    pickled = b"\x80\x02" + b"ccollections\nCounter\n" + b")R."
    zip_with_pickle(OUT / "unknown-counter.pth", pickled)
    cases["unknown-counter.pth"] = {"global": "collections.Counter", "marker": None}
    pickled = (b"\x80\x02" + b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + b"C\x01b" + b"\x87R.")
    zip_with_pickle(OUT / "unknown-numpy.pth", pickled)
    cases["unknown-numpy.pth"] = {"global": "numpy.core.multiarray._reconstruct", "marker": None}

    # 5. The global as the magic number of a legacy stream: every pickle is checked, not just data.
    m = marker("magic")
    pickled = b"\x80\x02" + b"cos\nsystem\n" + binunicode(f"touch {m}") + b"\x85R."
    (OUT / "malicious-magic-legacy.pth").write_bytes(pickled + b"\x80\x02K\x01.")
    cases["malicious-magic-legacy.pth"] = {"global": "os.system", "marker": m}

    # Prove that each payload runs under Python's unpickler (and remove what it made).
    for name, case in cases.items():
        if case["marker"] is None:
            continue
        probe = (
            "import pickle, sys, torch, zipfile, io\n"
            f"p = {str(OUT / name)!r}\n"
            "try:\n"
            "    torch.load(p, weights_only=False)\n"
            "except Exception as e:\n"
            "    pass\n"
        )
        subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True)
        if not os.path.exists(case["marker"]):
            raise SystemExit(f"payload of {name} did not run under Python; the test would prove nothing")
        os.remove(case["marker"])
        print(f"payload of {name} runs under torch.load(weights_only=False): ok")
    return cases


if __name__ == "__main__":
    main()
