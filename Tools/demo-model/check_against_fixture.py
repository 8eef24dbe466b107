"""Checks model.py against upstream's own outputs: loads the gen3 tiny fixture (trainer .pth + SigLIP folder,
random weights made by the upstream code) and compares vision output, projected features, logits and greedy ids.

    python Tools/demo-model/check_against_fixture.py [/work/shared/minimind/fixtures/gen3]
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import DecoderConfig, PromptBuilder, load_upstream_layout, preprocess  # noqa: E402

root = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/minimind/fixtures/gen3"
torch.set_num_threads(2)
lm = DecoderConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=16, intermediate_size=256)
model = load_upstream_layout(f"{root}/tiny/sft_vlm_64.pth", f"{root}/siglip2-base-p32-256-ve", lm)
ok = True


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


from PIL import Image  # noqa: E402
for img in ("image-01-golden-dog-balloons", "image-02-rainbow-umbrella-street"):
    px = preprocess(Image.open(f"{root}/images/{img}.jpg"))
    ref_px = np.load(f"{root}/ref-images/{img}/pixel_values.npy")[0]
    e = rel(px.numpy(), ref_px)
    with torch.no_grad():
        raw = model.vision_encoder(torch.from_numpy(ref_px)[None])[0].numpy()
        proj = model.vision_proj(torch.from_numpy(raw)[None])[0].numpy()
    e2 = rel(raw, np.load(f"{root}/ref-images/{img}/vision_raw.npy"))
    e3 = rel(proj, np.load(f"{root}/tiny/ref/images/{img}/vision_proj.npy"))
    print(f"{img}: pixel_values rel {e:.2e}  vision_raw rel {e2:.2e}  vision_proj rel {e3:.2e}")
    ok &= e < 1e-5 and e2 < 1e-4 and e3 < 1e-4

pb = PromptBuilder(f"{root}/tiny")
q = "请描述这张图中的主要物体和场景。"
ids = pb.prompt_ids(q)
for case, img in (("img1", "image-01-golden-dog-balloons"), ("img2", "image-02-rainbow-umbrella-street")):
    ref_ids = np.load(f"{root}/tiny/ref/cases/{case}/input_ids.npy").tolist()
    same_ids = ids == ref_ids
    px = torch.from_numpy(np.load(f"{root}/ref-images/{img}/pixel_values.npy"))
    with torch.no_grad():
        feats = model.encode_images(px)
        logits = model(torch.tensor([ref_ids]), feats)[0, -1].numpy()
    e = rel(logits, np.load(f"{root}/tiny/ref/cases/{case}/logits_last.npy"))
    # 24 greedy tokens without stopping, as the fixture was made.
    seq = torch.tensor([ref_ids])
    greedy = []
    with torch.no_grad():
        for _ in range(24):
            t = int(model(seq, feats)[0, -1].argmax())
            greedy.append(t)
            seq = torch.cat([seq, torch.tensor([[t]])], 1)
    same_greedy = greedy == np.load(f"{root}/tiny/ref/cases/{case}/greedy_ids.npy").tolist()
    print(f"{case}: prompt ids equal {same_ids}  logits_last rel {e:.2e}  greedy equal {same_greedy}")
    ok &= same_ids and e < 1e-4 and same_greedy
print("OK" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
