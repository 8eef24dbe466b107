"""Trains the demo MiniMind-V (gen3 architecture) from scratch on synthetic scenes, on the CPU.

    python Tools/demo-model/train.py --out Tools/demo-model/out            # the full run
    python Tools/demo-model/train.py --steps 30 --out /tmp/demo-short     # a short timing run

Every batch is drawn fresh from the seeded scene generator (step and slot decide the scene), so the run is
deterministic for a given seed and thread count and never sees the same picture twice. The loss covers the
assistant's answer tokens and the closing <|im_end|> only.

Output (in --out): `sft_vlm_<hidden>.pth` (upstream trainer layout: fp16 state dict without vision_encoder.*),
`siglip-demo-p<patch>-<size>-ve/` (SiglipVisionModel folder: config.json, preprocessor_config.json, fp16
model.safetensors), `tokenizer/` (the gen3 tokenizer files), `model_info.json`, `train_log.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

# The machine is shared: spinning OpenMP threads that wait for a descheduled sibling made a 2-thread step
# five times slower than a 1-thread one under load. Passive waiting must be chosen before torch starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402
from model import DecoderConfig, MiniMindVLM, PromptBuilder, VisionConfig, preprocess, save_upstream_layout  # noqa: E402

# How often each kind of question is asked during training.
CATEGORY_WEIGHTS = {"colour": 0.22, "shape": 0.22, "count": 0.16, "describe": 0.2, "position": 0.1, "size": 0.1}
RENDER_SIZES = [256, 256, 320, 384, 224]  # the processor resizes them all: users' pictures vary in size


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    p.add_argument("--seed", type=int, default=20261130)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--images-per-step", type=int, default=24)
    p.add_argument("--turns", type=int, default=3, help="questions per picture, as one multi-turn conversation")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1,
                   help="1: on the shared 2-core machine a 2-thread step was slower than a 1-thread one")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--vision-hidden", type=int, default=128)
    p.add_argument("--vision-layers", type=int, default=3)
    p.add_argument("--vision-heads", type=int, default=4)
    p.add_argument("--image-size", type=int, default=128, help="encoder input (pixels per side)")
    p.add_argument("--patch-size", type=int, default=16,
                   help="pixels per patch side; (size / patch)^2 patches = image tokens in the prompt")
    p.add_argument("--shape-weight", type=float, default=0.3,
                   help="override the share of shape questions (the others keep their ratios)")
    p.add_argument("--data-workers", type=int, default=1, help="processes drawing scenes (0: in the trainer)")
    p.add_argument("--aux-weight", type=float, default=1.0, help="weight of the training-only attribute probe")
    p.add_argument("--probe-images", type=int, default=0,
                   help="extra pictures per step for the training probe only (no conversation)")
    p.add_argument("--vision-warmup", type=int, default=3600,
                   help="first steps train only the encoder, projector and probe (no conversations)")
    p.add_argument("--vision-warmup-images", type=int, default=32, help="pictures per vision warm-up step")
    p.add_argument("--vision-warmup-lr", type=float, default=1e-3, help="peak learning rate of the vision warm-up (default --lr)")
    p.add_argument("--vision-warmup-schedule", choices=["cosine", "constant"], default="constant",
                   help="learning rate through the vision warm-up after its first --warmup steps: shapes are learnt "
                        "late (after ~60k pictures), so a decaying rate can end the warm-up before they are")
    p.add_argument("--sincos-positions", type=float, default=0.0,
                   help="initialise the encoder's position table as 2-D sine/cosine times this (0: random)")
    p.add_argument("--oriented-filters", type=float, default=0.0,
                   help="initialise 64 patch-embedding filters as oriented Gabor pairs times this (0: random)")
    p.add_argument("--present-weight", type=float, default=1.0,
                   help="weight of the probe's which-shapes-are-there target on the mean image feature")
    p.add_argument("--mask-weight", type=float, default=1.0, help="weight of the probe's per-patch outline target")
    p.add_argument("--vision-warmup-heads", choices=["probe", "shape"], default="shape",
                   help="the warm-up's targets: 'probe' the AuxiliaryProbe on the projected features, 'shape' "
                        "ShapeHeads on the encoder output (which shapes, the shape under each token, outlines)")
    p.add_argument("--vision-warmup-single", type=int, default=1800,
                   help="the first N warm-up steps draw one shape a picture, the rest one or two: with one shape "
                        "only, the shape under a token and the picture's shape are the same thing, and the encoder "
                        "spread each shape over every token (two-shape answers then named them in the wrong order)")
    p.add_argument("--two-shapes", type=float, default=0.65,
                   help="fraction of two-shape pictures in the conversations and in the warm-up's one-or-two part "
                        "(negative: make_scene's own one half); two-shape answers are where shapes and colours are missed")
    p.add_argument("--slot-weight", type=float, default=0.0,
                   help="weight of a per-token target in the warm-up and the probe: background, or the first or the "
                        "second shape in reading order (left before right, top before bottom), the order answers "
                        "name them in (0: off)")
    p.add_argument("--vision-lr-scale", type=float, default=0.5,
                   help="the encoder's learning rate in the conversations, relative to --lr")
    p.add_argument("--snapshot-at", type=int, nargs="*", default=[], help="also save the model after these steps")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--time-limit", type=float, default=0, help="seconds; stop early (and still save) past this")
    p.add_argument("--no-save", action="store_true")
    return p.parse_args(argv)


def category_weights(args) -> dict[str, float]:
    if args.shape_weight is None:
        return CATEGORY_WEIGHTS
    rest = 1.0 - CATEGORY_WEIGHTS["shape"]
    return {c: (args.shape_weight if c == "shape" else w * (1.0 - args.shape_weight) / rest)
            for c, w in CATEGORY_WEIGHTS.items()}


def scene_seed(seed: int, step: int, slot: int) -> int:
    return (seed * 1_000_003 + step * 1009 + slot) % (2**63)


def make_batch(args, step: int, prompts: PromptBuilder):
    """One conversation per picture: the first turn is exactly the single-question prompt users send
    (`<image>\n{question}`); the further turns (`--turns`) ask about the same picture, which lets one encoder
    pass and one run of 64 image tokens carry several answers."""
    rng = random.Random(scene_seed(args.seed, step, 999_999))
    cats, weights = list(category_weights(args)), list(category_weights(args).values())
    pixels, seqs, aux = [], [], []
    warmup = step < args.vision_warmup
    talk = 0 if warmup else args.images_per_step
    probe_only = args.vision_warmup_images if warmup else args.probe_images
    for slot in range(talk):
        sc = scenes.make_scene(scene_seed(args.seed, step, slot), count=_count(args, step, slot))
        img = scenes.render(sc, rng.choice(RENDER_SIZES))
        if rng.random() < 0.5:
            img = scenes.jpeg_roundtrip(img, rng.randint(70, 95))
        pixels.append(preprocess(img, args.image_size))
        aux.append(aux_targets(sc) + patch_targets(sc, args.image_size // args.patch_size))
        ids, labels = [], []
        for turn, cat in enumerate(_weighted_distinct(rng, cats, weights, args.turns)):
            lang = "en" if rng.random() < 0.5 else "zh"
            q = rng.choice(scenes.QUESTIONS[(cat, lang)])
            p = prompts.prompt_ids(q) if turn == 0 else prompts.next_turn_ids(q)
            a = prompts.answer_ids(scenes.answer(sc, cat, lang))
            ids += p + a
            labels += [-100] * len(p) + a
        seqs.append((ids, labels))
    for slot in range(talk, talk + probe_only):
        # Pictures seen only by the encoder and the training probe: cheap extra signal for the vision side.
        single = warmup and step < args.vision_warmup_single
        sc = scenes.make_scene(scene_seed(args.seed, step, slot), count=1 if single else _count(args, step, slot))
        img = scenes.render(sc, rng.choice(RENDER_SIZES))
        if rng.random() < 0.5:
            img = scenes.jpeg_roundtrip(img, rng.randint(70, 95))
        pixels.append(preprocess(img, args.image_size))
        aux.append(aux_targets(sc) + patch_targets(sc, args.image_size // args.patch_size))
    t = max((len(i) for i, _ in seqs), default=1)
    ids = torch.zeros(len(seqs), t, dtype=torch.long)  # right padding never reaches earlier tokens (causal)
    labels = torch.full((len(seqs), t), -100, dtype=torch.long)
    for n, (i, l) in enumerate(seqs):
        ids[n, : len(i)] = torch.tensor(i)
        labels[n, : len(l)] = torch.tensor(l)
    return torch.stack(pixels), ids, labels, torch.tensor(aux)


def _count(args, step: int, slot: int) -> int | None:
    """The number of shapes of a one-or-two-shape picture: None leaves it to make_scene (half and half)."""
    if args.two_shapes is None or args.two_shapes < 0:
        return None
    return 2 if random.Random(scene_seed(args.seed, step, slot) ^ 0x5EED).random() < args.two_shapes else 1


# Auxiliary targets: what is in each slot of the scene (reading order), "none" for an empty second slot.
AUX_GROUPS = [("count", 2)] + [(f"{a}{k}", n + 1) for k in range(2)
                               for a, n in (("colour", 8), ("shape", 4), ("size", 2), ("position", 4))]


def aux_targets(sc: scenes.Scene) -> list[int]:
    t = [sc.count - 1]
    for k in range(2):
        if k < sc.count:
            s = sc.shapes[k]
            t += [list(scenes.COLOURS).index(s.colour), scenes.SHAPES.index(s.kind), scenes.SIZES.index(s.size),
                  scenes.POSITIONS.index(s.position)]
        else:
            t += [8, 4, 2, 4]
    return t


MASK_CELLS = 4  # each image token also predicts which of its 4 x 4 cells are inside a shape


def patch_targets(sc: scenes.Scene, side: int) -> list[int]:
    """Per image token: the colour (8 = background) and the shape (4 = background) under it, then its
    4 x 4 inside/outside cells (token by token), then which shape of the reading order covers it (0 = background,
    1 first, 2 second)."""
    lab = scenes.patch_labels(sc, side)
    colour = [8 if l == 0 else list(scenes.COLOURS).index(sc.shapes[l - 1].colour) for l in lab]
    shape = [4 if l == 0 else scenes.SHAPES.index(sc.shapes[l - 1].kind) for l in lab]
    return colour + shape + scenes.patch_masks(sc, side, MASK_CELLS).reshape(-1).tolist() + [int(l) for l in lab]


class AuxiliaryProbe(torch.nn.Module):
    """Training-only linear probes on the projected image features, the decoder's view of the picture:
    one on their mean (what attention averages before it has learnt to look: count and each slot's
    attributes) and one per image token (the colour and shape under it). They give the vision encoder a direct
    signal while the decoder is still learning to look at the picture; they are not part of the model and
    are not saved."""

    def __init__(self, hidden: int):
        super().__init__()
        self.head = torch.nn.Linear(hidden, sum(n for _, n in AUX_GROUPS))
        self.patch_head = torch.nn.Linear(hidden, 9 + 5)
        self.mask_head = torch.nn.Linear(hidden, MASK_CELLS * MASK_CELLS)
        self.present_head = torch.nn.Linear(hidden, len(scenes.SHAPES))
        self.mask_weight = 1.0
        self.present_weight = 0.0
        self.slot_head = None

    def use_slots(self, weight: float):
        if weight:
            self.slot_head = torch.nn.Linear(self.head.in_features, 3)
            self.slot_weight = weight

    def forward(self, feats, targets):
        logits = self.head(feats.mean(1))
        loss, o = 0.0, 0
        for g, (_, n) in enumerate(AUX_GROUPS):
            loss = loss + F.cross_entropy(logits[:, o:o + n], targets[:, g])
            o += n
        self.last_accuracy = {}
        pooled = loss / len(AUX_GROUPS)
        # Which shapes the picture holds, whatever their order: the shape signal of the slots above at full
        # weight and without the left/right bookkeeping a mean cannot do (the probe shape_probe.py learnt with).
        slots = [g for g, (name, _) in enumerate(AUX_GROUPS) if name.startswith("shape")]
        present = torch.zeros(feats.shape[0], len(scenes.SHAPES) + 1)
        for g in slots:
            present[torch.arange(feats.shape[0]), targets[:, g]] = 1.0
        present = present[:, :len(scenes.SHAPES)]
        present_logits = self.present_head(feats.mean(1))
        if self.present_weight:
            pooled = pooled + self.present_weight * F.binary_cross_entropy_with_logits(present_logits, present)
        n_tok = feats.shape[1]
        per_tok = self.patch_head(feats)                                   # [N, 64, 14]
        pt = targets[:, len(AUX_GROUPS):]
        colour_t, shape_t = pt[:, :n_tok], pt[:, n_tok:2 * n_tok]
        mask_t = pt[:, 2 * n_tok:2 * n_tok + n_tok * MASK_CELLS ** 2].reshape(feats.shape[0], n_tok, -1).float()
        dense = (F.cross_entropy(per_tok[..., :9].reshape(-1, 9), colour_t.reshape(-1)) +
                 F.cross_entropy(per_tok[..., 9:].reshape(-1, 5), shape_t.reshape(-1))) / 2
        # The outline inside each patch, colour-blind: the first thing a from-scratch encoder must see before
        # it can tell a corner from an arc (without it the shape probes stayed at chance for thousands of pictures).
        dense = dense + self.mask_weight * F.binary_cross_entropy_with_logits(self.mask_head(feats), mask_t)
        if self.slot_head is not None:
            slot_t, slot_logits = pt[:, -n_tok:], self.slot_head(feats)
            dense = dense + self.slot_weight * F.cross_entropy(slot_logits.reshape(-1, 3), slot_t.reshape(-1))
        with torch.no_grad():
            # How well the image tokens tell the shape under them: the vision side's progress on shapes.
            on = shape_t != 4
            hit = (per_tok[..., 9:].argmax(-1) == shape_t)[on]
            self.last_accuracy["token_shape"] = hit.float().mean().item() if hit.numel() else 0.0
            self.last_accuracy["shapes_present"] = ((present_logits > 0).float() == present).all(1).float().mean().item()
            if self.slot_head is not None and (slot_t == 2).any():
                two = (slot_t == 2).any(1, keepdim=True) & (slot_t != 0)
                self.last_accuracy["slot"] = (slot_logits.argmax(-1) == slot_t)[two].float().mean().item()
        return pooled + dense


class ShapeHeads(torch.nn.Module):
    """The vision warm-up's targets, read straight from the encoder's output as in shape_probe.py: which
    shapes the picture holds (from the mean of the tokens), the shape under each token and the outline cells
    inside it. Nothing else competes for the encoder there: with AuxiliaryProbe's many pooled targets on the
    projected features the per-token shape stayed at chance through 2000 warm-up steps, where these heads
    alone start telling shapes apart after about 1000 (both with the scene radii of scenes.RADIUS).
    Training only, not saved."""

    def __init__(self, width: int):
        super().__init__()
        self.pooled = torch.nn.Linear(width, len(scenes.SHAPES))
        self.per_token = torch.nn.Linear(width, len(scenes.SHAPES) + 1)
        self.outline = torch.nn.Linear(width, MASK_CELLS * MASK_CELLS)
        self.slot = None

    def use_slots(self, weight: float):
        """Also the per-token reading-order slot (--slot-weight): which of the two shapes a token belongs to
        depends on where the other one is, so the token has to look beyond its own patch."""
        if weight:
            self.slot = torch.nn.Linear(self.per_token.in_features, 3)
            self.slot_weight = weight

    def forward(self, feats, targets):
        n, n_tok = feats.shape[0], feats.shape[1]
        present = torch.zeros(n, len(scenes.SHAPES) + 1)
        for g, (name, _) in enumerate(AUX_GROUPS):
            if name.startswith("shape"):
                present[torch.arange(n), targets[:, g]] = 1.0
        present = present[:, :len(scenes.SHAPES)]
        pt = targets[:, len(AUX_GROUPS):]
        shape_t = pt[:, n_tok:2 * n_tok]
        cells = pt[:, 2 * n_tok:2 * n_tok + n_tok * MASK_CELLS ** 2].reshape(n, n_tok, -1).float()
        pooled = self.pooled(feats.mean(1))
        per_tok = self.per_token(feats)
        loss = (F.binary_cross_entropy_with_logits(pooled, present) +
                F.cross_entropy(per_tok.reshape(-1, per_tok.shape[-1]), shape_t.reshape(-1)) +
                F.binary_cross_entropy_with_logits(self.outline(feats), cells))
        slot_t = pt[:, -n_tok:]
        if self.slot is not None:
            slot_logits = self.slot(feats)
            loss = loss + self.slot_weight * F.cross_entropy(slot_logits.reshape(-1, 3), slot_t.reshape(-1))
        with torch.no_grad():
            on = shape_t != len(scenes.SHAPES)
            hit = (per_tok.argmax(-1) == shape_t)[on]
            self.last_accuracy = {"token_shape": hit.float().mean().item() if hit.numel() else 0.0,
                                  "shapes_present": ((pooled > 0).float() == present).all(1).float().mean().item()}
            second = slot_t == 2  # tokens of a picture's second shape: where the slot is not just "covered"
            if self.slot is not None and second.any():
                two = second.any(1, keepdim=True) & (slot_t != 0)
                self.last_accuracy["slot"] = (slot_logits.argmax(-1) == slot_t)[two].float().mean().item()
        return loss


class SceneBatches(torch.utils.data.Dataset):
    """Batch `step` of the run; drawn in a worker process so that drawing overlaps training."""

    def __init__(self, args):
        self.args = args
        self.prompts = None

    def __len__(self):
        return self.args.steps

    def __getitem__(self, step):
        if self.prompts is None:
            torch.set_num_threads(1)
            self.prompts = PromptBuilder(image_token_len=(self.args.image_size // self.args.patch_size) ** 2)
        return make_batch(self.args, step, self.prompts)


def _weighted_distinct(rng: random.Random, items, weights, k):
    items, weights = list(items), list(weights)
    out = []
    for _ in range(min(k, len(items))):
        i = rng.choices(range(len(items)), weights=weights)[0]
        out.append(items.pop(i))
        weights.pop(i)
    return out


def loss_on_answers(model: MiniMindVLM, pixels, ids, labels, aux_targets=None, probe=None, warmup_heads=None):
    if ids.shape[0] == 0 and warmup_heads is not None:  # a vision warm-up step on the encoder's own output
        return torch.zeros(()), warmup_heads(model.vision_encoder(pixels), aux_targets)
    feats = model.encode_images(pixels)
    if ids.shape[0] == 0:  # a vision warm-up step: the probe alone
        return torch.zeros(()), probe(feats, aux_targets)
    h = model.hidden_states(ids, feats[: ids.shape[0]])
    # Position p predicts token p+1: score only where the next token is an answer token.
    target = labels[:, 1:]
    sel = target != -100
    logits = model.lm_head(h[:, :-1][sel])                    # the 6400-way head only where it counts
    loss = F.cross_entropy(logits, target[sel])
    aux = probe(feats, aux_targets) if probe is not None else torch.zeros(())
    return loss, aux


def init_weights(model: MiniMindVLM, seed: int):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
        elif p.dim() == 1:
            torch.nn.init.ones_(p)
        elif name == "model.embed_tokens.weight":
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        else:
            std = 0.02
            if name.endswith(("o_proj.weight", "down_proj.weight", "out_proj.weight", "fc2.weight")):
                std = 0.02 / math.sqrt(2 * max(model.lm_config.num_hidden_layers, 1))
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * std)


def oriented_filters(out_channels: int, patch: int, orientations: int = 8) -> torch.Tensor:
    """Patch-embedding filters [out, 3, patch, patch]: odd and even Gabor pairs at `orientations` angles on
    luminance and on each colour channel, then zeros for the rest (which init_weights fills at random).
    A linear patch embedding must see an outline at any offset inside the patch; a quadrature pair's two
    responses together do (their energy hardly moves with the offset), so the encoder starts from edge
    orientation and spends its few thousand pictures on telling a corner from an arc."""
    w = torch.zeros(out_channels, 3, patch, patch, dtype=torch.float64)
    c = (patch - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(patch, dtype=torch.float64) - c, torch.arange(patch, dtype=torch.float64) - c,
                            indexing="ij")
    sigma, wavelength = patch / 3.0, patch / 1.5
    colour_sets = [torch.tensor([0.299, 0.587, 0.114]), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]),
                   torch.tensor([0, 0, 1.0])]
    k = 0
    for mix in colour_sets:
        for o in range(orientations):
            th = math.pi * o / orientations
            u = xx * math.cos(th) + yy * math.sin(th)
            env = torch.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
            for phase in (torch.sin, torch.cos):
                g = env * phase(2 * math.pi * u / wavelength)
                g = g - g.mean()
                g = g / g.norm()
                if k < out_channels:
                    w[k] = mix.double()[:, None, None] * g[None] / mix.norm()
                k += 1
    return w.float()


def sincos_positions(side: int, dim: int, scale: float) -> torch.Tensor:
    """2-D sine/cosine position table (row-major patches): half the channels encode the row, half the column.
    As an initial value it tells attention which patches are neighbours from the first step, which a
    from-scratch encoder otherwise has to learn from the pictures before it can compare a patch with the next."""
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    grid = torch.arange(side, dtype=torch.float64)
    rows, cols = torch.meshgrid(grid, grid, indexing="ij")
    parts = []
    for coord in (rows.reshape(-1), cols.reshape(-1)):
        ang = coord[:, None] * omega[None]
        parts += [ang.sin(), ang.cos()]
    table = torch.cat(parts, dim=1)
    if table.shape[1] < dim:
        table = torch.cat([table, torch.zeros(side * side, dim - table.shape[1], dtype=torch.float64)], dim=1)
    return (table * scale).float()


def build_model(args) -> MiniMindVLM:
    vc = VisionConfig(hidden_size=args.vision_hidden, intermediate_size=4 * args.vision_hidden,
                      num_hidden_layers=args.vision_layers, num_attention_heads=args.vision_heads,
                      image_size=args.image_size, patch_size=args.patch_size)
    lm = DecoderConfig(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
                       num_key_value_heads=args.kv_heads, image_token_len=vc.num_patches)
    model = MiniMindVLM(lm, vc)
    init_weights(model, args.seed)
    if args.oriented_filters:
        with torch.no_grad():
            pe = model.vision_encoder.vision_model.embeddings.patch_embedding.weight
            bank = oriented_filters(pe.shape[0], vc.patch_size) * args.oriented_filters
            n = min(pe.shape[0], 4 * 8 * 2)
            pe[:n] = bank[:n]
    if args.sincos_positions:
        with torch.no_grad():
            model.vision_encoder.vision_model.embeddings.position_embedding.weight.copy_(
                sincos_positions(vc.image_size // vc.patch_size, vc.hidden_size, args.sincos_positions))
    return model


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed % 2**32)
    random.seed(args.seed)
    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params / 1e6:.2f} M (decoder hidden {args.hidden} x {args.layers}, "
          f"ffn {model.lm_config.intermediate_size}; vision {args.vision_hidden} x {args.vision_layers})", flush=True)

    probe = AuxiliaryProbe(args.hidden) if args.aux_weight > 0 else None
    if probe is not None:
        probe.mask_weight = args.mask_weight
        probe.present_weight = args.present_weight
        probe.use_slots(args.slot_weight)
    warmup_heads = ShapeHeads(args.vision_hidden) if args.vision_warmup_heads == "shape" else None
    if warmup_heads is not None:
        warmup_heads.use_slots(args.slot_weight)
    params = (list(model.named_parameters()) + (list(probe.named_parameters()) if probe else []) +
              ([("warmup." + n, p) for n, p in warmup_heads.named_parameters()] if warmup_heads else []))
    # The encoder keeps a learning rate of its own in the conversations (--vision-lr-scale): shape features
    # learnt in the warm-up at 1e-3 were slower to form at 2e-3 in shape_probe.py, and the decoder, which
    # starts from scratch there, needs the full rate.
    groups = []
    for is_vision in (True, False):
        for decays in (True, False):
            ps = [p for n, p in params if n.startswith("vision_encoder.") == is_vision and (p.dim() >= 2) == decays]
            groups.append({"params": ps, "weight_decay": args.weight_decay if decays else 0.0,
                           "vision": is_vision})
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98))

    def lr_at(step):
        # The vision warm-up and the conversations each get their own warm-up and cosine: the decoder starts
        # from scratch when the conversations begin and needs the full learning rate then.
        vision = step < args.vision_warmup
        peak = (args.vision_warmup_lr or args.lr) if vision else args.lr
        start, end = (0, args.vision_warmup) if vision else (args.vision_warmup, args.steps)
        step -= start
        if step < args.warmup:
            return peak * (step + 1) / args.warmup
        if vision and args.vision_warmup_schedule == "constant":
            return peak
        prog = (step - args.warmup) / max(1, end - start - args.warmup)
        return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, prog))))

    log = []
    start = time.time()
    ema, tok_shape, present_ema, slot_ema = None, None, None, None
    data_time = 0.0
    step = 0
    loader = torch.utils.data.DataLoader(SceneBatches(args), batch_size=None, shuffle=False,
                                         num_workers=args.data_workers, prefetch_factor=4 if args.data_workers else None)
    batches = iter(loader)
    for step in range(args.steps):
        t0 = time.time()
        batch = next(batches)
        data_time += time.time() - t0
        for g in opt.param_groups:
            g["lr"] = lr_at(step) * (args.vision_lr_scale if g["vision"] and step >= args.vision_warmup else 1.0)
        model.train()
        loss, aux = loss_on_answers(model, *batch, probe=probe, warmup_heads=warmup_heads)
        watched = warmup_heads if warmup_heads is not None and step < args.vision_warmup else probe
        opt.zero_grad(set_to_none=True)
        (loss + args.aux_weight * aux).backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        lv, av = loss.item(), aux.item()
        tok = watched.last_accuracy.get("token_shape", 0.0) if watched is not None else 0.0
        tok_shape = tok if tok_shape is None else 0.9 * tok_shape + 0.1 * tok
        pres = watched.last_accuracy.get("shapes_present", 0.0) if watched is not None else 0.0
        present_ema = pres if present_ema is None else 0.9 * present_ema + 0.1 * pres
        if watched is not None and "slot" in watched.last_accuracy:  # reading-order slot on two-shape pictures
            sl = watched.last_accuracy["slot"]
            slot_ema = sl if slot_ema is None else 0.9 * slot_ema + 0.1 * sl
        if step >= args.vision_warmup:
            ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        if step % args.log_every == 0 or step == args.steps - 1:
            el = time.time() - start
            print(f"step {step:5d}  loss {lv:.4f}  ema {ema or 0:.4f}  aux {av:.3f}  token-shape {tok_shape:.2f}  shapes-present {present_ema:.2f}  "
                  f"{'' if slot_ema is None else f'slot {slot_ema:.2f}  '}lr {lr_at(step):.2e}  "
                  f"{(step + 1) / el:.3f} steps/s  data {data_time / el:.0%}  elapsed {el:.0f}s", flush=True)
            log.append({"step": step, "loss": lv, "ema": ema, "aux": av, "token_shape": tok_shape, "shapes_present": present_ema,
                        "slot": slot_ema, "elapsed": el})
        if step + 1 in args.snapshot_at:
            save_upstream_layout(model, os.path.join(args.out, f"snapshot-{step + 1}"), f"sft_vlm_{args.hidden}.pth",
                                 model.vision_config.folder_name)
            print(f"snapshot saved at step {step + 1}", flush=True)
        if args.time_limit and time.time() - start > args.time_limit:
            print(f"time limit reached at step {step}", flush=True)
            break
    elapsed = time.time() - start
    print(f"trained {step + 1} steps in {elapsed:.0f}s; final loss {lv:.4f} (ema {ema or 0:.4f})", flush=True)
    if args.no_save:
        return model
    model.eval()
    info = {"training": {"seed": args.seed, "steps": step + 1, "images_per_step": args.images_per_step,
                         "turns": args.turns, "lr": args.lr, "threads": args.threads,
                         "aux_weight": args.aux_weight, "probe_images": args.probe_images,
                         "vision_layers": args.vision_layers, "image_size": args.image_size,
                         "patch_size": args.patch_size, "shape_weight": args.shape_weight,
                         "scene_radius": scenes.RADIUS, "vision_warmup": args.vision_warmup,
                         "vision_warmup_lr": args.vision_warmup_lr, "vision_lr_scale": args.vision_lr_scale,
                         "present_weight": args.present_weight, "vision_warmup_heads": args.vision_warmup_heads,
                         "vision_warmup_single": args.vision_warmup_single,
                         "two_shapes": args.two_shapes, "slot_weight": args.slot_weight,
                         "seconds": round(elapsed, 1), "final_loss": lv, "final_loss_ema": ema,
                         "torch": torch.__version__, "command": " ".join(sys.argv)}}
    paths = save_upstream_layout(model, args.out, f"sft_vlm_{args.hidden}.pth", model.vision_config.folder_name,
                                 extra_info=info)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f)
    print("saved", json.dumps(paths), flush=True)
    return model


if __name__ == "__main__":
    main()
