"""Character classes of every code point as Hugging Face's ByteLevel pre-tokenizer (Oniguruma)
sees them, for Tests/Data/tokenizer/char-classes.json: run-length list [[first, class], ...] with
class 0 other, 1 letter (\\p{L}), 2 number (\\p{N}), 3 whitespace (\\s).

  USE_TORCH=0 PYTHONPATH=/tmp/tok-pins-gen3 python3 Tools/tokenizer/make_class_table.py

A probe "a"+c stays one piece only if c is a letter, "1"+c only if a number, c+" " only if
whitespace; everything else is "other".
"""
import json
from pathlib import Path

import tokenizers
from tokenizers.pre_tokenizers import ByteLevel

root = Path(__file__).resolve().parents[2]
pre = ByteLevel(add_prefix_space=False, use_regex=True)


def pieces(s):
    return len(pre.pre_tokenize_str(s))


def classify(c):
    if pieces("a" + c) == 1:
        return 1
    if pieces("1" + c) == 1:
        return 2
    if pieces(c + " ") == 1:
        return 3
    return 0


runs = []
last = None
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF:
        continue
    k = classify(chr(cp))
    if k != last:
        runs.append([cp, k])
        last = k
(root / "Tests" / "Data" / "tokenizer" / "char-classes.json").write_text(
    json.dumps({"tokenizers": tokenizers.__version__, "runs": runs}, separators=(",", ":")))
print(len(runs), "runs")
