"""How fast can the demo's SigLIP-style encoder, trained from scratch, learn to tell shapes apart?

    python Tools/demo-model/shape_probe.py --scenes full --steps 300
    python Tools/demo-model/shape_probe.py --scenes fixed --steps 150     # the easy control

Trains only the vision encoder plus linear heads on single-shape pictures (no decoder), so a few hundred
steps take a minute or two: a quick way to measure whether a change (patch size, depth, initialisation,
targets, scene variation) makes shapes learnable before spending a 40-minute training run on it.

Heads: 4-way shape from the mean of the encoder's output (what the decoder could read most easily), the
shape under each token (5-way with background, as train.py's probe), and each token's 4 x 4 inside/outside
cells (the outline, colour-blind). Prints the running accuracies every 25 steps.

`--scenes`: `fixed` (red, plain background, centred, radius 50: only the shape varies), `red-plain`
(red, plain background, the generator's positions and sizes), `centred` (any colour and background,
near the centre, radius 40-60), `full` (make_scene's single-shape pictures as training draws them).
"""

from __future__ import annotations

import argparse
import math
import dataclasses
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402
import train  # noqa: E402
from model import SiglipVisionModel, VisionConfig, preprocess  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", choices=["fixed", "red-plain", "centred", "full"], default="full")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--images", type=int, default=16, help="pictures per step")
    p.add_argument("--sincos-positions", type=float, default=0.0)
    p.add_argument("--oriented-filters", type=float, default=0.0)
    p.add_argument("--mask-weight", type=float, default=1.0)
    p.add_argument("--geometry-weight", type=float, default=0.0,
                   help="weight of each token's boundary directions and corners (scenes.patch_geometry)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--count", type=int, default=1, help="shapes per picture: 1, 2, or 0 for either (as training draws)")
    p.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--token-weight", type=float, default=1.0, help="weight of the per-token shape target")
    p.add_argument("--curriculum", type=int, default=0,
                   help="first N steps draw --curriculum-scenes pictures, then --scenes")
    p.add_argument("--curriculum-scenes", choices=["fixed", "red-plain", "centred", "full"], default="centred")
    p.add_argument("--time-limit", type=float, default=0, help="seconds; stop past this")
    p.add_argument("--eval", type=int, default=256, help="held-out pictures scored at the end (same --count)")
    return p.parse_args(argv)


