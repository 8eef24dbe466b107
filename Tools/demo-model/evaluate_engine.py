"""Held-out evaluation of a converted demo model through OUR engine (`minimindv`), not PyTorch.

    minimindv convert --checkpoint Tools/demo-model/out/sft_vlm_128.pth \\
        --vision Tools/demo-model/out/siglip-demo-p8-128-ve --tokenizer Tools/demo-model/out/tokenizer \\
        --type f16 --output /tmp/demo-f16.gguf
    python Tools/demo-model/evaluate_engine.py --model /tmp/demo-f16.gguf --out Tools/demo-model/out \\
        --binary .build/release/minimindv

Reads the pictures and questions evaluate_torch.py wrote (`--out`/heldout/scenes.json + scene-NNN.jpg), asks
each colour, shape and count question and scores the reply text with scenes.is_correct. By default
(`--via serve`) all questions go as greedy jobs (temperature 0) through one `minimindv serve` on a temporary
spool, which decodes them in batches and encodes each picture once; `--via ask` runs one
`ask --greedy --json` process per question instead. Then runs the 50 prompts of `--out`/heldout_prompts.json and counts how many give the same
greedy output ids as PyTorch (PyTorch's ids stop before <|im_end|>, id 2; ours are cut at the first 2 too).

With `--fresh N`, draws N new scenes instead (seed range of evaluate_torch.py, another `--seed`), so that a
model trained with another DEMO_SCENE_RADIUS is scored on its own distribution.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402

SCORED = ["colour", "shape", "count"]
IM_END = 2
EVAL_SEED_BASE = 9_000_000_000_000_000_000  # as evaluate_torch.py: training seeds are far below this


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the converted .gguf")
    p.add_argument("--binary", default="/work/main/.build/debug/minimindv", help="the minimindv executable")
    p.add_argument("--out", default=os.path.join(here, "out"), help="folder with heldout/ and heldout_prompts.json")
    p.add_argument("--images", type=int, default=0, help="score only the first N pictures (0: all)")
    p.add_argument("--fresh", type=int, default=0, help="draw this many new scenes instead of reading heldout/")
    p.add_argument("--seed", type=int, default=777, help="seed of --fresh scenes")
    p.add_argument("--prompts", type=int, default=50, help="how many of heldout_prompts.json to compare (0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kv-cache", default="auto", help="--kv-cache of ask and serve (auto, f32, f16, int8)")
    p.add_argument("--via", choices=["serve", "ask"], default="serve",
                   help="serve: all questions as jobs through one daemon (fast); ask: one process per question")
    p.add_argument("--batch", type=int, default=16, help="serve --batch for --via serve")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--report", default="", help="write every reply and the accuracies to this JSON file")
    return p.parse_args(argv)


def ask(args, image: str, question: str) -> dict:
    cmd = [args.binary, "ask", "--model", args.model, "--image", image, "--greedy",
           "--max-tokens", str(args.max_tokens), "--threads", str(args.threads), "--kv-cache", args.kv_cache,
           "--json", question]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed ({run.returncode}): {run.stderr.strip()[-800:]}")
    return json.loads(run.stdout)


def answer_through_serve(args, jobs: list[tuple[str, str]]) -> list[str]:
    """Every (image, question) as a greedy single-file job on a temporary spool, answered by one
    `minimindv serve`; returns the answers in order. Fails loudly on a failed job or a stalled daemon."""
    import base64
    import signal
    import sqlite3
    import tempfile
    root = tempfile.mkdtemp(prefix="demo-eval-")
    spool = os.path.join(root, "spool")
    for sub in ("tmp", "incoming"):
        os.makedirs(os.path.join(spool, sub))
    encoded: dict[str, str] = {}
    for n, (image, question) in enumerate(jobs):
        if image not in encoded:
            with open(image, "rb") as f:
                encoded[image] = base64.b64encode(f.read()).decode()
        job = {"question": question, "images": [{"base64": encoded[image]}], "max_tokens": args.max_tokens,
               "temperature": 0}
        tmp = os.path.join(spool, "tmp", f"q{n:05d}.json")
        with open(tmp, "w") as f:
            json.dump(job, f)
        os.rename(tmp, os.path.join(spool, "incoming", f"q{n:05d}.json"))
    db = os.path.join(root, "results.sqlite")
    log = open(os.path.join(root, "serve.log"), "w")
    daemon = subprocess.Popen([args.binary, "serve", "--spool", spool, "--db", db, "--cache-dir",
                               os.path.join(root, "cache"), "--model", args.model, "--batch", str(args.batch),
                               "--threads", str(args.threads), "--kv-cache", args.kv_cache, "--no-keep-done",
                               "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=log)
    t0, last, answers = time.time(), (-1, time.time()), {}
    try:
        while True:
            time.sleep(1.0)
            if daemon.poll() is not None:
                raise SystemExit(f"serve exited ({daemon.returncode}); log in {log.name}")
            if not os.path.exists(db):
                continue
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                try:
                    rows = con.execute("SELECT id, status, answer, error FROM jobs "
                                       "WHERE status IN ('done', 'failed')").fetchall()
                except sqlite3.OperationalError:
                    continue
            failed = [r for r in rows if r[1] == "failed"]
            if failed:
                raise SystemExit(f"job {failed[0][0]} failed: {failed[0][3]}")
            if len(rows) != last[0]:
                last = (len(rows), time.time())
                if len(rows) // 250 != getattr(answer_through_serve, "_shown", -1):
                    answer_through_serve._shown = len(rows) // 250
                    print(f"  {len(rows)}/{len(jobs)} answered, {time.time() - t0:.0f} s", flush=True)
            elif time.time() - last[1] > 120:
                raise SystemExit(f"serve made no progress for 2 minutes; log in {log.name}")
            if len(rows) == len(jobs):
                answers = {r[0]: r[2] or "" for r in rows}
                break
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
    import shutil
    shutil.rmtree(root, ignore_errors=True)
    return [answers[f"q{n:05d}"] for n in range(len(jobs))]


def scene_of(entry: dict) -> scenes.Scene:
    """The attributes scoring needs, rebuilt from scenes.json (positions/radii are not used by scoring)."""
    shapes = tuple(scenes.Shape(s["kind"], s["colour"], s["size"], s["position"], 0.0, 0.0, 0.0)
                   for s in entry["shapes"])
    return scenes.Scene(shapes, entry.get("background", "plain"), 0, 0)


def fresh_items(args, img_dir: str) -> list[dict]:
    os.makedirs(img_dir, exist_ok=True)
    items = []
    for i in range(args.fresh):
        sc = scenes.make_scene(EVAL_SEED_BASE + args.seed * 100_000 + i)
        name = f"scene-{i:03d}.jpg"
        scenes.render(sc, 256 if i % 3 else 320).save(os.path.join(img_dir, name), quality=90)
        qs = []
        for k, cat in enumerate(SCORED):
            lang = "en" if (i + k) % 2 == 0 else "zh"
            pool = scenes.QUESTIONS[(cat, lang)]
            qs.append({"category": cat, "lang": lang, "question": pool[(i // 2 + k) % len(pool)]})
        items.append({"path": os.path.join(img_dir, name), "scene": sc, "questions": qs})
    return items


def stored_items(args) -> list[dict]:
    img_dir = os.path.join(args.out, "heldout")
    with open(os.path.join(img_dir, "scenes.json")) as f:
        data = json.load(f)
    return [{"path": os.path.join(img_dir, e["file"]), "scene": scene_of(e),
             "questions": [q for q in e["questions"] if q["category"] in SCORED]} for e in data["images"]]


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.fresh:
        items = fresh_items(args, os.path.join("/tmp", f"demo-fresh-{args.seed}"))
    else:
        items = stored_items(args)
    if args.images:
        items = items[:args.images]

    t0 = time.time()
    questions = [(it, q) for it in items for q in it["questions"]]
    if args.via == "serve":
        texts = answer_through_serve(args, [(it["path"], q["question"]) for it, q in questions])
    else:
        texts = []
        for n, (it, q) in enumerate(questions):
            texts.append(ask(args, it["path"], q["question"])["text"])
            if (n + 1) % 75 == 0:
                print(f"  {n + 1}/{len(questions)} questions, {time.time() - t0:.0f} s", flush=True)
    right, total = defaultdict(int), defaultdict(int)
    by_count = defaultdict(lambda: [0, 0])
    replies = []
    for (it, q), text in zip(questions, texts):
        ok = scenes.is_correct(it["scene"], q["category"], text)
        total[q["category"]] += 1
        right[q["category"]] += ok
        by_count[(q["category"], it["scene"].count)][0] += ok
        by_count[(q["category"], it["scene"].count)][1] += 1
        replies.append({"image": it["path"], "question": q["question"], "category": q["category"],
                        "reply": text, "correct": bool(ok)})
    print(f"{len(questions)} questions answered in {time.time() - t0:.0f} s (--via {args.via})", flush=True)

    acc = {c: right[c] / total[c] for c in SCORED if total[c]}
    print(f"engine accuracy over {len(items)} pictures ({args.model}):")
    for c in SCORED:
        if total[c]:
            one, two = by_count[(c, 1)], by_count[(c, 2)]
            print(f"  {c:7s} {100 * acc[c]:5.1f} %  ({right[c]}/{total[c]}; one shape "
                  f"{100 * one[0] / max(1, one[1]):.1f} %, two {100 * two[0] / max(1, two[1]):.1f} %)")

    agree = None
    if args.prompts:
        with open(os.path.join(args.out, "heldout_prompts.json")) as f:
            pdata = json.load(f)
        prompts = pdata["prompts"][:args.prompts]
        agree, mismatches = 0, []
        for p in prompts:
            out = ask(args, os.path.join(args.out, p["image"]), p["question"])
            ours = list(out["output_ids"])
            if IM_END in ours:
                ours = ours[:ours.index(IM_END)]
            theirs = list(p["output_ids"])
            # A reply that hit a token budget (ours or PyTorch's, 32) is compared over the shorter one.
            cut = out.get("finish_reason") != "end_of_turn" or len(theirs) >= 32
            n = min(len(ours), len(theirs))
            same = ours == theirs or (cut and ours[:n] == theirs[:n])
            agree += same
            if not same:
                mismatches.append({"image": p["image"], "question": p["question"], "torch": p["output_text"],
                                   "engine": out["text"], "torch_ids": theirs, "engine_ids": ours})
        print(f"greedy output ids identical to PyTorch: {agree}/{len(prompts)}")
        for m in mismatches[:5]:
            print(f"  differs: {m['image']} {m['question']!r}: torch {m['torch']!r} engine {m['engine']!r}")

    print(f"{time.time() - t0:.0f} s")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"model": args.model, "pictures": len(items), "accuracy": acc, "prompts_identical": agree,
                       "replies": replies}, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
