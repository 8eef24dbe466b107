"""Encode/decode vectors for Tests/Data/tokenizer, computed by Hugging Face itself.

Run once per generation with the library versions upstream used (see README "Tokenizer"):
  USE_TORCH=0 PYTHONPATH=/tmp/tok-pins-gen2 python3 Tools/tokenizer/make_token_vectors.py gen2
  USE_TORCH=0 PYTHONPATH=/tmp/tok-pins-gen3 python3 Tools/tokenizer/make_token_vectors.py gen3
(pins: gen2 transformers==4.48.0 tokenizers==0.21.4, gen3 transformers==4.57.6 tokenizers==0.22.2).
Writes Tests/Data/tokenizer/<gen>-tokens.jsonl: one object per line, either
{"text", "ids", "decoded", "decoded_skip"} or, for id-only vectors, {"ids", "decoded", "decoded_skip"}.
"""
import json
import random
import sys
from pathlib import Path

import tokenizers
import transformers
from transformers import AutoTokenizer

gen = sys.argv[1]
root = Path(__file__).resolve().parents[2]
shared = root.parent / "shared" / "minimind" / gen
tok = AutoTokenizer.from_pretrained(str(shared))
rng = random.Random(20261130 + (2 if gen == "gen2" else 3))

english = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll like it; they've said it's what we'd want. He'S LOUD'LL",
    "Don't stop believing -- hold on to that feeling!",
    "Machine learning models are trained on large datasets, often containing billions of tokens.",
    "A picture is worth a thousand words, but a caption needs only twelve.",
    "   leading spaces and trailing spaces   ",
    "e-mail: someone@example.com, URL: https://example.org/path?q=1&r=two#frag",
    "Prices: $3.50, €4,20, ¥1000, £7; 50% off!!! (limited time)",
    "She said, \"It's 10:45 p.m.\" and left.",
    "Mr. O'Neil's dog's bone's gone.",
]
chinese = [
    "你好，请介绍一下你自己。",
    "描述一下这个图像的内容。",
    "比较一下两张图像的异同点。",
    "请描述这张图中的主要物体和场景。",
    "今天天气很好，我们去公园散步吧！",
    "机器学习是人工智能的一个分支，它使计算机能够从数据中学习。",
    "《红楼梦》是中国古典四大名著之一，作者曹雪芹。",
    "他说：“这件事情我已经知道了。”然后就走了……",
    "一二三四五六七八九十，百千万亿。",
    "繁體中文與简体中文混合使用的句子。",
    "日本語の文章も少し入れておきます。カタカナとひらがな。",
    "한국어 문장도 조금 넣어 봅니다.",
]
code = [
    "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "let xs = [1, 2, 3].map { $0 * 2 }\nguard let y = xs.first else { return }\n",
    '{"name": "get_weather", "arguments": {"city": "北京", "unit": "celsius"}}',
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "<div class=\"box\">&nbsp;<br/></div>\r\n<!-- comment -->",
    "x = 0x1F; y = 1e-5; z = 3.14159_26535; w = 1_000_000",
    "if (a && !b || c) { return -1; } else if (x != y) { x >>= 2; }",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }\n",
    "    indented\n        more\n\t\ttabs\n",
]
emoji = [
    "😀😃😄 emoji run", "👨‍👩‍👧‍👦 family", "👩🏽‍💻 coder", "🏳️‍🌈 flag", "🇨🇳🇺🇸🇯🇵 flags",
    "❤️ red heart with VS16", "1️⃣ keycap", "🧑‍🤝‍🧑 people", "🐶🐱🐭🐹", "✨🎉🎊 party",
]
combining = [
    "e\u0301 vs \u00e9", "n\u0303a\u0308o\u0302", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319 zalgo",
    "क्षत्रिय हिन्दी", "العربية مع تشكيل: مُحَمَّد", "עִבְרִית", "ภาษาไทย สวัสดี", "Ελληνικά και κυριλλица",
    "Tiếng Việt có dấu", "a\u200bb\u200cc\u200dd\ufeffe",
]
spacing = [
    "line1\r\nline2\r\n\r\nline3", "tab\there\t\tand\t\t\tthere", "a" + " " * 40 + "b", " " * 17,
    "\n\n\n", "end with newline\n", "trailing space ", "\u00a0nbsp\u00a0\u3000ideographic\u3000space",
    "mixed \t \n \r\n  whitespace\x0b\x0cend", "\u2028line sep\u2029para sep\u0085nel", " \n", "\t",
    "word  \n  word", "x\n \ny", "a \u00a0b", "  \u3000  ", "\r", "\r\r\n\n\r",
]
digits = [
    "0123456789", "3.14159265358979", "1,234,567.89", "２０２４年１２月３１日", "٠١٢٣٤٥٦٧٨٩",
    "x² + y³ = z⁴", "½ ¼ ¾ ⅓", "Ⅻ ⅻ Ⅳ", "①②③ ⑴⑵", "version 1.2.3-rc4", "IPv4 192.168.0.1",
    "phone +86-10-1234-5678", "2026-11-30T16:09:37Z", "007", "a1b2c3", "１２３abc４５６",
]
special_in_text = [
    "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
    "text <|endoftext|> more", "<|im_end|><|im_end|>", "<|im_start", "im_start|>", "<|im_start|",
    "<<|im_start|>>", "<|im_start|><|im_start|>x", "@<|im_end|>@", "a<|endoftext|>b<|im_start|>c",
    "<think>\nreasoning\n</think>\n\nanswer", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "<|image_pad|><|image_pad|>", "<image>\nwhat is this?", "<|vision_start|><|image_pad|><|vision_end|>",
    "<tool_response>ok</tool_response>", "<|buffer1|>", "<tts_pad><tts_text_bos>", "</think>", "<think>",
]
ats = ["@", "@@", "@" * 196, "@" * 196 + "\n" + "描述一下这个图像的内容。", ("@" * 196 + "\n") * 2 + "比较",
       " @@@ ", "@a@b", "a@@@@@@@@@@@@@@b", "@" * 1000, "foo@@bar@@@baz", "@\n@\n@"]

