#!/usr/bin/env python3
"""PyTorch CPU baseline for `minimindv bench`: MiniMind-V written from ../shared/spec/minimind-v.md.

float32, 2 threads (--threads), torch.inference_mode. It loads the files users have (trainer .pth,
vision folder, tokenizer files) and measures the figures of issue 4's speed table:

  - vision encoder ms/image at batch 1 and batch 8 (pixel values -> encoder features; the projector
    is timed separately and reported in the JSON);
  - prefill of the eval prompt (image placeholders + question, templated as upstream's eval scripts
    do it), LLM only (embedding + substitution + layers + logits at the last position), ms;
  - decode tokens/s at batch 1 and batch 8 (all sequences; greedy, KV cache, 64 steps);
  - one job: JPEG file -> Pillow decode + preprocess -> vision -> projector -> prefill -> 64 new tokens, s.

Every figure is the median of --runs timed runs after one warm-up run.

    python3 Tools/bench/make_full_size.py /tmp/minimindv-full
    python3 Tools/bench/torch_bench.py /tmp/minimindv-full/MiniMind2-Small-V --json small.json
    python3 Tools/bench/torch_bench.py --check      # same numbers as upstream on the tiny fixtures

A model folder holds the trainer `sft_vlm_<hidden>.pth`, tokenizer.json, tokenizer_config.json and
(written by make_full_size.py) bench.json naming the vision folder and the attention geometry;
without bench.json pass --vision and --heads/--kv-heads.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = Path(__file__).resolve()
SHARED = (HERE.parents[2] / ".." / "shared").resolve()
if not SHARED.is_dir():
    SHARED = Path("/work/shared")
FIXTURES = SHARED / "minimind" / "fixtures"

EVAL = {
    # (question as upstream's eval scripts pass it, the eval image)
    2: ("{img}\n描述一下这个图像的内容。", FIXTURES / "gen2" / "images" / "Dog-Woman-Sea.jpg"),
    3: ("<image>\n请描述这张图中的主要物体和场景。", FIXTURES / "gen3" / "images" / "image-01-golden-dog-balloons.jpg"),
}
NEW_TOKENS = 64


# ----------------------------------------------------------------------------------------------
# Loading


def load_tensor_file(path):
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def to_f32(sd):
    return {k: v.float().contiguous() for k, v in sd.items()}


# ----------------------------------------------------------------------------------------------
# Images: Pillow decode and the Hugging Face processors' preprocessing, from preprocessor_config.json


class Preprocessor:
    def __init__(self, config):
        self.resample = config.get("resample", 3)
        self.mean = np.array(config.get("image_mean", [0.5] * 3), dtype=np.float32)
        self.std = np.array(config.get("image_std", [0.5] * 3), dtype=np.float32)
        self.scale = config.get("rescale_factor", 1 / 255)
        size = config.get("size", 224)
        self.crop = None
        if isinstance(size, dict) and "height" in size:
            self.fixed = (size["height"], size["width"])
            self.shortest = None
        else:
            self.fixed = None
            self.shortest = size["shortest_edge"] if isinstance(size, dict) else size
        if config.get("do_center_crop", False):
            crop = config.get("crop_size", self.shortest)
            self.crop = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)

    def resized(self, image):
        """The resized (and centre-cropped) 8-bit RGB image, [H, W, 3]."""
        image = image.convert("RGB")
        if self.fixed:
            h, w = self.fixed
        else:
            width, height = image.size
            short, long = (width, height) if width <= height else (height, width)
            new_long = int(self.shortest * long / short)
            w, h = (self.shortest, new_long) if width <= height else (new_long, self.shortest)
        pixels = np.asarray(image.resize((w, h), resample=self.resample))
        if self.crop:
            ch, cw = self.crop
            top, left = (h - ch) // 2, (w - cw) // 2
            pixels = pixels[top:top + ch, left:left + cw]
        return pixels

    def __call__(self, image):
        """Channel-first float32 pixel values, [3, H, W]."""
        x = (self.resized(image).astype(np.float64) * self.scale).astype(np.float32)
        x = (x - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def load_image(path):
    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


# ----------------------------------------------------------------------------------------------
# Vision encoders (CLIP ViT-B/16, SigLIP2) and projectors


def layer_norm(x, p, eps):
    return F.layer_norm(x, (x.shape[-1],), p["weight"], p["bias"], eps)


def sub(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


class VisionEncoder:
    def __init__(self, folder):
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if "vision_config" in config:  # a full CLIPModel folder
            config = config["vision_config"]
        self.clip = config.get("model_type", "clip_vision_model").startswith("clip")
        self.hidden = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.layers = config["num_hidden_layers"]
        self.patch = config["patch_size"]
        self.eps = config.get("layer_norm_eps", 1e-5 if self.clip else 1e-6)
        act = config.get("hidden_act", "quick_gelu" if self.clip else "gelu_pytorch_tanh")
        self.act = {
            "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
            "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
            "gelu": F.gelu,
        }[act]
        weights = folder / "model.safetensors"
        if not weights.exists():
            weights = folder / "pytorch_model.bin"
        sd = to_f32(sub(load_tensor_file(weights), "vision_model."))
        self.embed = sub(sd, "embeddings.")
        self.pre_norm = sub(sd, "pre_layrnorm.")
        self.post_norm = sub(sd, "post_layernorm.")
        self.blocks = [sub(sd, f"encoder.layers.{i}.") for i in range(self.layers)]
        self.preprocess = Preprocessor(json.loads((folder / "preprocessor_config.json").read_text()))

    def attention(self, x, p):
        b, n, c = x.shape
        hd = c // self.heads
        q = F.linear(x, p["q_proj.weight"], p["q_proj.bias"]).view(b, n, self.heads, hd).transpose(1, 2)
        k = F.linear(x, p["k_proj.weight"], p["k_proj.bias"]).view(b, n, self.heads, hd).transpose(1, 2)
        v = F.linear(x, p["v_proj.weight"], p["v_proj.bias"]).view(b, n, self.heads, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(hd)) v, no mask
        return F.linear(out.transpose(1, 2).reshape(b, n, c), p["out_proj.weight"], p["out_proj.bias"])

    def __call__(self, pixels):
        """[B, 3, H, W] pixel values -> [B, tokens, hidden] features (CLIP: no post-norm, class token dropped)."""
        e = self.embed
        x = F.conv2d(pixels, e["patch_embedding.weight"], e.get("patch_embedding.bias"), stride=self.patch)
        x = x.flatten(2).transpose(1, 2)  # row-major patches
        if self.clip:
            cls = e["class_embedding"].expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1)
        x = x + e["position_embedding.weight"]
        if self.clip:
            x = layer_norm(x, self.pre_norm, self.eps)
        for p in self.blocks:
            x = x + self.attention(layer_norm(x, sub(p, "layer_norm1."), self.eps), sub(p, "self_attn."))
            h = layer_norm(x, sub(p, "layer_norm2."), self.eps)
            h = F.linear(self.act(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"], p["mlp.fc2.bias"])
            x = x + h
        if self.clip:
            return x[:, 1:]
        return layer_norm(x, self.post_norm, self.eps)


class Projector:
    def __init__(self, sd):
        self.p = sub(sd, "vision_proj.")
        self.mlp = "mlp.1.weight" in self.p

    def __call__(self, x):
        p = self.p
        if not self.mlp:  # gen2: Linear 768 -> hidden
            return F.linear(x, p["vision_proj.0.weight"], p["vision_proj.0.bias"])
        x = F.layer_norm(x, (x.shape[-1],), p["mlp.0.weight"], p["mlp.0.bias"], 1e-5)
        x = F.gelu(F.linear(x, p["mlp.1.weight"], p["mlp.1.bias"]))  # exact (erf) GELU
        return F.linear(x, p["mlp.3.weight"], p["mlp.3.bias"])


# ----------------------------------------------------------------------------------------------
# The LLM


def rms_norm(x, w, eps):
    x = x.float()
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class KVCache:
    """Per-layer [B, kv_heads, capacity, head_dim] keys and values; each sequence has its own length."""

    def __init__(self, layers, batch, kv_heads, capacity, head_dim):
        self.k = [torch.zeros(batch, kv_heads, capacity, head_dim) for _ in range(layers)]
        self.v = [torch.zeros(batch, kv_heads, capacity, head_dim) for _ in range(layers)]
        self.lengths = torch.zeros(batch, dtype=torch.long)
        self.capacity = capacity


class Decoder:
    def __init__(self, sd, heads, kv_heads, gen):
        sd = {k: v for k, v in sd.items() if "mask" not in k}
        if any(".mlp.experts." in k for k in sd):
            raise SystemExit("this baseline implements the dense models only (the benchmark models are dense)")
        self.gen = gen
        self.eps = 1e-5 if gen == 2 else 1e-6
        self.embed = sd["model.embed_tokens.weight"]  # tied: also the output head
        self.hidden = self.embed.shape[1]
        self.heads, self.kv_heads = heads, kv_heads
        self.head_dim = sd["model.layers.0.self_attn.q_proj.weight"].shape[0] // heads
        self.layers = []
        n = 0
        while f"model.layers.{n}.input_layernorm.weight" in sd:
            self.layers.append(sub(sd, f"model.layers.{n}."))
            n += 1
        self.norm = sd["model.norm.weight"]
        hd = self.head_dim
        inv_freq = 1.0 / (1e6 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(32768, dtype=torch.float32), inv_freq)
        self.cos = torch.cat([angles.cos(), angles.cos()], dim=-1)
        self.sin = torch.cat([angles.sin(), angles.sin()], dim=-1)

    def new_cache(self, batch, capacity):
        return KVCache(len(self.layers), batch, self.kv_heads, capacity, self.head_dim)

    def qkv(self, x, p, positions):
        """x [B, T, hidden] -> q [B, heads, T, hd], k, v [B, kv_heads, T, hd], RoPE applied."""
        b, t, _ = x.shape
        hd = self.head_dim
        q = F.linear(x, p["self_attn.q_proj.weight"]).view(b, t, self.heads, hd)
        k = F.linear(x, p["self_attn.k_proj.weight"]).view(b, t, self.kv_heads, hd)
        v = F.linear(x, p["self_attn.v_proj.weight"]).view(b, t, self.kv_heads, hd)
        if self.gen == 3:
            q = rms_norm(q, p["self_attn.q_norm.weight"], self.eps)
            k = rms_norm(k, p["self_attn.k_norm.weight"], self.eps)
        cos, sin = self.cos[positions].unsqueeze(2), self.sin[positions].unsqueeze(2)  # [B, T, 1, hd]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def ffn(self, x, p):
        return F.linear(F.silu(F.linear(x, p["mlp.gate_proj.weight"])) * F.linear(x, p["mlp.up_proj.weight"]), p["mlp.down_proj.weight"])

    def logits(self, h):
        return F.linear(rms_norm(h, self.norm, self.eps), self.embed)

    def prefill(self, h, cache, row):
        """One sequence's prompt embeddings [T, hidden] into cache row `row`; logits at its last position."""
        t = h.shape[0]
        x = h.unsqueeze(0)
        positions = torch.arange(t).unsqueeze(0)
        for n, p in enumerate(self.layers):
            q, k, v = self.qkv(rms_norm(x, p["input_layernorm.weight"], self.eps), p, positions)
            cache.k[n][row, :, :t] = k[0]
            cache.v[n][row, :, :t] = v[0]
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = x + F.linear(out.transpose(1, 2).reshape(1, t, -1), p["self_attn.o_proj.weight"])
            x = x + self.ffn(rms_norm(x, p["post_attention_layernorm.weight"], self.eps), p)
        cache.lengths[row] = t
        return self.logits(x[0, -1])

    def decode(self, tokens, cache):
        """One step for every sequence of the cache: tokens [B] at positions cache.lengths -> logits [B, vocab]."""
        b = tokens.shape[0]
        positions = cache.lengths.clone()
        span = int(positions.max()) + 1
        rows = torch.arange(b)
        # Keys beyond each sequence's own length are masked (sequences of different lengths share a step).
        masked = torch.arange(span).unsqueeze(0) > positions.unsqueeze(1)  # [B, span]
        bias = torch.zeros(b, 1, 1, span).masked_fill(masked.view(b, 1, 1, span), float("-inf"))
        group = self.heads // self.kv_heads
        scale = 1.0 / math.sqrt(self.head_dim)
        x = self.embed[tokens].unsqueeze(1)
        for n, p in enumerate(self.layers):
            q, k, v = self.qkv(rms_norm(x, p["input_layernorm.weight"], self.eps), p, positions.unsqueeze(1))
            cache.k[n][rows, :, positions] = k[:, :, 0]
            cache.v[n][rows, :, positions] = v[:, :, 0]
            keys, values = cache.k[n][:, :, :span], cache.v[n][:, :, :span]
            # query head j reads kv head j // group: view the queries as [B, kv_heads, group, hd]
            scores = q.reshape(b, self.kv_heads, group, self.head_dim) @ keys.transpose(-1, -2) * scale + bias
            out = torch.softmax(scores.float(), dim=-1) @ values  # [B, kv_heads, group, hd]
            x = x + F.linear(out.reshape(b, 1, -1), p["self_attn.o_proj.weight"])
            x = x + self.ffn(rms_norm(x, p["post_attention_layernorm.weight"], self.eps), p)
        cache.lengths += 1
        return self.logits(x[:, 0])


