#!/usr/bin/env python3
"""A PyTorch implementation of the MiniMind-V decoder and projectors written from
shared/spec/minimind-v.md, in float32, with no KV cache (every step re-runs the whole prompt).

Uses:
  verify         run it on the upstream fixtures (shared/minimind/fixtures/<gen>/tiny) and print the
                 error against upstream's logits and greedy ids: this is what makes the MoE fixtures
                 below trustworthy, since the dense path is checked against upstream itself.
  make-moe OUT   write tiny random MoE checkpoints for gen2 (4 experts, top-2, 1 shared, renormalised)
                 and gen3 (4 experts, top-1, no shared) in upstream's trainer layout (sft_vlm_*.pth,
                 float16) plus a config.json, and the reference outputs as .npy, reusing the fixture
                 vision encoders' outputs (ref-images/*/vision_raw.npy) and prompts (input_ids.npy).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

SHARED = os.environ.get("MINIMINDV_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))


def rmsnorm(x, w, eps):
    return w * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps))


def layernorm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def rope(x, positions, theta):
    """x [T, heads, hd]; rotate-half form."""
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2)[: hd // 2].float() / hd))
    angles = torch.outer(positions.float(), inv)
    cos = torch.cat([angles.cos(), angles.cos()], -1)[:, None, :]
    sin = torch.cat([angles.sin(), angles.sin()], -1)[:, None, :]
    rotated = torch.cat([-x[..., hd // 2:], x[..., : hd // 2]], -1)
    return x * cos + rotated * sin


class Config:
    def __init__(self, d):
        self.gen = d["generation"]
        self.hidden = d["hidden_size"]
        self.layers = d["num_hidden_layers"]
        self.heads = d["num_attention_heads"]
        self.kv_heads = d["num_key_value_heads"]
        self.head_dim = d.get("head_dim") or self.hidden // self.heads
        self.ff = d["intermediate_size"]
        self.eps = d["rms_norm_eps"]
        self.theta = d.get("rope_theta", 1e6)
        self.vocab = d["vocab_size"]
        self.use_moe = d.get("use_moe", False)
        if self.gen == 2:
            self.experts = d.get("n_routed_experts", 4)
            self.shared_experts = d.get("n_shared_experts", 1)
        else:
            self.experts = d.get("num_experts", 4)
            self.shared_experts = 0
        self.top_k = d.get("num_experts_per_tok", 2 if self.gen == 2 else 1)
        self.norm_topk = d.get("norm_topk_prob", True)
        self.image_id = 34 if self.gen == 2 else 12
        self.image_tokens = 196 if self.gen == 2 else 64


def ffn(x, sd, prefix):
    g = x @ sd[prefix + "gate_proj.weight"].T
    u = x @ sd[prefix + "up_proj.weight"].T
    return (torch.nn.functional.silu(g) * u) @ sd[prefix + "down_proj.weight"].T


def moe(x, sd, prefix, cfg, router_gaps=None):
    router_logits = x @ sd[prefix + "gate.weight"].T                       # [T, E]
    probs = torch.softmax(router_logits, dim=-1)
    order = torch.sort(probs, dim=-1, descending=True, stable=True)
    weights, experts = order.values[:, : cfg.top_k], order.indices[:, : cfg.top_k]
    if router_gaps is not None and cfg.top_k < cfg.experts:
        # Gap between the k-th and (k+1)-th router logits: how far each choice is from a tie.
        ranked = torch.sort(router_logits, dim=-1, descending=True).values
        router_gaps.append(float((ranked[:, cfg.top_k - 1] - ranked[:, cfg.top_k]).min()))
    if cfg.norm_topk and (cfg.gen >= 3 or cfg.top_k > 1):
        weights = weights / weights.sum(-1, keepdim=True)
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(cfg.top_k):
            e = int(experts[t, j])
            out[t] += weights[t, j] * ffn(x[t: t + 1], sd, f"{prefix}experts.{e}.")[0]
    for s in range(cfg.shared_experts):
        out = out + ffn(x, sd, f"{prefix}shared_experts.{s}.")
    return out


def project(features, sd, gen):
    """features [P, vision hidden] -> [P, hidden]."""
    if gen == 2:
        return features @ sd["vision_proj.vision_proj.0.weight"].T + sd["vision_proj.vision_proj.0.bias"]
    x = layernorm(features, sd["vision_proj.mlp.0.weight"], sd["vision_proj.mlp.0.bias"], 1e-5)
    x = x @ sd["vision_proj.mlp.1.weight"].T + sd["vision_proj.mlp.1.bias"]
    x = torch.nn.functional.gelu(x)
    return x @ sd["vision_proj.mlp.3.weight"].T + sd["vision_proj.mlp.3.bias"]


def embed(ids, sd, cfg, images):
    h = sd["model.embed_tokens.weight"][ids].clone()
    runs, t = [], 0
    while t < len(ids):
        if ids[t] == cfg.image_id:
            start = t
            while t < len(ids) and ids[t] == cfg.image_id:
                t += 1
            if t - start == cfg.image_tokens:
                runs.append(start)
        else:
            t += 1
    assert len(runs) == len(images), f"{len(runs)} placeholder runs, {len(images)} images"
    for start, feats in zip(runs, images):
        h[start: start + cfg.image_tokens] = feats
    return h


def forward(ids, sd, cfg, images, router_gaps=None):
    """Logits at every position, [T, vocab]; also returns the final-norm hidden states."""
    h = embed(ids, sd, cfg, images)
    T = h.shape[0]
    positions = torch.arange(T)
    mask = torch.full((T, T), float("-inf")).triu(1)
    g = cfg.heads // cfg.kv_heads
    for n in range(cfg.layers):
        p = f"model.layers.{n}."
        x = rmsnorm(h, sd[p + "input_layernorm.weight"], cfg.eps)
        q = (x @ sd[p + "self_attn.q_proj.weight"].T).view(T, cfg.heads, cfg.head_dim)
        k = (x @ sd[p + "self_attn.k_proj.weight"].T).view(T, cfg.kv_heads, cfg.head_dim)
        v = (x @ sd[p + "self_attn.v_proj.weight"].T).view(T, cfg.kv_heads, cfg.head_dim)
        if cfg.gen >= 3:
            q = rmsnorm(q, sd[p + "self_attn.q_norm.weight"], cfg.eps)
            k = rmsnorm(k, sd[p + "self_attn.k_norm.weight"], cfg.eps)
        q, k = rope(q, positions, cfg.theta), rope(k, positions, cfg.theta)
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(cfg.head_dim) + mask
        attn = torch.softmax(scores.float(), dim=-1)
        out = torch.einsum("hts,shd->thd", attn, v).reshape(T, cfg.heads * cfg.head_dim)
        h = h + out @ sd[p + "self_attn.o_proj.weight"].T
        x = rmsnorm(h, sd[p + "post_attention_layernorm.weight"], cfg.eps)
        if cfg.use_moe:
            h = h + moe(x, sd, p + "mlp.", cfg, router_gaps)
        else:
            h = h + ffn(x, sd, p + "mlp.")
    final = rmsnorm(h, sd["model.norm.weight"], cfg.eps)
    return final @ sd["model.embed_tokens.weight"].T, final


def greedy(ids, sd, cfg, images, steps=24):
    ids = list(ids)
    out, margins = [], []
    for _ in range(steps):
        logits, _ = forward(ids, sd, cfg, images)
        top2 = torch.topk(logits[-1], 2).values
        margins.append(float(top2[0] - top2[1]))
        token = int(torch.argmax(logits[-1]))
        out.append(token)
        ids.append(token)
    return out, margins


def load_pth(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float() for k, v in sd.items() if "mask" not in k}


def case_images(fixture, case_name, vision_feats, sd, gen):
    manifest = json.load(open(os.path.join(fixture, "tiny", "manifest.json")))
    names = manifest["cases"][case_name]["images"]
    return names, [project(vision_feats[n], sd, gen) for n in names]


def vision_features(gen_dir):
    feats = {}
    for name in sorted(os.listdir(os.path.join(gen_dir, "ref-images"))):
        feats[name] = torch.from_numpy(np.load(os.path.join(gen_dir, "ref-images", name, "vision_raw.npy")))
    return feats


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def verify(args):
    for gen in ("gen2", "gen3"):
        gen_dir = os.path.join(SHARED, "minimind", "fixtures", gen)
        manifest = json.load(open(os.path.join(gen_dir, "tiny", "manifest.json")))
        d = dict(manifest["llm_config"], generation=int(gen[-1]))
        cfg = Config(d)
        sd = load_pth(os.path.join(gen_dir, "tiny", "sft_vlm_64.pth"))
        feats = vision_features(gen_dir)
        for case in manifest["cases"]:
            ref = os.path.join(gen_dir, "tiny", "ref", "cases", case)
            ids = np.load(os.path.join(ref, "input_ids.npy")).tolist()
            names, images = case_images(gen_dir, case, feats, sd, cfg.gen)
            logits, _ = forward(ids, sd, cfg, images)
            err = rel(logits[-1].numpy(), np.load(os.path.join(ref, "logits_last.npy")))
            tokens, _ = greedy(ids, sd, cfg, images)
            same = tokens == np.load(os.path.join(ref, "greedy_ids.npy")).tolist()
            print(f"{gen} {case}: logits rel err {err:.2e}, greedy identical: {same}")
            if err > 1e-4 or not same:
                sys.exit(1)


def random_moe_state(cfg, vision_hidden, generator):
    def normal(shape, std):
        return torch.randn(shape, generator=generator) * std

    def linear(out_f, in_f, gain=1.0):
        return normal((out_f, in_f), gain / math.sqrt(in_f))

    def norm(n, scale=1.0):
        return (1 + 0.1 * torch.randn(n, generator=generator)) * scale

    H, hd = cfg.hidden, cfg.head_dim
    sd = {"model.embed_tokens.weight": normal((cfg.vocab, H), 0.5)}
    for n in range(cfg.layers):
        p = f"model.layers.{n}."
        sd[p + "self_attn.q_proj.weight"] = linear(cfg.heads * hd, H, 2.0)
        sd[p + "self_attn.k_proj.weight"] = linear(cfg.kv_heads * hd, H, 2.0)
        sd[p + "self_attn.v_proj.weight"] = linear(cfg.kv_heads * hd, H)
        sd[p + "self_attn.o_proj.weight"] = linear(H, cfg.heads * hd, 3.0)
        if cfg.gen >= 3:
            sd[p + "self_attn.q_norm.weight"] = norm(hd, 2.0)
            sd[p + "self_attn.k_norm.weight"] = norm(hd, 2.0)
        sd[p + "input_layernorm.weight"] = norm(H)
        sd[p + "post_attention_layernorm.weight"] = norm(H)
        sd[p + "mlp.gate.weight"] = linear(cfg.experts, H, 2.0)
        names = [f"experts.{e}." for e in range(cfg.experts)] + [f"shared_experts.{s}." for s in range(cfg.shared_experts)]
        for e in names:
            sd[p + "mlp." + e + "gate_proj.weight"] = linear(cfg.ff, H)
            sd[p + "mlp." + e + "up_proj.weight"] = linear(cfg.ff, H)
            sd[p + "mlp." + e + "down_proj.weight"] = linear(H, cfg.ff, 3.0)
    sd["model.norm.weight"] = norm(H)
    if cfg.gen == 2:
        sd["vision_proj.vision_proj.0.weight"] = linear(H, vision_hidden)
        sd["vision_proj.vision_proj.0.bias"] = normal((H,), 0.02)
    else:
        sd["vision_proj.mlp.0.weight"] = norm(vision_hidden)
        sd["vision_proj.mlp.0.bias"] = normal((vision_hidden,), 0.02)
        sd["vision_proj.mlp.1.weight"] = linear(H, vision_hidden)
        sd["vision_proj.mlp.1.bias"] = normal((H,), 0.02)
        sd["vision_proj.mlp.3.weight"] = linear(H, H)
        sd["vision_proj.mlp.3.bias"] = normal((H,), 0.02)
    # As upstream's trainer saves it: every tensor float16, lm_head a separate copy of the embedding.
    sd = {k: v.half() for k, v in sd.items()}
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()
    return sd


def make_moe(args):
    out_root = args.out
    for gen, seed in (("gen2", 2026_2), ("gen3", 2026_3)):
        gen_dir = os.path.join(SHARED, "minimind", "fixtures", gen)
        manifest = json.load(open(os.path.join(gen_dir, "tiny", "manifest.json")))
        vision_hidden = json.load(open(os.path.join(gen_dir, "manifest.json")))["vision"]["config"]["hidden_size"]
        d = {"generation": int(gen[-1]), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 6400, "rope_theta": 1e6,
             "use_moe": True, "norm_topk_prob": True, "max_position_embeddings": 32768}
        if gen == "gen2":
            d.update(rms_norm_eps=1e-5, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1)
        else:
            d.update(rms_norm_eps=1e-6, num_experts=4, num_experts_per_tok=1, head_dim=8, moe_intermediate_size=64)
        cfg = Config(d)
        generator = torch.Generator().manual_seed(seed)
        saved = random_moe_state(cfg, vision_hidden, generator)
        sd = {k: v.float() for k, v in saved.items()}
        folder = os.path.join(out_root, gen + "-moe")
        os.makedirs(folder, exist_ok=True)
        torch.save(saved, os.path.join(folder, "sft_vlm_32_moe.pth"))
        json.dump(d, open(os.path.join(folder, "config.json"), "w"), indent=1)
        feats = vision_features(gen_dir)
        summary = {"generation": gen, "seed": seed, "config": d, "torch": torch.__version__,
                   "how": "Tools/reference/minimind_reference.py make-moe (float32, no KV cache)",
                   "vision_features": f"shared/minimind/fixtures/{gen}/ref-images/<image>/vision_raw.npy",
                   "prompts": f"shared/minimind/fixtures/{gen}/tiny/ref/cases/<case>/input_ids.npy", "cases": {}}
        for name, f in feats.items():
            path = os.path.join(folder, "images", name)
            os.makedirs(path, exist_ok=True)
            np.save(os.path.join(path, "vision_proj.npy"), project(f, sd, cfg.gen).numpy().astype(np.float32))
        for case in manifest["cases"]:
            ref = os.path.join(gen_dir, "tiny", "ref", "cases", case)
            ids = np.load(os.path.join(ref, "input_ids.npy")).tolist()
            names, images = case_images(gen_dir, case, feats, sd, cfg.gen)
            gaps = []
            logits, _ = forward(ids, sd, cfg, images, gaps)
            tokens, margins = greedy(ids, sd, cfg, images)
            path = os.path.join(folder, "cases", case)
            os.makedirs(path, exist_ok=True)
            np.save(os.path.join(path, "logits_last.npy"), logits[-1].numpy().astype(np.float32))
            np.save(os.path.join(path, "greedy_ids.npy"), np.array(tokens, dtype=np.int64))
            summary["cases"][case] = {"images": names, "n_tokens": len(ids), "greedy_ids": tokens,
                                      "greedy_min_top2_margin": min(margins),
                                      "router_min_topk_logit_gap_prefill": min(gaps) if gaps else None}
            print(gen, case, "margin", min(margins), "router gap", min(gaps) if gaps else None)
        json.dump(summary, open(os.path.join(folder, "manifest.json"), "w"), indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("verify")
    moe_parser = sub.add_parser("make-moe")
    moe_parser.add_argument("out")
    args = parser.parse_args()
    torch.set_num_threads(2)
    {"verify": verify, "make-moe": make_moe}[args.command](args)


if __name__ == "__main__":
    main()