vocab_pieces = [tok.decode([i]) for i in range(len(tok))]
vocab_pieces = [p for p in vocab_pieces if "\ufffd" not in p]


def random_unicode(n):
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2070, 0x218F), (0x2190, 0x23FF),
              (0x2460, 0x24FF), (0x2E80, 0x2FDF), (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
              (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF), (0x10000, 0x1007F), (0x1D400, 0x1D7FF),
              (0x20000, 0x2A6DF), (0x0, 0x1F), (0x300, 0x36F)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        c = rng.randint(lo, hi)
        if 0xD800 <= c <= 0xDFFF:
            continue
        out.append(chr(c))
    return "".join(out)


def mix(parts, k):
    return rng.choice(["", " ", "\n", "  ", "\t"]).join(rng.choice(parts) for _ in range(k))


texts = []
for group in (english, chinese, code, emoji, combining, spacing, digits, special_in_text, ats):
    texts.extend(group)
everything = english + chinese + code + emoji + combining + spacing + digits + special_in_text + ats[:3]
while len(texts) < 520:
    texts.append(mix(everything, rng.randint(2, 6)))
while len(texts) < 800:
    texts.append("".join(rng.choice(vocab_pieces) for _ in range(rng.randint(1, 30))))
while len(texts) < 1040:
    texts.append(random_unicode(rng.randint(1, 60)))
for n in (10_500, 12_000, 20_000):
    long = []
    while sum(len(s) for s in long) < n:
        long.append(rng.choice(everything))
    texts.append(rng.choice(["", " ", "\n"]).join(long))
texts.append("x" * 10_001)
texts.append(" " * 10_050 + "end")
texts.append("".join(rng.choice(vocab_pieces) for _ in range(4000)))
texts.append("")

with open(root / "Tests" / "Data" / "tokenizer" / f"{gen}-tokens.jsonl", "w", encoding="utf-8") as out:
    out.write(json.dumps({"generator": "make_token_vectors.py", "transformers": transformers.__version__,
                          "tokenizers": tokenizers.__version__}, ensure_ascii=False) + "\n")
    for text in texts:
        ids = tok.encode(text, add_special_tokens=True)
        out.write(json.dumps({"text": text, "ids": ids,
                              "decoded": tok.decode(ids, skip_special_tokens=False),
                              "decoded_skip": tok.decode(ids, skip_special_tokens=True)}, ensure_ascii=False) + "\n")
    # Id-only vectors: arbitrary id sequences (split UTF-8 characters, specials anywhere).
    for _ in range(200):
        ids = [rng.randrange(len(tok)) for _ in range(rng.randint(1, 40))]
        out.write(json.dumps({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                              "decoded_skip": tok.decode(ids, skip_special_tokens=True)}, ensure_ascii=False) + "\n")
print(gen, len(texts), "texts")
