"""Synthetic scenes for the demo MiniMind-V model, with questions and canonical answers.

A scene holds one or two flat shapes (circle, square, triangle, star) in one of eight colours, small or
large, placed left/right/top/bottom, on a plain or textured neutral background. Everything is drawn from a
seeded numpy generator, so `make_scene(seed)` always returns the same scene and picture.

Answers are short and canonical (one fixed wording per fact, English or Chinese) so that a reply can be
scored by exact attribute match: `attributes_in(answer)` pulls the colour, shape and count words back out.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 256  # scene coordinates; pictures may be rendered larger and are resized by the processor

COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 160, 55),
    "blue": (35, 70, 215),
    "yellow": (240, 215, 35),
    "purple": (140, 45, 175),
    "orange": (245, 135, 25),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
}
SHAPES = ["circle", "square", "triangle", "star"]
POSITIONS = ["left", "right", "top", "bottom"]
SIZES = ["small", "large"]

ZH_COLOUR = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色",
             "purple": "紫色", "orange": "橙色", "black": "黑色", "white": "白色"}
ZH_SHAPE = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形"}
ZH_POSITION = {"left": "左边", "right": "右边", "top": "上边", "bottom": "下边"}
ZH_SIZE = {"small": "小", "large": "大"}
EN_COUNT = {1: "One", 2: "Two"}
ZH_COUNT = {1: "一个", 2: "两个"}

# Radius ranges (scene pixels) for the two sizes: far enough apart that "small"/"large" is well defined.
# DEMO_SCENE_RADIUS="s_lo,s_hi,l_lo,l_hi" overrides it (workers inherit the environment); two shapes must
# still fit side by side in CANVAS, so the large radius stays under about 58. Shapes this size span 2 to 4
# of the 16 px patches at 128 px: with (22, 30) / (40, 52) a from-scratch encoder took about twice as many
# pictures to start telling shapes apart (Tools/demo-model/README.md, "What was measured about shapes").
RADIUS = {"small": (30, 38), "large": (46, 56)}
if os.environ.get("DEMO_SCENE_RADIUS"):
    _r = [float(v) for v in os.environ["DEMO_SCENE_RADIUS"].split(",")]
    RADIUS = {"small": (_r[0], _r[1]), "large": (_r[2], _r[3])}


@dataclass(frozen=True)
class Shape:
    kind: str      # one of SHAPES
    colour: str    # one of COLOURS
    size: str      # "small" | "large"
    position: str  # one of POSITIONS
    cx: float
    cy: float
    r: float


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]  # reading order: left before right, top before bottom
    background: str            # "plain" | "noise" | "stripes" | "checker"
    bg_level: int              # grey level of the background
    seed: int

    @property
    def count(self) -> int:
        return len(self.shapes)


def _place(rng: np.random.Generator, position: str, r: float) -> tuple[float, float]:
    """Centre for a shape of radius r that is unambiguously in `position`."""
    near_lo, near_hi = r + 6, 100.0      # the named side
    far_lo, far_hi = 156.0, CANVAS - r - 6
    mid_lo, mid_hi = 100.0, 156.0        # the other axis stays near the middle
    along = rng.uniform(mid_lo, mid_hi)
    if position == "left":
        return rng.uniform(near_lo, max(near_lo, near_hi)), along
    if position == "right":
        return rng.uniform(min(far_lo, far_hi), far_hi), along
    if position == "top":
        return along, rng.uniform(near_lo, max(near_lo, near_hi))
    return along, rng.uniform(min(far_lo, far_hi), far_hi)


def make_scene(seed: int, count: int | None = None) -> Scene:
    rng = np.random.default_rng(seed)
    n = int(count) if count is not None else int(rng.integers(1, 3))
    if n == 1:
        slots = [POSITIONS[int(rng.integers(0, 4))]]
    else:
        slots = ["left", "right"] if rng.random() < 0.5 else ["top", "bottom"]
    while True:
        shapes = []
        for pos in slots:
            size = SIZES[int(rng.integers(0, 2))]
            r = float(rng.uniform(*RADIUS[size]))
            cx, cy = _place(rng, pos, r)
            shapes.append(Shape(SHAPES[int(rng.integers(0, 4))], list(COLOURS)[int(rng.integers(0, 8))],
                                size, pos, cx, cy, r))
        if n == 1:
            break
        a, b = shapes
        if math.hypot(a.cx - b.cx, a.cy - b.cy) >= a.r + b.r + 10:
            break
    background = ["plain", "plain", "noise", "stripes", "checker"][int(rng.integers(0, 5))]
    bg_level = int(rng.integers(70, 186))
    return Scene(tuple(shapes), background, bg_level, seed)


def _star_points(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.45
        ang = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def render(scene: Scene, size: int = CANVAS) -> Image.Image:
    """Draws the scene as an RGB picture of size x size pixels."""
    rng = np.random.default_rng(scene.seed + 7_000_003)
    base = np.full((size, size, 3), scene.bg_level, dtype=np.float32)
    # A faint tint keeps backgrounds from being perfectly grey without making them look like a shape colour.
    base += rng.uniform(-8, 8, size=3).astype(np.float32)
    if scene.background == "noise":
        base += rng.normal(0, 14, size=(size, size, 1)).astype(np.float32)
    elif scene.background == "stripes":
        period = int(rng.integers(8, 24)) * size // CANVAS
        idx = np.arange(size) // max(1, period) % 2
        band = (idx[:, None] if rng.random() < 0.5 else idx[None, :]) * 22.0
        base += band[..., None]
    elif scene.background == "checker":
        cell = int(rng.integers(10, 28)) * size // CANVAS
        idx = np.arange(size) // max(1, cell)
        base += (((idx[:, None] + idx[None, :]) % 2) * 22.0)[..., None]
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    fills = []
    for s in scene.shapes:
        jitter = rng.integers(-12, 13, size=3)
        fills.append(tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[s.colour], jitter)))
    _draw_shapes(ImageDraw.Draw(img), scene, size / CANVAS, fills)
    return img


def _draw_shapes(draw: ImageDraw.ImageDraw, scene: Scene, k: float, fills: list) -> None:
    for s, colour in zip(scene.shapes, fills):
        cx, cy, r = s.cx * k, s.cy * k, s.r * k
        if s.kind == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif s.kind == "square":
            h = r * 0.85
            draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=colour)
        elif s.kind == "triangle":
            draw.polygon([(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)], fill=colour)
        else:
            draw.polygon(_star_points(cx, cy, r * 1.1), fill=colour)


def patch_labels(scene: Scene, side: int = 8, min_cover: float = 0.2) -> np.ndarray:
    """For each of the side x side patches of the picture (row-major): 0 for background, else 1 + the index
    of the shape covering at least `min_cover` of it (the larger cover wins)."""
    patch = 16  # mask pixels per patch side: any grid, whether or not it divides CANVAS
    mask = Image.new("L", (side * patch, side * patch), 0)
    _draw_shapes(ImageDraw.Draw(mask), scene, side * patch / CANVAS, [i + 1 for i in range(scene.count)])
    m = np.asarray(mask).reshape(side, patch, side, patch).transpose(0, 2, 1, 3)
    m = m.reshape(-1, patch * patch)
    cover = np.stack([(m == i + 1).mean(1) for i in range(scene.count)], 1)
    best = cover.argmax(1)
    return np.where(cover.max(1) >= min_cover, best + 1, 0)


def patch_masks(scene: Scene, side: int = 8, sub: int = 4) -> np.ndarray:
    """For each of the side x side patches (row-major): which of its sub x sub cells lie inside a shape,
    as 0/1 [side * side, sub * sub]. The outline inside every patch, whatever the colours."""
    mask = Image.new("L", (side * sub * 4, side * sub * 4), 0)
    _draw_shapes(ImageDraw.Draw(mask), scene, side * sub * 4 / CANVAS, [255] * scene.count)
    m = np.asarray(mask, dtype=np.float32).reshape(side * sub, 4, side * sub, 4).mean((1, 3)) > 127
    return m.reshape(side, sub, side, sub).transpose(0, 2, 1, 3).reshape(side * side, sub * sub).astype(np.int64)


ORIENTATION_BINS = 8  # boundary directions modulo 180 degrees, 22.5 degrees a bin
CORNER_KINDS = 3      # acute convex (triangle, star tips), right convex (square), concave (star notches)
GEOMETRY_VALUES = ORIENTATION_BINS + CORNER_KINDS


def _outline(s: Shape) -> tuple[list[tuple[float, float]], list[int]]:
    """The shape's boundary in scene pixels as a closed polygon, with each vertex's corner kind
    (-1 for none: the circle is a polygon of many short edges with no corners)."""
    cx, cy, r = s.cx, s.cy, s.r
    if s.kind == "circle":
        return [(cx + r * math.cos(2 * math.pi * i / 96), cy + r * math.sin(2 * math.pi * i / 96)) for i in range(96)], [-1] * 96
    if s.kind == "square":
        h = r * 0.85
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)], [1] * 4
    if s.kind == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)], [0] * 3
    return _star_points(cx, cy, r * 1.1), [0, 2] * 5


def patch_geometry(scene: Scene, side: int = 8) -> np.ndarray:
    """For each of the side x side patches (row-major), what a shape's boundary does inside it:
    its length (in patch sides) per direction bin, then how many corners of each kind lie in it.
    [side * side, GEOMETRY_VALUES] float32.

    These are local and the same wherever the shape sits, unlike the inside/outside cells: summed over
    the patches they tell the shapes apart (a square is all horizontal and vertical edges with right
    corners, a triangle has edges at +-60 degrees and acute corners, a star acute tips and concave
    notches, a circle every direction and no corner). As a training target they give the encoder the
    translation-invariant features a from-scratch ViT otherwise takes a great many pictures to find."""
    out = np.zeros((side * side, GEOMETRY_VALUES), dtype=np.float32)
    k = side / CANVAS
    for s in scene.shapes:
        pts, corners = _outline(s)
        n = len(pts)
        for i in range(n):
            x0, y0 = pts[i][0] * k, pts[i][1] * k
            x1, y1 = pts[(i + 1) % n][0] * k, pts[(i + 1) % n][1] * k
            if corners[i] >= 0 and 0 <= x0 < side and 0 <= y0 < side:
                out[int(y0) * side + int(x0), ORIENTATION_BINS + corners[i]] += 1.0
            length = math.hypot(x1 - x0, y1 - y0)
            direction = int((math.atan2(y1 - y0, x1 - x0) % math.pi) / math.pi * ORIENTATION_BINS) % ORIENTATION_BINS
            samples = max(1, int(length / 0.05))
            for t in range(samples):
                u = (t + 0.5) / samples
                x, y = x0 + u * (x1 - x0), y0 + u * (y1 - y0)
                if 0 <= x < side and 0 <= y < side:
                    out[int(y) * side + int(x), direction] += length / samples
    return out


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


# ---------------------------------------------------------------- questions and answers

CATEGORIES = ["colour", "shape", "count", "position", "size", "describe"]

QUESTIONS = {
    ("colour", "en"): ["What colour is the shape?", "What color is the shape?", "What colours are the shapes?",
                       "What colour are the shapes?"],
    ("colour", "zh"): ["图形是什么颜色？", "图中的形状是什么颜色？"],
    ("shape", "en"): ["What shape is it?", "What shape is in the image?", "What shapes are there?"],
    ("shape", "zh"): ["图中是什么形状？", "这是什么形状？"],
    ("count", "en"): ["How many shapes are there?", "How many shapes are in the image?"],
    ("count", "zh"): ["图中有几个图形？", "图片里有多少个形状？"],
    ("position", "en"): ["Where is the shape?", "Where are the shapes?"],
    ("position", "zh"): ["图形在哪里？"],
    ("size", "en"): ["Is the shape large or small?", "How big is the shape?"],
    ("size", "zh"): ["图形是大还是小？"],
    ("describe", "en"): ["Describe the image.", "What is in the image?"],
    ("describe", "zh"): ["请描述这张图片。", "图中有什么？"],
}


EN_POSITION = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _join_en(parts: list[str]) -> str:
    return " and ".join(parts)


def answer(scene: Scene, category: str, lang: str) -> str:
    """The one canonical answer to any question of `category` about `scene`."""
    sh = scene.shapes
    if lang == "en":
        if category == "colour":
            return _cap(_join_en([s.colour for s in sh])) + "."
        if category == "shape":
            return _cap(_join_en(["a " + s.kind for s in sh])) + "."
        if category == "count":
            return EN_COUNT[len(sh)] + "."
        if category == "position":
            return _cap(_join_en([f"the {s.colour} {s.kind} is {EN_POSITION[s.position]}" for s in sh])
                        if len(sh) > 1 else EN_POSITION[sh[0].position]) + "."
        if category == "size":
            return _cap(_join_en([f"the {s.colour} {s.kind} is {s.size}" for s in sh])
                        if len(sh) > 1 else sh[0].size) + "."
        if category == "describe":
            return _cap(_join_en([f"a {s.size} {s.colour} {s.kind} {EN_POSITION[s.position]}" for s in sh])) + "."
    else:
        if category == "colour":
            return "和".join(ZH_COLOUR[s.colour] for s in sh) + "。"
        if category == "shape":
            return "和".join(ZH_SHAPE[s.kind] for s in sh) + "。"
        if category == "count":
            return ZH_COUNT[len(sh)] + "。"
        if category == "position":
            if len(sh) == 1:
                return "在" + ZH_POSITION[sh[0].position] + "。"
            return "，".join(f"{ZH_COLOUR[s.colour]}{ZH_SHAPE[s.kind]}在{ZH_POSITION[s.position]}" for s in sh) + "。"
        if category == "size":
            if len(sh) == 1:
                return ZH_SIZE[sh[0].size] + "。"
            return "，".join(f"{ZH_COLOUR[s.colour]}{ZH_SHAPE[s.kind]}是{ZH_SIZE[s.size]}的" for s in sh) + "。"
        if category == "describe":
            return "，".join(f"{ZH_POSITION[s.position]}有一个{ZH_SIZE[s.size]}的{ZH_COLOUR[s.colour]}{ZH_SHAPE[s.kind]}"
                            for s in sh) + "。"
    raise ValueError(f"unknown category {category!r} or language {lang!r}")


# ---------------------------------------------------------------- scoring

def _find_in_order(text: str, vocab: dict[str, str]) -> list[str]:
    """Attribute names whose surface words occur in text, in order of appearance (longest match first)."""
    hits = []
    words = sorted(vocab.items(), key=lambda kv: -len(kv[0]))
    i = 0
    while i < len(text):
        for surface, name in words:
            if text.startswith(surface, i):
                hits.append(name)
                i += len(surface)
                break
        else:
            i += 1
    return hits


_COLOUR_VOCAB = {**{c: c for c in COLOURS}, **{v: k for k, v in ZH_COLOUR.items()}}
_SHAPE_VOCAB = {**{s: s for s in SHAPES}, **{v: k for k, v in ZH_SHAPE.items()}}
_COUNT_VOCAB = {"one": 1, "two": 2, "three": 3, "一个": 1, "两个": 2, "三个": 3}


def attributes_in(text: str, category: str) -> list:
    """Colour names, shape names or counts mentioned in a reply, in order."""
    t = text.lower()
    if category == "colour":
        return _find_in_order(t, _COLOUR_VOCAB)
    if category == "shape":
        return _find_in_order(t, _SHAPE_VOCAB)
    if category == "count":
        return _find_in_order(t, _COUNT_VOCAB)
    raise ValueError(category)


def truth(scene: Scene, category: str) -> list:
    if category == "colour":
        return [s.colour for s in scene.shapes]
    if category == "shape":
        return [s.kind for s in scene.shapes]
    if category == "count":
        return [scene.count]
    raise ValueError(category)


def is_correct(scene: Scene, category: str, reply: str) -> bool:
    """Exact attribute match: the reply names exactly the scene's attributes, in reading order."""
    return attributes_in(reply, category) == truth(scene, category)


if __name__ == "__main__":
    import sys
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/scenes-preview"
    import os
    os.makedirs(out, exist_ok=True)
    for i in range(12):
        sc = make_scene(1000 + i)
        render(sc, 256 if i % 2 == 0 else 320).save(f"{out}/scene-{i:02d}.png")
        print(i, answer(sc, "describe", "en"), answer(sc, "describe", "zh"))
