"""Encode throughput of Python `tokenizers` vs our Tokenizer module on one mixed corpus, one thread, CPU time.

  USE_TORCH=0 PYTHONPATH=/tmp/tok-pins-gen3 python3 Tools/tokenizer/bench_encode.py gen3 [corpus.jsonl]

Builds the corpus (if missing) from the committed vector strings, about 4 KB per string and
~12 MB in all; times `Tokenizer.encode` per string on one thread (one run), then builds
Tools/tokenizer/bench/main.swift with the Tokenizer sources (`swiftc -O`, no SwiftPM: a release build of the whole
tool compiles all dependencies) and runs it
on the same file.
"""
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

gen = sys.argv[1]
root = Path(__file__).resolve().parents[2]
corpus = Path(sys.argv[2] if len(sys.argv) > 2 else f"/tmp/minimindv-bench-{gen}.jsonl")
folder = root.parent / "shared" / "minimind" / gen

if not corpus.exists():
    pieces = []
    for line in open(root / "Tests" / "Data" / "tokenizer" / f"{gen}-tokens.jsonl", encoding="utf-8"):
        text = json.loads(line).get("text")
        if text:
            pieces.append(text)
    rng = random.Random(7)
    with open(corpus, "w", encoding="utf-8") as out:
        total = 0
        while total < 12_000_000:
            doc = []
            while sum(len(p.encode()) for p in doc) < 4000:
                doc.append(rng.choice(pieces)[:2000])
            text = "\n".join(doc)
            total += len(text.encode())
            out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")

texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
size = sum(len(t.encode()) for t in texts)
tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
# CPU time of this process (the machine is shared; wall time would measure the neighbours too).
wall_start = time.perf_counter()
start = time.process_time()
tokens = sum(len(tok.encode(t, add_special_tokens=True).ids) for t in texts)
seconds = time.process_time() - start
wall = time.perf_counter() - wall_start
python_rate = size / 1e6 / seconds
print(f"python tokenizers {tokenizers.__version__}: {len(texts)} strings, {size / 1e6:.2f} MB, {tokens} tokens "
      f"in {seconds:.3f} s CPU ({wall:.3f} s wall): {python_rate:.2f} MB/s")
binary = Path("/tmp/minimindv-tokbench")
sources = sorted(str(p) for p in (root / "Sources" / "Tokenizer").rglob("*.swift"))
subprocess.run(["swiftc", "-O", *sources, str(root / "Tools" / "tokenizer" / "bench" / "main.swift"), "-o", str(binary)], check=True)
out = subprocess.run([str(binary), str(folder), str(corpus)], capture_output=True, text=True, check=True).stdout.strip()
print(out)
swift_rate = float(out.rsplit(":", 1)[1].split()[0])
print(f"ratio swift/python: {swift_rate / python_rate:.2f}")
