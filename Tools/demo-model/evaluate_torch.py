"""Held-out evaluation of the trained demo model in PyTorch, from the saved upstream-layout files.

    python Tools/demo-model/evaluate_torch.py                 # reads and writes Tools/demo-model/out

Draws 500 new scenes (a seed range training never uses), saves them as JPEG files, reads them back like a
user's pictures, asks each one a colour, a shape and a count question (English or Chinese), decodes
greedily and scores the replies by exact attribute match (scenes.is_correct).

Writes into --out:
- heldout/scene-NNN.jpg and heldout/scenes.json: the pictures, their true attributes and the questions asked
  (what our own engine's evaluation reads, so both score the same pictures and questions);
- heldout_eval.json: every reply and its score, and the accuracies;
- heldout_prompts.json: 50 prompts (picture, question, prompt ids, greedy output ids and text) for comparing
  our engine with PyTorch token for token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402
from model import DecoderConfig, PromptBuilder, load_upstream_layout, preprocess  # noqa: E402

EVAL_SEED_BASE = 9_000_000_000_000_000_000  # training seeds are far below this
SCORED = ["colour", "shape", "count"]


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(here, "out"), help="folder written by train.py")
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--prompts", type=int, default=50, help="how many prompts go into heldout_prompts.json")
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=32)
    return p.parse_args(argv)


def load_trained(out_dir: str):
    with open(os.path.join(out_dir, "model_info.json")) as f:
        info = json.load(f)
    c = info["llm_config"]
    lm = DecoderConfig(hidden_size=c["hidden_size"], num_hidden_layers=c["num_hidden_layers"],
                       num_attention_heads=c["num_attention_heads"], num_key_value_heads=c["num_key_value_heads"],
                       head_dim=c["head_dim"], intermediate_size=c["intermediate_size"])
    pth = os.path.join(out_dir, f"sft_vlm_{c['hidden_size']}.pth")
    vc = info["vision_config"]
    lm.image_token_len = c["image_token_len"]
    return load_upstream_layout(pth, os.path.join(out_dir, f"siglip-demo-p{vc['patch_size']}-{vc['image_size']}-ve"), lm)


def heldout_items(args, img_dir: str):
    """The held-out pictures (written as JPEG) and the questions asked about each."""
    os.makedirs(img_dir, exist_ok=True)
    items = []
    for i in range(args.images):
        sc = scenes.make_scene(EVAL_SEED_BASE + args.seed * 100_000 + i)
        size = 256 if i % 3 else 320   # a third need resizing, as most users' pictures do
        name = f"scene-{i:03d}.jpg"
        scenes.render(sc, size).save(os.path.join(img_dir, name), quality=args.jpeg_quality)
        questions = []
        for k, cat in enumerate(SCORED + ["describe"]):
            lang = "en" if (i + k) % 2 == 0 else "zh"
            pool = scenes.QUESTIONS[(cat, lang)]
            questions.append({"category": cat, "lang": lang, "question": pool[(i // 2 + k) % len(pool)],
                              "expected": scenes.answer(sc, cat, lang)})
        items.append({"file": name, "scene": sc, "questions": questions})
    return items


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_trained(args.out)
    prompts = PromptBuilder(os.path.join(args.out, "tokenizer"), image_token_len=model.lm_config.image_token_len)
    size = model.vision_config.image_size
    img_dir = os.path.join(args.out, "heldout")
    t0 = time.time()
    items = heldout_items(args, img_dir)

    with torch.no_grad():
        feats = []
        for s in range(0, len(items), 50):
            px = torch.stack([preprocess(Image.open(os.path.join(img_dir, it["file"])), size)
                              for it in items[s:s + 50]])
            feats.append(model.encode_images(px))
        feats = torch.cat(feats)

    # Greedy decoding, batched over prompts that share a question (same length, no padding needed).
    groups = defaultdict(list)
    for i, it in enumerate(items):
        for j, q in enumerate(it["questions"]):
            groups[q["question"]].append((i, j))
    replies = {}
    for question, members in groups.items():
        ids = prompts.prompt_ids(question)
        for s in range(0, len(members), 64):
            chunk = members[s:s + 64]
            batch = torch.tensor([ids] * len(chunk))
            outs = model.greedy(batch, feats[[i for i, _ in chunk]], args.max_new_tokens)
            for (i, j), out in zip(chunk, outs):
                replies[(i, j)] = out

    per = defaultdict(lambda: [0, 0])
    records = []
    for i, it in enumerate(items):
        for j, q in enumerate(it["questions"]):
            out = replies[(i, j)]
            text = prompts.decode(out)
            cat = q["category"]
            if cat in SCORED:
                ok = scenes.is_correct(it["scene"], cat, text)
                for key in (cat, f"{cat}/{q['lang']}", f"{cat}/{it['scene'].count}-shape"):
                    per[key][0] += ok
                    per[key][1] += 1
            else:
                ok = text == q["expected"]
                per["describe (whole answer exact)"][0] += ok
                per["describe (whole answer exact)"][1] += 1
            records.append({"file": it["file"], **q, "reply": text, "reply_ids": out, "correct": bool(ok)})

    acc = {k: round(v[0] / v[1], 4) for k, v in sorted(per.items())}
    print(f"held-out: {len(items)} pictures, {len(records)} questions, {time.time() - t0:.0f}s")
    for k, v in acc.items():
        print(f"  {k:32s} {v * 100:6.2f}%  ({per[k][0]}/{per[k][1]})")
    for r in [r for r in records if not r["correct"]][:15]:
        print(f"  wrong: {r['file']} {r['question']!r} expected {r['expected']!r} got {r['reply']!r}")

    with open(os.path.join(img_dir, "scenes.json"), "w") as f:
        json.dump({"what": "held-out pictures for the demo model: true attributes and the questions asked; "
                           "score colour/shape/count by exact attribute match (Tools/demo-model/scenes.py is_correct)",
                   "seed": args.seed, "jpeg_quality": args.jpeg_quality,
                   "images": [{"file": it["file"], "count": it["scene"].count, "background": it["scene"].background,
                               "shapes": [{"kind": s.kind, "colour": s.colour, "size": s.size, "position": s.position}
                                          for s in it["scene"].shapes],
                               "questions": it["questions"]} for it in items]},
                  f, indent=1, ensure_ascii=False)
    with open(os.path.join(args.out, "heldout_eval.json"), "w") as f:
        json.dump({"accuracy": acc, "counts": {k: v for k, v in per.items()}, "records": records}, f,
                  indent=1, ensure_ascii=False)

    # 50 prompts for token-for-token comparison: every category, both languages, one and two shapes.
    chosen = []
    for i, it in enumerate(items):
        j = i % 4
        chosen.append((i, j))
        if len(chosen) == args.prompts:
            break
    with open(os.path.join(args.out, "heldout_prompts.json"), "w") as f:
        json.dump({"what": "greedy output of the PyTorch model (float32, from the fp16 .pth + vision folder) for "
                           "held-out prompts; prompt = chat template with add_generation_prompt over "
                           "'<image>\\n' + question, <image> -> 64 x <|image_pad|>; generation stops at <|im_end|> "
                           "(id 2, not included in output_ids)",
                   "images_dir": "heldout",
                   "prompts": [{"image": f"heldout/{items[i]['file']}", "question": items[i]["questions"][j]["question"],
                                "category": items[i]["questions"][j]["category"],
                                "prompt_ids": prompts.prompt_ids(items[i]["questions"][j]["question"]),
                                "output_ids": replies[(i, j)], "output_text": prompts.decode(replies[(i, j)])}
                               for i, j in chosen]},
                  f, indent=1, ensure_ascii=False)
    print("wrote", os.path.join(args.out, "heldout_eval.json"), os.path.join(args.out, "heldout_prompts.json"),
          os.path.join(img_dir, "scenes.json"))
    return acc


if __name__ == "__main__":
    main()
