#!/usr/bin/env python3
"""Reference vectors for the low-precision conversions, made with gguf-py and numpy.

Writes Tests/Data/kernels/*.npy (committed; CI does not run this):
  conversion_input.npy  float32 [N]           values covering ties, subnormals, overflow, zeros
  f16_bits.npy          uint8 [N*2]           numpy float32 -> float16 (round to nearest even)
  bf16_bits.npy         uint8 [N*2]           gguf.quants.quantize(..., BF16)
  q8_0_blocks.npy       uint8 [N/32*34]       gguf.quants.quantize(..., Q8_0)
  q8_0_dequant.npy      float32 [N]           gguf.quants.dequantize of those blocks
  q4_0_input.npy        float32 [M]           the Q8_0 input plus blocks aimed at Q4_0's rounding
  q4_0_blocks.npy       uint8 [M/32*18]       gguf.quants.quantize(..., Q4_0)
  q4_0_dequant.npy      float32 [M]           gguf.quants.dequantize of those blocks
Usage: python3 Tools/kernels-bench/make_lowprecision_vectors.py
"""
import os
import numpy as np
from gguf import GGMLQuantizationType, quants

rng = np.random.default_rng(20261130)
blocks = []
# Ordinary weights at a few scales.
for scale in (0.02, 0.1, 1.0, 30.0):
    blocks.append(rng.standard_normal((8, 32)) * scale)
# Heavy tails: one large value per block.
b = rng.standard_normal((4, 32)) * 0.01
b[:, rng.integers(0, 32, 4)] = 5.0
blocks.append(b)
# Exact halves after scaling (amax 127 -> d 1): ties round away from zero.
ties = np.tile(np.array([127.0, -127.0] + [k + 0.5 for k in range(-15, 15)], dtype=np.float64), (2, 1))
blocks.append(ties)
# All-zero block, tiny blocks (half subnormal / zero scale), huge block (scale overflows half).
blocks.append(np.zeros((1, 32)))
blocks.append(rng.standard_normal((2, 32)) * 1e-6)
blocks.append(rng.standard_normal((1, 32)) * 1e-9)
blocks.append(rng.standard_normal((1, 32)) * 1e7)
# Values spread over float16's whole range and beyond, with both signs.
exps = rng.uniform(-30, 17, size=(16, 32))
blocks.append(np.sign(rng.standard_normal((16, 32))) * np.exp2(exps))
# Exact float16 / bfloat16 round-to-even ties and range edges.
edge = np.array([65504.0, 65519.0, 65520.0, -65520.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-14,
                 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8,
                 np.inf, -np.inf, 0.0, -0.0, 6.1e-5, 5.96e-8, 1e-40, -1e-45, 3.4e38, -3.4e38,
                 1.0, -1.0, 0.1, -0.1, 1e-8, 123456.0, 2.0**-126, 2.0**-149, 0.33333334, 7.0],
                dtype=np.float64)
edge_block = edge.reshape(1, 32)

values = np.concatenate(blocks, axis=0).astype(np.float32).reshape(-1)
conv_values = np.concatenate([values, edge_block.astype(np.float32).reshape(-1)])

out = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Data", "kernels")
os.makedirs(out, exist_ok=True)
np.save(os.path.join(out, "conversion_input.npy"), conv_values)
np.save(os.path.join(out, "f16_bits.npy"), conv_values.astype(np.float16).view(np.uint8))
np.save(os.path.join(out, "bf16_bits.npy"),
        quants.quantize(conv_values, GGMLQuantizationType.BF16).view(np.uint8).reshape(-1))
# Q8_0 only over the finite blocks (the edge block holds infinities, which ggml does not define).
q = quants.quantize(values, GGMLQuantizationType.Q8_0)
np.save(os.path.join(out, "q8_0_input.npy"), values)
np.save(os.path.join(out, "q8_0_blocks.npy"), q.reshape(-1))
np.save(os.path.join(out, "q8_0_dequant.npy"),
        quants.dequantize(q, GGMLQuantizationType.Q8_0).astype(np.float32).reshape(-1))
# Q4_0: the same finite blocks, plus blocks where x / d + 8.5 lands on integers (trunc edges),
# the extreme value positive and negative, two extremes of equal magnitude and opposite sign
# (the first one sets d), and an extreme whose opposite maps to q = 16 (clamped to 15).
q4_extra = [
    np.array([-8.0] + [k / 2.0 for k in range(-16, 15)], dtype=np.float64),
    np.array([8.0] + [k / 2.0 for k in range(-15, 16)], dtype=np.float64),
    np.array([3.0, -3.0] + list(rng.uniform(-3, 3, 30)), dtype=np.float64),
    np.array([-3.0, 3.0] + list(rng.uniform(-3, 3, 30)), dtype=np.float64),
    np.array([0.1 * k - 1.55 for k in range(32)], dtype=np.float64),
]
q4_values = np.concatenate([values, np.stack(q4_extra).astype(np.float32).reshape(-1)])
q4 = quants.quantize(q4_values, GGMLQuantizationType.Q4_0)
np.save(os.path.join(out, "q4_0_input.npy"), q4_values)
np.save(os.path.join(out, "q4_0_blocks.npy"), q4.reshape(-1))
np.save(os.path.join(out, "q4_0_dequant.npy"),
        quants.dequantize(q4, GGMLQuantizationType.Q4_0).astype(np.float32).reshape(-1))
print(f"{conv_values.size} conversion values, {values.size // 32} Q8_0 blocks -> {os.path.normpath(out)}")