def scene_for(kind: str, seed: int, count: int = 1) -> scenes.Scene:
    sc = scenes.make_scene(seed, count=count or None)
    if sc.count > 1:
        return sc
    s = sc.shapes[0]
    if kind == "fixed":
        return dataclasses.replace(sc, background="plain",
                                   shapes=(dataclasses.replace(s, cx=128.0, cy=128.0, r=50.0, colour="red"),))
    if kind == "red-plain":
        return dataclasses.replace(sc, background="plain", shapes=(dataclasses.replace(s, colour="red"),))
    if kind == "centred":
        rng = np.random.default_rng(seed + 5)
        return dataclasses.replace(sc, shapes=(dataclasses.replace(
            s, cx=128.0 + rng.uniform(-8, 8), cy=128.0 + rng.uniform(-8, 8), r=float(rng.uniform(40, 60))),))
    return sc


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    side = args.image_size // args.patch_size
    vc = VisionConfig(hidden_size=args.width, intermediate_size=4 * args.width, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, image_size=args.image_size, patch_size=args.patch_size)
    enc = SiglipVisionModel(vc)
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        if args.oriented_filters:
            pe = enc.vision_model.embeddings.patch_embedding.weight
            n = min(pe.shape[0], 64)
            pe[:n] = train.oriented_filters(pe.shape[0], args.patch_size)[:n] * args.oriented_filters
        if args.sincos_positions:
            enc.vision_model.embeddings.position_embedding.weight.copy_(
                train.sincos_positions(side, args.width, args.sincos_positions))

    pooled, per_token, outline = (torch.nn.Linear(args.width, 4), torch.nn.Linear(args.width, 5),
                                  torch.nn.Linear(args.width, train.MASK_CELLS ** 2))
    geometry = torch.nn.Linear(args.width, scenes.GEOMETRY_VALUES)
    params = [*enc.parameters(), *pooled.parameters(), *per_token.parameters(), *outline.parameters(),
              *geometry.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)

    def batch(seeds, kind):
        px, y, tok, cells, geo = [], [], [], [], []
        for sd in seeds:
            sc = scene_for(kind, sd, args.count)
            px.append(preprocess(scenes.render(sc, 256), args.image_size))
            # Which shapes the picture holds (multi-label: one or two shapes, pooled over the tokens).
            y.append([float(any(s.kind == k for s in sc.shapes)) for k in scenes.SHAPES])
            lab = scenes.patch_labels(sc, side)
            tok.append(np.array([4 if l == 0 else scenes.SHAPES.index(sc.shapes[l - 1].kind) for l in lab]))
            cells.append(scenes.patch_masks(sc, side, train.MASK_CELLS))
            if args.geometry_weight:
                geo.append(scenes.patch_geometry(sc, side))
        return (torch.stack(px), torch.tensor(y), torch.tensor(np.stack(tok)), torch.tensor(np.stack(cells)).float(),
                torch.tensor(np.stack(geo)) if geo else None)

    def pooled_hits(lp, y):
        if args.count == 1:
            return (lp.argmax(-1) == y.argmax(-1)).float()
        return ((lp > 0).float() == y).all(-1).float()

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        if args.schedule == "cosine":
            prog = (step - args.warmup) / max(1, args.steps - args.warmup)
            return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))
        return args.lr

    hist = {"shape": [], "token": [], "outline": []}
    t0 = time.time()
    for step in range(args.steps):
        kind = args.curriculum_scenes if step < args.curriculum else args.scenes
        px, y, tok, cells, geo = batch([1_000_000 * (args.seed + 1) + step * 1000 + k for k in range(args.images)], kind)
        for g_ in opt.param_groups:
            g_["lr"] = lr_at(step)
        feats = enc(px)
        lp, lt, lo = pooled(feats.mean(1)), per_token(feats), outline(feats)
        if args.count == 1:
            lpool = F.cross_entropy(lp, y.argmax(-1), label_smoothing=args.label_smoothing)
        else:
            lpool = F.binary_cross_entropy_with_logits(lp, y)
        loss = (lpool + args.token_weight * F.cross_entropy(lt.reshape(-1, 5), tok.reshape(-1),
                                                            label_smoothing=args.label_smoothing) +
                args.mask_weight * F.binary_cross_entropy_with_logits(lo, cells))
        if geo is not None:
            loss = loss + args.geometry_weight * F.mse_loss(geometry(feats), geo)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            on = tok != 4
            hist["shape"].append(pooled_hits(lp, y).mean().item())
            hist["token"].append((lt.argmax(-1) == tok)[on].float().mean().item())
            hist["outline"].append(((lo > 0).float() == cells).float().mean().item())
        if step % 50 == 49 or step == args.steps - 1:
            last = {k: float(np.mean(v[-50:])) for k, v in hist.items()}
            print(f"step {step + 1:4d}  loss {loss.item():.3f}  shape (pooled) {last['shape']:.2f}  "
                  f"shape (per token) {last['token']:.2f}  outline cells {last['outline']:.3f}  "
                  f"{time.time() - t0:.0f}s", flush=True)
        if args.time_limit and time.time() - t0 > args.time_limit:
            print(f"time limit at step {step + 1}", flush=True)
            break
    if args.eval:
        enc.eval()
        hits, tok_hits, tok_n = [], 0.0, 0
        with torch.no_grad():
            for i in range(0, args.eval, 64):
                px, y, tok, _, _ = batch([777_000_000 + i + k for k in range(min(64, args.eval - i))], args.scenes)
                feats = enc(px)
                hits.append(pooled_hits(pooled(feats.mean(1)), y))
                on = tok != 4
                tok_hits += (per_token(feats).argmax(-1) == tok)[on].float().sum().item()
                tok_n += on.sum().item()
        print(f"held-out {args.eval} pictures ({args.scenes}, count {args.count or '1-2'}): "
              f"shape (pooled) {torch.cat(hits).mean().item():.3f}  shape (per token) {tok_hits / tok_n:.3f}  "
              f"after {step + 1} steps, {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
