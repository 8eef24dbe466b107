"""Checks that a saved vision folder is a valid transformers SiglipVisionModel folder that computes what
model.py computes, and that the trainer .pth has the upstream keys and dtypes.

    python Tools/demo-model/check_vision_folder.py Tools/demo-model/out
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaluate_torch import load_trained  # noqa: E402
from model import preprocess  # noqa: E402
import scenes  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
from transformers import SiglipImageProcessor, SiglipVisionModel  # noqa: E402

ours = load_trained(out)
vdir = os.path.join(out, ours.vision_config.folder_name)
hf = SiglipVisionModel.from_pretrained(vdir, dtype=torch.float32).eval()
proc = SiglipImageProcessor.from_pretrained(vdir)
img = scenes.render(scenes.make_scene(5), 320)
px_hf = proc(images=img, return_tensors="pt")["pixel_values"]
px = preprocess(img, ours.vision_config.image_size)[None]
with torch.no_grad():
    a = hf(pixel_values=px_hf).last_hidden_state
    b = ours.vision_encoder(px)
e_px = float((px - px_hf).abs().max())
e = float((a - b).abs().max() / a.abs().max())
print(f"pixel_values max abs diff {e_px:.2e}; vision last_hidden_state rel diff {e:.2e}")

sd = torch.load(os.path.join(out, [f for f in os.listdir(out) if f.endswith(".pth")][0]), weights_only=True)
bad = [k for k, v in sd.items() if v.dtype != torch.float16]
fixture = json.load(open("/work/shared/minimind/fixtures/gen3/tiny/manifest.json"))["pth"]["keys"]
layer_keys = lambda ks: sorted({k.replace(".0.", ".N.").replace(".1.", ".N.") for k in ks if not k.startswith("model.layers.") or ".0." in k or ".1." in k})
same_names = layer_keys(sd) == layer_keys(fixture)
tied = torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"])
print(f".pth: {len(sd)} tensors, non-fp16 {bad}, key pattern as upstream fixture {same_names}, lm_head == embed {tied}, "
      f"vision keys present {any(k.startswith('vision_encoder.') for k in sd)}")
ok = e_px < 1e-5 and e < 1e-4 and not bad and same_names and tied
print("OK" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
