#!/usr/bin/env bash
# Converter benchmark (not a test): a full-size MiniMind2-V (768 x 16) + CLIP ViT-B/16 with random
# weights, converted in every --type; prints output MB/s and peak RSS. Needs torch (Tools/requirements.txt).
#   Tools/convert/benchmark.sh [WORK_DIR=/tmp/minimindv-bench] [BINARY=.build/release/minimindv]
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-/tmp/minimindv-bench}
binary=${2:-.build/release/minimindv}
[ -x "$binary" ] || swift build -c release --product minimindv
[ -f "$work/sft_vlm_768.pth" ] || python3 Tools/convert/make_benchmark_model.py "$work" --shared "$(pwd)/../shared/minimind"
for type in f16 bf16 f32 q8_0; do
    rm -f "$work/model-$type.gguf"
    /usr/bin/time -f "peak RSS %M KB, %e s wall, %U s user, %S s sys" \
        "$binary" convert --checkpoint "$work/sft_vlm_768.pth" --vision "$work/clip-vit-base-patch16" \
        --type "$type" --output "$work/model-$type.gguf" 2>&1 | grep -v '^note:'
done
