#!/usr/bin/env python3
"""Write full-size MiniMind-V checkpoints with random weights, in the layouts users have.

For speed measurements only: the weights are random (scaled so activations stay finite), the
files are laid out exactly as upstream's trainer and the Hugging Face vision folders lay them out
(see ../shared/spec/minimind-v.md and the fixture manifests in ../shared/minimind/fixtures/).

    python3 Tools/bench/make_full_size.py [OUT]        # default /tmp/minimindv-full

OUT/
  clip-vit-base-patch16/      full CLIPModel folder (ViT-B/16 vision tower, tiny text tower as in the fixture)
  siglip2-base-p32-256-ve/    SiglipVisionModel folder (base, patch 32, 256 px, with its unused pooling head)
  MiniMind2-Small-V/sft_vlm_512.pth + tokenizer.json + tokenizer_config.json   (gen2, 512 x 8)
  MiniMind2-V/sft_vlm_768.pth + tokenizer files                                 (gen2, 768 x 16)
  minimind-3v/sft_vlm_768.pth + tokenizer files                                 (gen3, 768 x 8)

Never commit these files (about 0.7 GB in all).
"""
import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

HERE = Path(__file__).resolve()
SHARED = (HERE.parents[2] / ".." / "shared").resolve()
if not SHARED.is_dir():
    SHARED = Path("/work/shared")
MINIMIND = SHARED / "minimind"
FIXTURES = MINIMIND / "fixtures"

# The released geometries (spec table).
MODELS = {
    "MiniMind2-Small-V": dict(gen=2, hidden=512, layers=8, heads=8, kv_heads=2, head_dim=64, ffn=1408, vision="clip-vit-base-patch16"),
    "MiniMind2-V": dict(gen=2, hidden=768, layers=16, heads=8, kv_heads=2, head_dim=96, ffn=2048, vision="clip-vit-base-patch16"),
    "minimind-3v": dict(gen=3, hidden=768, layers=8, heads=8, kv_heads=4, head_dim=96, ffn=2432, vision="siglip2-base-p32-256-ve"),
}
VOCAB = 6400
# Same recipe as the fixtures' tiny models: N(0, gain^2 / fan_in) with larger gains on the
# matrices whose outputs feed the residual stream or the attention logits.
GAINS = {"o_proj": 3.0, "down_proj": 3.0, "q_proj": 2.0, "k_proj": 2.0}


class Weights:
    """Seeded random tensors in the fixtures' scales, stored as float16."""

    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.gen, dtype=torch.float32)

    def linear(self, out_features, in_features, gain=1.0):
        return (self.randn(out_features, in_features) * (gain / math.sqrt(in_features))).half()

    def norm(self, n, scale=1.0):
        return ((1.0 + 0.1 * self.randn(n)) * scale).half()

    def bias(self, n):
        return (0.02 * self.randn(n)).half()


