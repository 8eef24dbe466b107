#!/usr/bin/env python3
"""Write a full-size MiniMind2-V checkpoint set with random weights, for the converter benchmark.

    make_benchmark_model.py OUT_DIR [--hidden 768 --layers 16]

OUT_DIR/sft_vlm_768.pth               trainer layout: fp16 state dict, lm_head a separate equal copy
OUT_DIR/clip-vit-base-patch16/        full CLIPModel folder: ViT-B/16 vision tower (12 x 768, MLP 3072)
                                      plus a small text tower, fp16 model.safetensors, config.json,
                                      preprocessor_config.json
OUT_DIR/tokenizer.json, tokenizer_config.json   copied from ../shared/minimind/gen2
Not for the repository: the files are ~500 MB.
"""
import argparse
import json
import math
import os
import shutil

import torch
from safetensors.torch import save_file


def rand(*shape, scale=0.02):
    return (torch.randn(*shape) * scale).to(torch.float16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../../shared/minimind"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    h, layers, heads, kv, vocab = args.hidden, args.layers, 8, 2, 6400
    hd = h // heads
    ff = 64 * math.ceil(int(h * 8 / 3) / 64)
    sd = {"model.embed_tokens.weight": rand(vocab, h)}
    for n in range(layers):
        p = f"model.layers.{n}."
        sd[p + "self_attn.q_proj.weight"] = rand(heads * hd, h)
        sd[p + "self_attn.k_proj.weight"] = rand(kv * hd, h)
        sd[p + "self_attn.v_proj.weight"] = rand(kv * hd, h)
        sd[p + "self_attn.o_proj.weight"] = rand(h, heads * hd)
        sd[p + "input_layernorm.weight"] = (1 + rand(h, scale=0.1)).to(torch.float16)
        sd[p + "post_attention_layernorm.weight"] = (1 + rand(h, scale=0.1)).to(torch.float16)
        sd[p + "mlp.gate_proj.weight"] = rand(ff, h)
        sd[p + "mlp.up_proj.weight"] = rand(ff, h)
        sd[p + "mlp.down_proj.weight"] = rand(h, ff)
    sd["model.norm.weight"] = (1 + rand(h, scale=0.1)).to(torch.float16)
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()
    sd["vision_proj.vision_proj.0.weight"] = rand(h, 768)
    sd["vision_proj.vision_proj.0.bias"] = rand(h)
    torch.save(sd, os.path.join(args.out, f"sft_vlm_{h}.pth"))

    vh, vff, vl, th = 768, 3072, 12, 512
    clip = {
        "vision_model.embeddings.class_embedding": rand(vh),
        "vision_model.embeddings.patch_embedding.weight": rand(vh, 3, 16, 16),
        "vision_model.embeddings.position_embedding.weight": rand(197, vh),
        "vision_model.pre_layrnorm.weight": rand(vh), "vision_model.pre_layrnorm.bias": rand(vh),
        "vision_model.post_layernorm.weight": rand(vh), "vision_model.post_layernorm.bias": rand(vh),
        "visual_projection.weight": rand(512, vh), "text_projection.weight": rand(512, th),
        "logit_scale": torch.tensor(4.6, dtype=torch.float16),
        "text_model.embeddings.token_embedding.weight": rand(49408, th),
        "text_model.embeddings.position_embedding.weight": rand(77, th),
        "text_model.final_layer_norm.weight": rand(th), "text_model.final_layer_norm.bias": rand(th),
    }
    for n in range(vl):
        p = f"vision_model.encoder.layers.{n}."
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"]:
            clip[p + f"self_attn.{proj}.weight"] = rand(vh, vh)
            clip[p + f"self_attn.{proj}.bias"] = rand(vh)
        for ln in ["layer_norm1", "layer_norm2"]:
            clip[p + f"{ln}.weight"] = rand(vh)
            clip[p + f"{ln}.bias"] = rand(vh)
        clip[p + "mlp.fc1.weight"], clip[p + "mlp.fc1.bias"] = rand(vff, vh), rand(vff)
        clip[p + "mlp.fc2.weight"], clip[p + "mlp.fc2.bias"] = rand(vh, vff), rand(vh)
    folder = os.path.join(args.out, "clip-vit-base-patch16")
    os.makedirs(folder, exist_ok=True)
    save_file(clip, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    vision_config = {"hidden_size": vh, "intermediate_size": vff, "num_hidden_layers": vl, "num_attention_heads": 12,
                     "image_size": 224, "patch_size": 16, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                     "num_channels": 3, "projection_dim": 512, "model_type": "clip_vision_model"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"architectures": ["CLIPModel"], "model_type": "clip", "vision_config": vision_config,
                   "text_config": {"hidden_size": th, "model_type": "clip_text_model"}, "projection_dim": 512}, f, indent=2)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump({"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                   "feature_extractor_type": "CLIPFeatureExtractor",
                   "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
                   "resample": 3, "size": 224}, f, indent=2)
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(args.shared, "gen2", name), os.path.join(args.out, name))


if __name__ == "__main__":
    main()
