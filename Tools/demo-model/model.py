"""A tiny MiniMind-V of the gen3 architecture, written from /work/shared/spec/minimind-v.md.

Module and parameter names follow the upstream layouts on purpose, so that the saved files are the ones
users have:
- `vision_encoder` is a Hugging Face `SiglipVisionModel` by state-dict names (`vision_model.embeddings...`,
  `vision_model.encoder.layers.N.self_attn.{q,k,v,out}_proj`, `layer_norm1/2`, `mlp.fc1/fc2`,
  `vision_model.post_layernorm`); the pooling head is left out (`vision_use_head: false` in its config).
- the projector is `vision_proj.mlp.{0,1,3}` (LayerNorm eps 1e-5, Linear, GELU erf, Linear);
- the decoder is `model.embed_tokens`, `model.layers.N.self_attn.{q,k,v,o}_proj`, `{q,k}_norm`,
  `input_layernorm`, `post_attention_layernorm`, `mlp.{gate,down,up}_proj`, `model.norm`, `lm_head` (tied).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

IMAGE_TOKEN_ID = 12          # <|image_pad|>
IMAGE_TOKEN = "<|image_pad|>"
END_OF_TURN_ID = 2           # <|im_end|>
GEN3_TOKENIZER_DIR = os.environ.get("MINIMIND_GEN3_TOKENIZER", "/work/shared/minimind/gen3")


# ---------------------------------------------------------------- configs

@dataclass
class VisionConfig:
    hidden_size: int = 192
    intermediate_size: int = 768
    num_hidden_layers: int = 3
    num_attention_heads: int = 6
    image_size: int = 256
    patch_size: int = 32
    layer_norm_eps: float = 1e-6

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def folder_name(self) -> str:
        """The vision folder's name, after upstream's `siglip2-base-p32-256-ve`."""
        return f"siglip-demo-p{self.patch_size}-{self.image_size}-ve"


@dataclass
class DecoderConfig:
    hidden_size: int = 192
    num_hidden_layers: int = 4
    num_attention_heads: int = 6
    num_key_value_heads: int = 2
    head_dim: int = 0               # 0: hidden / heads
    intermediate_size: int = 0      # 0: gen3 rule 64 * ceil(hidden * pi / 64)
    vocab_size: int = 6400
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1e6
    image_token_len: int = 64
    max_positions: int = 512

    def __post_init__(self):
        if self.head_dim == 0:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.intermediate_size == 0:
            self.intermediate_size = 64 * math.ceil(self.hidden_size * math.pi / 64)


# ---------------------------------------------------------------- SigLIP vision encoder

class SiglipVisionEmbeddings(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, c.hidden_size, c.patch_size, c.patch_size, bias=True)
        self.position_embedding = nn.Embedding(c.num_patches, c.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # row-major patches
        return x + self.position_embedding.weight[None]


class SiglipAttention(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.k_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.v_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.q_proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.out_proj = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        o = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(o.transpose(1, 2).reshape(b, t, d))


class SiglipMLP(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiglipEncoderLayer(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.self_attn = SiglipAttention(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = SiglipMLP(c)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class SiglipEncoder(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(SiglipEncoderLayer(c) for _ in range(c.num_hidden_layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class SiglipVisionTransformer(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.embeddings = SiglipVisionEmbeddings(c)
        self.encoder = SiglipEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values):
        return self.post_layernorm(self.encoder(self.embeddings(pixel_values)))


class SiglipVisionModel(nn.Module):
    """State-dict compatible with transformers' SiglipVisionModel (without the pooling head)."""

    def __init__(self, c: VisionConfig):
        super().__init__()
        self.config = c
        self.vision_model = SiglipVisionTransformer(c)

    def forward(self, pixel_values):  # [N, 3, size, size] -> last hidden state [N, patches, vh]
        return self.vision_model(pixel_values)


# ---------------------------------------------------------------- projector

class VisionProjector(nn.Module):
    def __init__(self, vision_hidden: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(vision_hidden, eps=1e-5), nn.Linear(vision_hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, hidden))

    def forward(self, x):
        return self.mlp(x)


# ---------------------------------------------------------------- decoder

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.heads, self.kv_heads, self.hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, self.heads * self.hd, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.kv_heads * self.hd, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.kv_heads * self.hd, bias=False)
        self.o_proj = nn.Linear(self.heads * self.hd, c.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.hd, c.rms_norm_eps)
        self.k_norm = RMSNorm(self.hd, c.rms_norm_eps)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, t, self.heads, self.hd))
        k = self.k_norm(self.k_proj(x).view(b, t, self.kv_heads, self.hd))
        v = self.v_proj(x).view(b, t, self.kv_heads, self.hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.heads // self.kv_heads
        # Query head j reads kv head j // rep.
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, self.heads * self.hd))