def llm_state_dict(spec, seed):
    w = Weights(seed)
    h, hd = spec["hidden"], spec["head_dim"]
    sd = {}
    embed = (0.5 * w.randn(VOCAB, h)).half()
    sd["model.embed_tokens.weight"] = embed
    for n in range(spec["layers"]):
        p = f"model.layers.{n}."
        sd[p + "self_attn.q_proj.weight"] = w.linear(spec["heads"] * hd, h, GAINS["q_proj"])
        sd[p + "self_attn.k_proj.weight"] = w.linear(spec["kv_heads"] * hd, h, GAINS["k_proj"])
        sd[p + "self_attn.v_proj.weight"] = w.linear(spec["kv_heads"] * hd, h)
        sd[p + "self_attn.o_proj.weight"] = w.linear(h, spec["heads"] * hd, GAINS["o_proj"])
        if spec["gen"] == 3:
            sd[p + "self_attn.q_norm.weight"] = w.norm(hd, 2.0)
            sd[p + "self_attn.k_norm.weight"] = w.norm(hd, 2.0)
        sd[p + "input_layernorm.weight"] = w.norm(h)
        sd[p + "post_attention_layernorm.weight"] = w.norm(h)
        sd[p + "mlp.gate_proj.weight"] = w.linear(spec["ffn"], h)
        sd[p + "mlp.down_proj.weight"] = w.linear(h, spec["ffn"], GAINS["down_proj"])
        sd[p + "mlp.up_proj.weight"] = w.linear(spec["ffn"], h)
    sd["model.norm.weight"] = w.norm(h)
    # The trainer's .pth holds a separate fp16 copy of the tied head.
    sd["lm_head.weight"] = embed.clone()
    if spec["gen"] == 2:
        sd["vision_proj.vision_proj.0.weight"] = w.linear(h, 768)
        sd["vision_proj.vision_proj.0.bias"] = w.bias(h)
    else:
        sd["vision_proj.mlp.0.weight"] = w.norm(768)
        sd["vision_proj.mlp.0.bias"] = w.bias(768)
        sd["vision_proj.mlp.1.weight"] = w.linear(h, 768)
        sd["vision_proj.mlp.1.bias"] = w.bias(h)
        sd["vision_proj.mlp.3.weight"] = w.linear(h, h)
        sd["vision_proj.mlp.3.bias"] = w.bias(h)
    return sd


def encoder_layers(w, prefix, layers, hidden, mlp):
    sd = {}
    for n in range(layers):
        p = f"{prefix}.encoder.layers.{n}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[p + f"self_attn.{name}.weight"] = w.linear(hidden, hidden)
            sd[p + f"self_attn.{name}.bias"] = w.bias(hidden)
        sd[p + "layer_norm1.weight"] = w.norm(hidden)
        sd[p + "layer_norm1.bias"] = w.bias(hidden)
        sd[p + "layer_norm2.weight"] = w.norm(hidden)
        sd[p + "layer_norm2.bias"] = w.bias(hidden)
        sd[p + "mlp.fc1.weight"] = w.linear(mlp, hidden)
        sd[p + "mlp.fc1.bias"] = w.bias(mlp)
        sd[p + "mlp.fc2.weight"] = w.linear(hidden, mlp)
        sd[p + "mlp.fc2.bias"] = w.bias(hidden)
    return sd


