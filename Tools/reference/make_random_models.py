#!/usr/bin/env python3
"""Full-size MiniMind-V checkpoints with random weights, for speed measurements only.

Writes, under OUT/<name>/: the LLM as upstream's trainer saves it (sft_vlm_<hidden>.pth, float16)
with a config.json, and the vision folder (config.json, preprocessor_config.json and
model.safetensors with only the vision_model.* tensors, float16), copied in shape from the
released encoders (CLIP ViT-B/16 at 224 px for gen2, SigLIP2 base patch32 at 256 px for gen3).
The tokenizer is the fixture's. Then: minimindv convert --checkpoint OUT/<name>/sft_vlm_*.pth
--vision OUT/<name>/vision --tokenizer shared/minimind/fixtures/<gen>/tiny --type f32 ...

  make_random_models.py OUT [MiniMind2-Small-V MiniMind2-V minimind-3v]
"""
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

SHARED = os.environ.get("MINIMINDV_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))

MODELS = {
    "MiniMind2-Small-V": dict(gen=2, hidden=512, layers=8, heads=8, kv=2, ff=1408),
    "MiniMind2-V": dict(gen=2, hidden=768, layers=16, heads=8, kv=2, ff=2048),
    "minimind-3v": dict(gen=3, hidden=768, layers=8, heads=8, kv=4, ff=2432, head_dim=96),
}


def llm_state(m, vision_hidden, rng):
    H, hd = m["hidden"], m.get("head_dim", m["hidden"] // m["heads"])
    def lin(o, i):
        return torch.from_numpy(rng.standard_normal((o, i), dtype=np.float32) / math.sqrt(i))
    sd = {"model.embed_tokens.weight": torch.from_numpy(rng.standard_normal((6400, H), dtype=np.float32) * 0.02)}
    for n in range(m["layers"]):
        p = f"model.layers.{n}."
        sd[p + "self_attn.q_proj.weight"] = lin(m["heads"] * hd, H)
        sd[p + "self_attn.k_proj.weight"] = lin(m["kv"] * hd, H)
        sd[p + "self_attn.v_proj.weight"] = lin(m["kv"] * hd, H)
        sd[p + "self_attn.o_proj.weight"] = lin(H, m["heads"] * hd)
        if m["gen"] == 3:
            sd[p + "self_attn.q_norm.weight"] = torch.ones(hd)
            sd[p + "self_attn.k_norm.weight"] = torch.ones(hd)
        sd[p + "input_layernorm.weight"] = torch.ones(H)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(H)
        sd[p + "mlp.gate_proj.weight"] = lin(m["ff"], H)
        sd[p + "mlp.up_proj.weight"] = lin(m["ff"], H)
        sd[p + "mlp.down_proj.weight"] = lin(H, m["ff"])
    sd["model.norm.weight"] = torch.ones(H)
    if m["gen"] == 2:
        sd["vision_proj.vision_proj.0.weight"] = lin(H, vision_hidden)
        sd["vision_proj.vision_proj.0.bias"] = torch.zeros(H)
    else:
        sd["vision_proj.mlp.0.weight"] = torch.ones(vision_hidden)
        sd["vision_proj.mlp.0.bias"] = torch.zeros(vision_hidden)
        sd["vision_proj.mlp.1.weight"] = lin(H, vision_hidden)
        sd["vision_proj.mlp.1.bias"] = torch.zeros(H)
        sd["vision_proj.mlp.3.weight"] = lin(H, H)
        sd["vision_proj.mlp.3.bias"] = torch.zeros(H)
    sd = {k: v.half() for k, v in sd.items()}
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()
    return sd


def vision_folder(gen, out, rng):
    vh, ff, layers = 768, 3072, 12
    clip = gen == 2
    patch, size = (16, 224) if clip else (32, 256)
    positions = (size // patch) ** 2 + (1 if clip else 0)
    def r(*shape, scale=0.02):
        return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float16)
    t = {"vision_model.embeddings.patch_embedding.weight": r(vh, 3, patch, patch),
         "vision_model.embeddings.position_embedding.weight": r(positions, vh)}
    if clip:
        t["vision_model.embeddings.class_embedding"] = r(vh)
        t["vision_model.pre_layrnorm.weight"] = np.ones(vh, np.float16)
        t["vision_model.pre_layrnorm.bias"] = np.zeros(vh, np.float16)
    else:
        t["vision_model.embeddings.patch_embedding.bias"] = np.zeros(vh, np.float16)
    t["vision_model.post_layernorm.weight"] = np.ones(vh, np.float16)
    t["vision_model.post_layernorm.bias"] = np.zeros(vh, np.float16)
    for n in range(layers):
        p = f"vision_model.encoder.layers.{n}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[p + f"self_attn.{name}.weight"] = r(vh, vh)
            t[p + f"self_attn.{name}.bias"] = np.zeros(vh, np.float16)
        t[p + "mlp.fc1.weight"] = r(ff, vh)
        t[p + "mlp.fc1.bias"] = np.zeros(ff, np.float16)
        t[p + "mlp.fc2.weight"] = r(vh, ff)
        t[p + "mlp.fc2.bias"] = np.zeros(vh, np.float16)
        for ln in ("layer_norm1", "layer_norm2"):
            t[p + ln + ".weight"] = np.ones(vh, np.float16)
            t[p + ln + ".bias"] = np.zeros(vh, np.float16)
    os.makedirs(out, exist_ok=True)
    save_file(t, os.path.join(out, "model.safetensors"))
    fixture = os.path.join(SHARED, "minimind", "fixtures", f"gen{gen}", "clip-vit-base-patch16" if clip else "siglip2-base-p32-256-ve")
    config = json.load(open(os.path.join(fixture, "config.json")))
    vision = config["vision_config"] if clip else config
    vision.update(hidden_size=vh, intermediate_size=ff, num_hidden_layers=layers, num_attention_heads=12,
                  image_size=size, patch_size=patch)
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=1)
    shutil.copy(os.path.join(fixture, "preprocessor_config.json"), out)


def main():
    out = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    for name in names:
        m = MODELS[name]
        rng = np.random.default_rng(7)
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        vision_folder(m["gen"], os.path.join(folder, "vision"), rng)
        torch.save(llm_state(m, 768, rng), os.path.join(folder, f"sft_vlm_{m['hidden']}.pth"))
        config = {"hidden_size": m["hidden"], "num_hidden_layers": m["layers"], "num_attention_heads": m["heads"],
                  "num_key_value_heads": m["kv"], "intermediate_size": m["ff"], "vocab_size": 6400,
                  "rms_norm_eps": 1e-5 if m["gen"] == 2 else 1e-6, "rope_theta": 1e6, "use_moe": False}
        if "head_dim" in m:
            config["head_dim"] = m["head_dim"]
        json.dump(config, open(os.path.join(folder, "config.json"), "w"), indent=1)
        print("wrote", folder)


if __name__ == "__main__":
    main()