class FeedForward(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.self_attn = Attention(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = FeedForward(c)

    def forward(self, h, cos, sin):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class Decoder(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float64) / c.head_dim))
        ang = torch.arange(c.max_positions, dtype=torch.float64)[:, None] * inv_freq[None]
        ang = torch.cat([ang, ang], dim=-1)
        # Not part of the checkpoint (upstream keeps these out of the state dict too).
        self.register_buffer("rope_cos", ang.cos().float(), persistent=False)
        self.register_buffer("rope_sin", ang.sin().float(), persistent=False)


class MiniMindVLM(nn.Module):
    def __init__(self, lm: DecoderConfig, vision: VisionConfig):
        super().__init__()
        self.lm_config, self.vision_config = lm, vision
        self.model = Decoder(lm)
        self.lm_head = nn.Linear(lm.hidden_size, lm.vocab_size, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight  # tied
        self.vision_encoder = SiglipVisionModel(vision)
        self.vision_proj = VisionProjector(vision.hidden_size, lm.hidden_size)

    # images -> projected features [N, 64, hidden]
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_proj(self.vision_encoder(pixel_values))

    def hidden_states(self, input_ids: torch.Tensor, image_features: torch.Tensor | None) -> torch.Tensor:
        """Final-norm output [B, T, hidden]. image_features: the images of every sequence, in order, [M, 64, hidden];
        the k-th run of placeholders (in reading order over the batch) receives the k-th image."""
        h = self.model.embed_tokens(input_ids)
        if image_features is not None:
            mask = (input_ids == IMAGE_TOKEN_ID).unsqueeze(-1)
            h = h.masked_scatter(mask, image_features.to(h.dtype).reshape(-1))
        t = input_ids.shape[1]
        cos = self.model.rope_cos[:t][None, :, None, :]
        sin = self.model.rope_sin[:t][None, :, None, :]
        for layer in self.model.layers:
            h = layer(h, cos, sin)
        return self.model.norm(h)

    def forward(self, input_ids, image_features=None):
        return self.lm_head(self.hidden_states(input_ids, image_features))

    @torch.no_grad()
    def greedy(self, input_ids: torch.Tensor, image_features: torch.Tensor | None, max_new_tokens: int = 32) -> list[list[int]]:
        """Greedy continuation of a batch of equal-length prompts, stopping each at <|im_end|> (not included).
        Full re-forward each step: simple and exactly what the logits say."""
        ids = input_ids
        out = [[] for _ in range(ids.shape[0])]
        done = [False] * ids.shape[0]
        for _ in range(max_new_tokens):
            nxt = self.forward(ids, image_features)[:, -1].float().argmax(-1)
            for i, tok in enumerate(nxt.tolist()):
                if not done[i]:
                    if tok == END_OF_TURN_ID:
                        done[i] = True
                    else:
                        out[i].append(tok)
            if all(done):
                break
            ids = torch.cat([ids, nxt[:, None]], dim=1)
        return out


# ---------------------------------------------------------------- prompt and image processing

class PromptBuilder:
    """gen3 prompt: user text `<image>\\n{question}` with `<image>` -> `<|image_pad|>` x 64, ChatML template
    with the generation prompt (`<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n`)."""

    def __init__(self, tokenizer_dir: str = GEN3_TOKENIZER_DIR, image_token_len: int = 64):
        from transformers import AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.image_token_len = image_token_len
        self._cache: dict[str, list[int]] = {}

    def prompt_text(self, question: str) -> str:
        content = ("<image>\n" + question).replace("<image>", IMAGE_TOKEN * self.image_token_len)
        return self.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                  add_generation_prompt=True)

    def prompt_ids(self, question: str) -> list[int]:
        key = "P" + question
        if key not in self._cache:
            self._cache[key] = self.tokenizer(self.prompt_text(question), add_special_tokens=False)["input_ids"]
        return self._cache[key]

    def next_turn_ids(self, question: str) -> list[int]:
        """A later user turn without an image, as the chat template renders it after an assistant reply
        (`\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n`)."""
        key = "N" + question
        if key not in self._cache:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                      add_generation_prompt=True)
            self._cache[key] = self.tokenizer("\n" + text, add_special_tokens=False)["input_ids"]
        return self._cache[key]

    def answer_ids(self, answer: str) -> list[int]:
        """The assistant's reply tokens plus the closing <|im_end|> (what the loss covers)."""
        key = "A" + answer
        if key not in self._cache:
            self._cache[key] = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [END_OF_TURN_ID]
        return self._cache[key]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def preprocess(img: Image.Image, size: int = 256) -> torch.Tensor:
    """SigLIP processor: RGB, bilinear resize to size x size (PIL), rescale 1/255, normalise mean/std 0.5."""
    img = img.convert("RGB").resize((size, size), resample=Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) * np.float32(1 / 255)
    x = (x - 0.5) / 0.5
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