# ----------------------------------------------------------------------------------------------
# The whole model: prompt, substitution, generation


class MiniMindV:
    def __init__(self, checkpoint, vision, tokenizer_dir, heads=None, kv_heads=None):
        from transformers import AutoTokenizer
        sd = to_f32(load_tensor_file(checkpoint))
        self.gen = 3 if "model.layers.0.self_attn.q_norm.weight" in sd else 2
        q_rows = sd["model.layers.0.self_attn.q_proj.weight"].shape[0]
        k_rows = sd["model.layers.0.self_attn.k_proj.weight"].shape[0]
        if heads is None or kv_heads is None:  # as the converter infers them from a trainer .pth
            if self.gen == 3:
                hd = sd["model.layers.0.self_attn.q_norm.weight"].shape[0]
            else:
                hd = k_rows // (kv_heads or 2)
            heads, kv_heads = q_rows // hd, k_rows // hd
        self.decoder = Decoder(sd, heads, kv_heads, self.gen)
        self.projector = Projector(sd)
        self.vision = VisionEncoder(vision)
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        if self.gen == 2:
            self.placeholder, self.image_tokens = self.tokenizer.convert_tokens_to_ids("@"), 196
        else:
            self.placeholder, self.image_tokens = self.tokenizer.convert_tokens_to_ids("<|image_pad|>"), 64

    def prompt_ids(self, template, images):
        """Upstream's eval prompt: one placeholder run per image, then the question, chat-templated."""
        if self.gen == 2:
            text = template.replace("{img}", "@" * 196)
        else:
            text = template.replace("<image>", "<|image_pad|>" * 64)
        chat = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(chat, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    def embed(self, ids, features):
        """Token embeddings with the k-th placeholder run overwritten by the k-th image's features."""
        h = self.decoder.embed[ids].clone()
        n, k, i = self.image_tokens, 0, 0
        ids_list = ids.tolist()
        while i + n <= len(ids_list):
            if k < len(features) and all(t == self.placeholder for t in ids_list[i:i + n]):
                h[i:i + n] = features[k]
                k += 1
                i += n
            else:
                i += 1
        return h

    def image_features(self, pixels):
        return self.projector(self.vision(pixels))

    def generate(self, prompts, steps, capacity=None):
        """Greedy decoding for a batch of prompt embeddings (each prefilled alone); returns [B, steps] ids."""
        capacity = capacity or max(h.shape[0] for h in prompts) + steps + 1
        cache = self.decoder.new_cache(len(prompts), capacity)
        first = torch.stack([self.decoder.prefill(h, cache, row) for row, h in enumerate(prompts)])
        tokens = first.argmax(-1)
        out = [tokens]
        for _ in range(steps - 1):
            tokens = self.decoder.decode(tokens, cache).argmax(-1)
            out.append(tokens)
        return torch.stack(out, dim=1)


# ----------------------------------------------------------------------------------------------
# --check: the tiny fixtures, made by upstream's own code


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def check(args):
    failures = 0

    def expect(ok, what):
        nonlocal failures
        print(("ok    " if ok else "FAIL  ") + what)
        failures += 0 if ok else 1

    for gen in (2, 3):
        root = FIXTURES / f"gen{gen}"
        manifest = json.loads((root / "tiny" / "manifest.json").read_text())
        llm = manifest["llm_config"]
        vision_dir = root / ("clip-vit-base-patch16" if gen == 2 else "siglip2-base-p32-256-ve")
        model = MiniMindV(root / "tiny" / "sft_vlm_64.pth", vision_dir, root / "tiny",
                          heads=llm["num_attention_heads"], kv_heads=llm["num_key_value_heads"])
        features = {}
        for name in sorted(p.name for p in (root / "ref-images").iterdir()):
            image = load_image(root / "images" / f"{name}.jpg")
            resized = model.vision.preprocess.resized(image)
            ref_u8 = np.load(root / "ref-images" / name / "resized_u8.npy")
            expect(np.array_equal(resized.transpose(2, 0, 1), ref_u8), f"gen{gen} {name}: resized 8-bit image identical to the processor's")
            pixels = model.vision.preprocess(image)
            ref_px = np.load(root / "ref-images" / name / "pixel_values.npy")[0]
            e = float(np.abs(pixels.numpy() - ref_px).max())
            expect(e <= 1e-5, f"gen{gen} {name}: pixel values max abs error {e:.2e} (<= 1e-5)")
            raw = model.vision(pixels.unsqueeze(0))[0]
            e = rel_err(raw, np.load(root / "ref-images" / name / "vision_raw.npy"))
            expect(e <= 1e-3, f"gen{gen} {name}: vision features rel error {e:.2e} (<= 1e-3)")
            proj = model.projector(raw)
            e = rel_err(proj, np.load(root / "tiny" / "ref" / "images" / name / "vision_proj.npy"))
            expect(e <= 1e-3, f"gen{gen} {name}: projected features rel error {e:.2e} (<= 1e-3)")
            features[name] = proj
        prompts, greedy_refs = [], []
        for case, info in manifest["cases"].items():
            ref = root / "tiny" / "ref" / "cases" / case
            ids = torch.from_numpy(np.load(ref / "input_ids.npy").reshape(-1)).long()
            ours = model.prompt_ids(info["prompt_template"], info["images"])
            expect(torch.equal(ours, ids), f"gen{gen} {case}: templated prompt ids equal upstream's ({len(ids)} tokens)")
            h = model.embed(ids, [features[n] for n in info["images"]])
            cache = model.decoder.new_cache(1, len(ids) + 1)
            logits = model.decoder.prefill(h, cache, 0)
            e = rel_err(logits, np.load(ref / "logits_last.npy").reshape(-1))
            expect(e <= 1e-3, f"gen{gen} {case}: first-step logits rel error {e:.2e} (<= 1e-3)")
            greedy = model.generate([h], 24)[0]
            ref_greedy = np.load(ref / "greedy_ids.npy").reshape(-1)
            expect(np.array_equal(greedy.numpy(), ref_greedy), f"gen{gen} {case}: 24 greedy tokens (KV cache, batch 1) identical")
            prompts.append(h)
            greedy_refs.append(ref_greedy)
        # The batch path: every case at once, sequences of different lengths in one decode step.
        batch = model.generate(prompts, 24)
        same = all(np.array_equal(batch[i].numpy(), greedy_refs[i]) for i in range(len(prompts)))
        lengths = [p.shape[0] for p in prompts]
        expect(same, f"gen{gen}: batch of {len(prompts)} sequences (lengths {lengths}) decodes the same 24 greedy tokens each")
    for folder in args.models:
        check_full_size_vision(Path(folder), expect)
    print("all checks passed" if failures == 0 else f"{failures} checks failed")
    return 1 if failures else 0


def check_full_size_vision(root, expect):
    """The generated full-size vision folders load in transformers (no missing or unexpected keys)
    and give the encoder features this implementation computes."""
    import transformers
    image = load_image(EVAL[2][1])
    for name, cls in (("clip-vit-base-patch16", transformers.CLIPModel), ("siglip2-base-p32-256-ve", transformers.SiglipVisionModel)):
        folder = root / name
        if not folder.is_dir():
            continue
        hf, info = cls.from_pretrained(str(folder), dtype=torch.float32, output_loading_info=True)
        clean = not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
        expect(clean, f"{folder}: loads as {cls.__name__} with no missing/unexpected/mismatched keys")
        ours = VisionEncoder(folder)
        pixels = ours.preprocess(image).unsqueeze(0)
        if name.startswith("clip"):
            theirs = hf.vision_model(pixel_values=pixels).last_hidden_state[:, 1:]
        else:
            theirs = hf(pixel_values=pixels).last_hidden_state
        mine = ours(pixels)
        e = rel_err(mine, theirs)
        finite = bool(torch.isfinite(mine).all())
        expect(e <= 1e-3 and finite, f"{folder}: features {tuple(mine.shape)} (max abs {float(mine.abs().max()):.1f}) equal transformers' (rel error {e:.2e})")


# ----------------------------------------------------------------------------------------------
# The benchmark


CPU_SECONDS = {}  # figure -> median process CPU seconds (all threads) of its timed runs


def median_time(fn, runs, setup=None, figure=None):
    """Median wall seconds of `runs` timed runs after one warm-up. The process CPU time is kept too:
    on a shared, oversubscribed machine wall time grows with the load and CPU time much less."""
    times, cpu = [], []
    for i in range(runs + 1):  # the first run warms up
        state = setup() if setup else None
        start, cpu_start = time.perf_counter(), time.process_time()
        fn(state) if setup else fn()
        elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
        if i > 0:
            times.append(elapsed)
            cpu.append(cpu_elapsed)
    if figure:
        CPU_SECONDS[figure] = statistics.median(cpu)
    return statistics.median(times), times


def bench(folder, args):
    folder = Path(folder)
    info = json.loads((folder / "bench.json").read_text()) if (folder / "bench.json").exists() else {}
    checkpoint = next(folder.glob("sft_vlm_*.pth"))
    vision = Path(args.vision) if args.vision else (folder / info["vision_folder"]).resolve()
    heads = args.heads or info.get("heads")
    kv_heads = args.kv_heads or info.get("kv_heads")
    load_avg_start = os.getloadavg()
    t0 = time.perf_counter()
    model = MiniMindV(checkpoint, vision, folder, heads=heads, kv_heads=kv_heads)
    load_s = time.perf_counter() - t0
    name = info.get("name", folder.name)
    template, image_path = EVAL[model.gen]
    if args.image:
        image_path = Path(args.image)
    runs = args.runs
    d = model.decoder
    print(f"[{name}] gen{model.gen} {d.hidden}x{len(d.layers)} heads {d.heads}/{d.kv_heads} hd {d.head_dim}; "
          f"vision {model.vision.hidden}x{model.vision.layers}; load {load_s:.1f} s; load average {load_avg_start[0]:.2f}", file=sys.stderr)

    with torch.inference_mode():
        pixels = model.vision.preprocess(load_image(image_path))
        one = pixels.unsqueeze(0)
        eight = pixels.unsqueeze(0).repeat(8, 1, 1, 1)
        v1, v1_all = median_time(lambda: model.vision(one), runs, figure="vision_b1")
        v8, v8_all = median_time(lambda: model.vision(eight), runs, figure="vision_b8_batch")
        raw = model.vision(one)
        proj, _ = median_time(lambda: model.projector(raw), runs)
        features = model.projector(raw)[0]
        print(f"[{name}] vision ms/image: batch 1 {v1 * 1e3:.0f}, batch 8 {v8 / 8 * 1e3:.0f}", file=sys.stderr)

        ids = model.prompt_ids(template, [image_path])
        h = model.embed(ids, [features])
        capacity = len(ids) + NEW_TOKENS + 1

        def prefill():
            cache = d.new_cache(1, capacity)
            h = model.embed(ids, [features])
            d.prefill(h, cache, 0)
        pf, pf_all = median_time(prefill, runs, figure="prefill")
        print(f"[{name}] prefill of {len(ids)} tokens: {pf * 1e3:.0f} ms", file=sys.stderr)

        def prefilled(batch):
            def setup():
                cache = d.new_cache(batch, capacity)
                first = torch.stack([d.prefill(h, cache, row) for row in range(batch)])
                return cache, first.argmax(-1)
            return setup

        def decode(state):
            cache, tokens = state
            for _ in range(NEW_TOKENS):
                tokens = d.decode(tokens, cache).argmax(-1)
        dec1, dec1_all = median_time(decode, runs, prefilled(1), figure="decode_b1_64_steps")
        print(f"[{name}] decode batch 1: {NEW_TOKENS / dec1:.1f} tokens/s", file=sys.stderr)
        dec8, dec8_all = median_time(decode, runs, prefilled(8), figure="decode_b8_64_steps")
        print(f"[{name}] decode batch 8: {8 * NEW_TOKENS / dec8:.1f} tokens/s", file=sys.stderr)

        def job():
            pixels = model.vision.preprocess(load_image(image_path))
            features = model.image_features(pixels.unsqueeze(0))[0]
            ids = model.prompt_ids(template, [image_path])
            return model.generate([model.embed(ids, [features])], NEW_TOKENS)
        jb, jb_all = median_time(job, runs, figure="job")
        print(f"[{name}] one job: {jb:.2f} s", file=sys.stderr)

    load_avg_end = os.getloadavg()
    ms = lambda xs: [round(x * 1e3, 2) for x in xs]
    return {
        "model": name,
        "generation": model.gen,
        "llm": {"hidden": d.hidden, "layers": len(d.layers), "heads": d.heads, "kv_heads": d.kv_heads, "head_dim": d.head_dim,
                "ffn": d.layers[0]["mlp.gate_proj.weight"].shape[0]},
        "checkpoint": str(checkpoint),
        "vision_folder": str(vision),
        "image": str(image_path),
        "prompt_tokens": len(ids),
        "new_tokens": NEW_TOKENS,
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "torch": torch.__version__,
        "runs": runs,
        "vision_ms_per_image_b1": v1 * 1e3,
        "vision_ms_per_image_b8": v8 / 8 * 1e3,
        "projector_ms_b1": proj * 1e3,
        "prefill_ms": pf * 1e3,
        "prefill_tokens_per_s": len(ids) / pf,
        "decode_tokens_per_s_b1": NEW_TOKENS / dec1,
        "decode_tokens_per_s_b8": 8 * NEW_TOKENS / dec8,
        "job_s": jb,
        "samples_ms": {"vision_b1": ms(v1_all), "vision_b8_batch": ms(v8_all), "prefill": ms(pf_all),
                       "decode_b1_64_steps": ms(dec1_all), "decode_b8_64_steps": ms(dec8_all), "job": ms(jb_all)},
        "cpu_seconds_median": dict(CPU_SECONDS),
        "load_average_start": load_avg_start,
        "load_average_end": load_avg_end,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_s": load_s,
    }


def table(results):
    head = "| | " + " | ".join(f"{r['model']} {r['llm']['hidden']}x{r['llm']['layers']}" for r in results) + " |"
    rows = [
        ("vision encoder ms/image, batch 1 / 8", lambda r: f"{r['vision_ms_per_image_b1']:.0f} / {r['vision_ms_per_image_b8']:.0f}"),
        ("prefill of the eval prompt, LLM only, ms", lambda r: f"{r['prefill_ms']:.0f} ({r['prompt_tokens']} tokens)"),
        ("decode tokens/s, batch 1 / batch 8 (all sequences)", lambda r: f"{r['decode_tokens_per_s_b1']:.1f} / {r['decode_tokens_per_s_b8']:.0f}"),
        (f"one job (JPEG to {NEW_TOKENS} new tokens), s", lambda r: f"{r['job_s']:.2f}"),
        ("one job, process CPU s (both threads)", lambda r: f"{r['cpu_seconds_median']['job']:.2f}" if "cpu_seconds_median" in r else "-"),
        ("load average (1 min) at start / end", lambda r: f"{r['load_average_start'][0]:.1f} / {r['load_average_end'][0]:.1f}"),
    ]
    lines = [head, "|---" * (len(results) + 1) + "|"]
    lines += ["| " + label + " | " + " | ".join(f(r) for r in results) + " |" for label, f in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="model folders (made by make_full_size.py), benchmarked one after another")
    parser.add_argument("--check", action="store_true", help="compare with upstream's outputs on the tiny fixtures, then exit; with a folder made by make_full_size.py, also its vision folders against transformers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (after one warm-up run)")
    parser.add_argument("--image", help="the eval image (default: the generation's eval photo in the fixtures)")
    parser.add_argument("--vision", help="vision folder (default: from the model folder's bench.json)")
    parser.add_argument("--heads", type=int)
    parser.add_argument("--kv-heads", type=int)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--merge", nargs="*", default=[], help="earlier --json outputs to include in the table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.check:
        with torch.inference_mode():
            sys.exit(check(args))
    results = []
    for path in args.merge:
        loaded = json.loads(Path(path).read_text())
        results += loaded if isinstance(loaded, list) else [loaded]
    fresh = [bench(m, args) for m in args.models]
    if args.json:
        Path(args.json).write_text(json.dumps(fresh if len(fresh) != 1 else fresh[0], indent=1) + "\n")
    results += fresh
    if not results:
        parser.error("give model folders, --merge files or --check")
    print(table(results))


if __name__ == "__main__":
    main()
