#!/usr/bin/env python3
"""Logits error of reduced-precision model files against their f32 conversion, through `minimindv ask`.

    python3 Tools/bench/logits_error.py --binary .build/release/minimindv --image IMG \
        /tmp/minimindv-full/MiniMind2-Small-V.gguf /tmp/x/MiniMind2-Small-V-f16.gguf ...

The first file is the float32 reference. For each file: the logits at the last prompt position
(vision encoder + prefill; `--first-logits`), as max |difference| / max |reference| and as the
RMS difference / RMS reference, and how many of the 24 greedy tokens (decode steps) equal the
reference's before the first difference. Needs numpy only.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def run(binary, model, image, question, out):
    result = subprocess.run(
        [binary, "ask", "--model", model, "--image", image, "--greedy", "--max-tokens", "24",
         "--json", "--first-logits", out, question],
        check=True, capture_output=True, text=True)
    return json.loads(result.stdout), np.fromfile(out, dtype="<f4")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=".build/release/minimindv")
    parser.add_argument("--image", required=True)
    parser.add_argument("--question", default="描述一下这个图像的内容。")
    parser.add_argument("models", nargs="+", help="the f32 reference first, then the files to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ref_json, ref = run(args.binary, args.models[0], args.image, args.question, os.path.join(folder, "ref.bin"))
        print("| file | max abs diff / max abs | rms diff / rms | greedy tokens equal (of 24) |")
        print("|---|---|---|---|")
        for model in args.models[1:]:
            got_json, got = run(args.binary, model, args.image, args.question, os.path.join(folder, "got.bin"))
            diff = got - ref
            rel_max = float(np.abs(diff).max() / np.abs(ref).max())
            rel_rms = float(np.sqrt((diff ** 2).mean() / (ref ** 2).mean()))
            same = 0
            for a, b in zip(ref_json["output_ids"], got_json["output_ids"]):
                if a != b:
                    break
                same += 1
            print(f"| {os.path.basename(model)} | {rel_max:.2e} | {rel_rms:.2e} | {same} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