def write_clip(out, seed):
    """A full CLIPModel folder: ViT-B/16 vision tower; the fixture's tiny text tower (unused by MiniMind-V)."""
    src = FIXTURES / "gen2" / "clip-vit-base-patch16"
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    vc = config["vision_config"]
    vc.update(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              image_size=224, patch_size=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for name in ("preprocessor_config.json", "merges.txt", "vocab.json", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copyfile(src / name, out / name)

    w = Weights(seed)
    hidden, patch, grid = 768, 16, 14
    sd = {}
    # Every tensor outside vision_model.* (text tower, projections, logit scale) as in the fixture.
    with safe_open(str(src / "model.safetensors"), "pt") as f:
        for k in f.keys():
            if not k.startswith("vision_model."):
                sd[k] = f.get_tensor(k).half()
    v = "vision_model"
    sd[f"{v}.embeddings.class_embedding"] = w.randn(hidden).half()
    sd[f"{v}.embeddings.patch_embedding.weight"] = (w.randn(hidden, 3, patch, patch) / math.sqrt(3 * patch * patch)).half()
    sd[f"{v}.embeddings.position_embedding.weight"] = (0.5 * w.randn(grid * grid + 1, hidden)).half()
    sd[f"{v}.pre_layrnorm.weight"] = w.norm(hidden)
    sd[f"{v}.pre_layrnorm.bias"] = w.bias(hidden)
    sd.update(encoder_layers(w, v, 12, hidden, 3072))
    sd[f"{v}.post_layernorm.weight"] = w.norm(hidden)
    sd[f"{v}.post_layernorm.bias"] = w.bias(hidden)
    save_file({k: t.contiguous() for k, t in sorted(sd.items())}, str(out / "model.safetensors"), metadata={"format": "pt"})


def write_siglip(out, seed):
    """A SiglipVisionModel folder: base, patch 32, 256 px, 12 layers, with the (unused) pooling head."""
    src = FIXTURES / "gen3" / "siglip2-base-p32-256-ve"
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    config.update(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=256, patch_size=32, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(src / "preprocessor_config.json", out / "preprocessor_config.json")

    w = Weights(seed)
    hidden, patch, grid, mlp = 768, 32, 8, 3072
    v = "vision_model"
    sd = {}
    sd[f"{v}.embeddings.patch_embedding.weight"] = (w.randn(hidden, 3, patch, patch) / math.sqrt(3 * patch * patch)).half()
    sd[f"{v}.embeddings.patch_embedding.bias"] = w.bias(hidden)
    sd[f"{v}.embeddings.position_embedding.weight"] = (0.5 * w.randn(grid * grid, hidden)).half()
    sd.update(encoder_layers(w, v, 12, hidden, mlp))
    sd[f"{v}.post_layernorm.weight"] = w.norm(hidden)
    sd[f"{v}.post_layernorm.bias"] = w.bias(hidden)
    sd[f"{v}.head.probe"] = w.randn(1, 1, hidden).half()
    sd[f"{v}.head.attention.in_proj_weight"] = w.linear(3 * hidden, hidden)
    sd[f"{v}.head.attention.in_proj_bias"] = w.bias(3 * hidden)
    sd[f"{v}.head.attention.out_proj.weight"] = w.linear(hidden, hidden)
    sd[f"{v}.head.attention.out_proj.bias"] = w.bias(hidden)
    sd[f"{v}.head.layernorm.weight"] = w.norm(hidden)
    sd[f"{v}.head.layernorm.bias"] = w.bias(hidden)
    sd[f"{v}.head.mlp.fc1.weight"] = w.linear(mlp, hidden)
    sd[f"{v}.head.mlp.fc1.bias"] = w.bias(mlp)
    sd[f"{v}.head.mlp.fc2.weight"] = w.linear(hidden, mlp)
    sd[f"{v}.head.mlp.fc2.bias"] = w.bias(hidden)
    save_file({k: t.contiguous() for k, t in sorted(sd.items())}, str(out / "model.safetensors"), metadata={"format": "pt"})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", default="/tmp/minimindv-full", help="folder to write (default /tmp/minimindv-full)")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--only", choices=sorted(MODELS), action="append", help="write only these models (and their vision folder)")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(MODELS)

    visions = {MODELS[n]["vision"] for n in names}
    if "clip-vit-base-patch16" in visions:
        write_clip(out / "clip-vit-base-patch16", args.seed + 1)
        print(f"wrote {out / 'clip-vit-base-patch16'}", file=sys.stderr)
    if "siglip2-base-p32-256-ve" in visions:
        write_siglip(out / "siglip2-base-p32-256-ve", args.seed + 2)
        print(f"wrote {out / 'siglip2-base-p32-256-ve'}", file=sys.stderr)

    for i, name in enumerate(names):
        spec = MODELS[name]
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        sd = llm_state_dict(spec, args.seed + 10 + list(MODELS).index(name))
        # As trainer/train_sft_vlm.py saves it: float16, vision_encoder.* already absent.
        torch.save(sd, folder / f"sft_vlm_{spec['hidden']}.pth")
        tok = MINIMIND / f"gen{spec['gen']}"
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(tok / f, folder / f)
        (folder / "bench.json").write_text(json.dumps(dict(spec, name=name, vision_folder=f"../{spec['vision']}"), indent=1) + "\n")
        print(f"wrote {folder}", file=sys.stderr)


if __name__ == "__main__":
    main()
