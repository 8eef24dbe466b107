#!/usr/bin/env python3
"""Batched decode, PyTorch against `minimindv bench`, in alternating rounds.

On a shared machine the speed of memory-bound decoding drifts by 10-40 % within minutes, so two
figures measured a few minutes apart (torch_bench.py, then `minimindv bench`) can disagree about
their ratio by as much. Here one process holds the PyTorch model (torch_bench.py's, fp32, 2 threads)
and, round after round, times its decode of 8 sequences x 64 greedy tokens after the eval prompt,
then runs `minimindv bench --parts decode` on the same geometry; each round's two figures are
seconds apart. Prints every round and the medians:

    python3 Tools/bench/decode_rounds.py /tmp/minimindv-full/MiniMind2-V \\
        --model /tmp/minimindv-decode/MiniMind2-V-q4_0.gguf --rounds 5 [--batch 8] [--binary B]
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_bench as tb  # noqa: E402  (the baseline model, written from the spec)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="model folder made by make_full_size.py (the PyTorch side)")
    p.add_argument("--model", required=True, help="the same model converted to .gguf (our side)")
    p.add_argument("--binary", default=str(Path(__file__).resolve().parents[2] / ".build/release/minimindv"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kv-cache", default="auto")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    folder = Path(args.folder)
    info = json.loads((folder / "bench.json").read_text())
    model = tb.MiniMindV(next(folder.glob("sft_vlm_*.pth")), (folder / info["vision_folder"]).resolve(), folder,
                         heads=info.get("heads"), kv_heads=info.get("kv_heads"))
    template, image = tb.EVAL[model.gen]
    d, batch, steps = model.decoder, args.batch, tb.NEW_TOKENS
    with torch.inference_mode():
        features = model.projector(model.vision(model.vision.preprocess(tb.load_image(image)).unsqueeze(0)))[0]
        ids = model.prompt_ids(template, [image])
        h = model.embed(ids, [features])

        def torch_tokens_per_second():
            cache = d.new_cache(batch, len(ids) + steps + 1)
            tokens = torch.stack([d.prefill(h, cache, row) for row in range(batch)]).argmax(-1)
            start = time.perf_counter()
            for _ in range(steps):
                tokens = d.decode(tokens, cache).argmax(-1)
            return batch * steps / (time.perf_counter() - start)

        torch_tokens_per_second()  # warm-up
        ours_cmd = [args.binary, "bench", "--model", args.model, "--parts", "decode", "--batches", str(batch),
                    "--decode-tokens", str(steps + 1), "--repeats", "1", "--threads", str(args.threads),
                    "--kv-cache", args.kv_cache]
        rows = []
        for r in range(args.rounds):
            theirs = torch_tokens_per_second()
            out = subprocess.run(ours_cmd, capture_output=True, text=True, check=True).stdout
            ours = float(re.search(rf"decode, batch {batch}\s+([0-9.]+) tokens/s", out).group(1))
            rows.append((theirs, ours))
            print(f"round {r + 1}: PyTorch {theirs:.1f} tok/s, ours {ours:.1f} tok/s, {ours / theirs:.2f}x", flush=True)
    theirs, ours = statistics.median(t for t, _ in rows), statistics.median(o for _, o in rows)
    ratios = sorted(o / t for t, o in rows)
    print(f"{info.get('name', folder.name)} batch {batch}: PyTorch median {theirs:.1f} tok/s, ours median {ours:.1f} "
          f"tok/s: {ours / theirs:.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x)")


if __name__ == "__main__":
    main()