# ---------------------------------------------------------------- saving in the upstream layouts

def preprocessor_config(image_size: int) -> dict:
    return {**PREPROCESSOR_CONFIG, "size": {"height": image_size, "width": image_size}}


PREPROCESSOR_CONFIG = {
    "do_convert_rgb": None,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "SiglipProcessor",
    "resample": 2,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 256, "width": 256},
}


def save_upstream_layout(model: MiniMindVLM, out_dir: str, pth_name: str, vision_dir_name: str,
                         tokenizer_dir: str = GEN3_TOKENIZER_DIR, extra_info: dict | None = None) -> dict:
    """Writes the trainer .pth, the SigLIP vision folder and the tokenizer files. Returns the paths."""
    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    sd = model.state_dict()
    # As upstream's trainer saves it: every tensor fp16, vision encoder left out (it ships as its own folder).
    pth = {k: v.detach().half().clone() for k, v in sd.items() if not k.startswith("vision_encoder.")}
    pth_path = os.path.join(out_dir, pth_name)
    torch.save(pth, pth_path)

    vdir = os.path.join(out_dir, vision_dir_name)
    os.makedirs(vdir, exist_ok=True)
    vsd = {k[len("vision_encoder."):]: v.detach().half().contiguous().clone()
           for k, v in sd.items() if k.startswith("vision_encoder.")}
    save_file(vsd, os.path.join(vdir, "model.safetensors"), metadata={"format": "pt"})
    vc = model.vision_config
    with open(os.path.join(vdir, "config.json"), "w") as f:
        json.dump({
            "architectures": ["SiglipVisionModel"],
            "attention_dropout": 0.0,
            "dtype": "float16",
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": vc.hidden_size,
            "image_size": vc.image_size,
            "intermediate_size": vc.intermediate_size,
            "layer_norm_eps": vc.layer_norm_eps,
            "model_type": "siglip_vision_model",
            "num_attention_heads": vc.num_attention_heads,
            "num_channels": 3,
            "num_hidden_layers": vc.num_hidden_layers,
            "patch_size": vc.patch_size,
            "vision_use_head": False,
        }, f, indent=2)
        f.write("\n")
    with open(os.path.join(vdir, "preprocessor_config.json"), "w") as f:
        json.dump(preprocessor_config(vc.image_size), f, indent=2)
        f.write("\n")

    tdir = os.path.join(out_dir, "tokenizer")
    os.makedirs(tdir, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(tdir, name))

    # Not an upstream file: the sizes for people (the .pth alone determines them through its shapes).
    lm = model.lm_config
    info = {"generation": "gen3", "llm_config": {
        "hidden_size": lm.hidden_size, "num_hidden_layers": lm.num_hidden_layers,
        "num_attention_heads": lm.num_attention_heads, "num_key_value_heads": lm.num_key_value_heads,
        "head_dim": lm.head_dim, "intermediate_size": lm.intermediate_size, "vocab_size": lm.vocab_size,
        "rms_norm_eps": lm.rms_norm_eps, "rope_theta": lm.rope_theta, "image_token_len": lm.image_token_len,
        "image_ids": [IMAGE_TOKEN_ID], "image_special_token": IMAGE_TOKEN, "tie_word_embeddings": True,
        "use_moe": False}, "vision_config": asdict(vc)}
    if extra_info:
        info.update(extra_info)
    with open(os.path.join(out_dir, "model_info.json"), "w") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return {"pth": pth_path, "vision": vdir, "tokenizer": tdir}


def load_upstream_layout(pth_path: str, vision_dir: str, lm: DecoderConfig) -> MiniMindVLM:
    """Builds the model from a trainer .pth + SigLIP vision folder (float32 compute, like upstream eval)."""
    from safetensors.torch import load_file
    with open(os.path.join(vision_dir, "config.json")) as f:
        vcfg = json.load(f)
    vc = VisionConfig(hidden_size=vcfg["hidden_size"], intermediate_size=vcfg["intermediate_size"],
                      num_hidden_layers=vcfg["num_hidden_layers"], num_attention_heads=vcfg["num_attention_heads"],
                      image_size=vcfg["image_size"], patch_size=vcfg["patch_size"],
                      layer_norm_eps=vcfg["layer_norm_eps"])
    model = MiniMindVLM(lm, vc)
    sd = {k: v.float() for k, v in torch.load(pth_path, map_location="cpu", weights_only=True).items()
          if "mask" not in k}
    vsd = {"vision_encoder." + k: v.float() for k, v in load_file(os.path.join(vision_dir, "model.safetensors")).items()
           if not k.startswith("vision_model.head.")}
    missing, unexpected = model.load_state_dict({**sd, **vsd}, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")
    # The .pth holds its own copy of lm_head; keep the tie pointing at the embedding.
    model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()
