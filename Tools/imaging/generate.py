"""Test images and Pillow's expected pixels for Tests/ImagingTests.

Writes small images covering every decoder path into Tests/Data/imaging/images/ and
Tests/Data/imaging/expected.json with what Pillow 13.0.0 makes of them (SHA-256 of the RGB
bytes, with and without ImageOps.exif_transpose), what Pillow says about the broken files,
and SHA-256 of Pillow's resize for extra cases. Also hashes every JPEG of
shared/minimind/images and the fixtures' images.

    pip install pillow==13.0.0 numpy
    cc -O2 -o /tmp/write_ycck Tools/imaging/write_ycck.c -ljpeg
    python3 Tools/imaging/generate.py [--ycck /tmp/write_ycck]

Deterministic: re-running gives the same files.
"""
import argparse
import hashlib
import io
import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Data" / "imaging"
IMAGES = OUT / "images"
SHARED = ROOT.parent / "shared" / "minimind"


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).hexdigest()


# ---------------------------------------------------------------- PNG writer (Pillow cannot
# write 16-bit colour, grey+alpha 16, palette tRNS layouts of our choosing, or Adam7)

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_rows(arr: np.ndarray, bit_depth: int) -> list:
    rows = []
    for row in arr:
        if bit_depth == 16:
            rows.append(row.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:  # 1, 2, 4 bits, one sample per pixel
            per = 8 // bit_depth
            flat = list(row.reshape(-1))
            out = bytearray()
            for i in range(0, len(flat), per):
                byte = 0
                for j in range(per):
                    v = flat[i + j] if i + j < len(flat) else 0
                    byte |= (int(v) & ((1 << bit_depth) - 1)) << (8 - bit_depth * (j + 1))
                out.append(byte)
            rows.append(bytes(out))
    return rows


def png(arr, color_type, bit_depth, *, palette=None, trns=None, before_idat=b"", after_idat=b"", interlace=False):
    arr = np.asarray(arr)
    h, w = arr.shape[:2]
    raw = b""
    if interlace:
        for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
            sub = arr[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            raw += b"".join(b"\0" + r for r in pack_rows(sub, bit_depth))
    else:
        raw = b"".join(b"\0" + r for r in pack_rows(arr, bit_depth))
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        out += png_chunk(b"PLTE", bytes(palette))
    if trns is not None:
        out += png_chunk(b"tRNS", bytes(trns))
    out += before_idat + png_chunk(b"IDAT", zlib.compress(raw, 9)) + after_idat + png_chunk(b"IEND", b"")
    return out


def exif_bytes(orientation: int, big_endian=False) -> bytes:
    """A minimal TIFF structure with IFD0 holding only the orientation."""
    e = ">" if big_endian else "<"
    head = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(e + "I", 8)
    ifd = struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", orientation, 0) + struct.pack(e + "I", 0)
    return head + ifd


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ycck", default="/tmp/write_ycck", help="the compiled write_ycck.c")
    args = parser.parse_args()
    assert PIL.__version__ == "13.0.0", f"expected Pillow 13.0.0, have {PIL.__version__}"
    IMAGES.mkdir(parents=True, exist_ok=True)
    files = {}

    def save(name, data: bytes):
        (IMAGES / name).write_bytes(data)
        files[name] = None

    def pil_bytes(im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        return b.getvalue()

    # A real picture shrunk (texture for JPEG), odd sizes to exercise edge MCUs and upsampling.
    photo = Image.open(SHARED / "images" / "bird-0.jpg").convert("RGB")
    small = photo.resize((48, 32), Image.Resampling.BICUBIC)
    odd = photo.resize((37, 23), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(20251130)

    # ---- JPEG
    save("baseline-420.jpg", pil_bytes(small, "JPEG", quality=90))
    save("odd-37x23-420.jpg", pil_bytes(odd, "JPEG", quality=85))
    save("progressive-420.jpg", pil_bytes(small, "JPEG", quality=90, progressive=True))
    save("progressive-444-odd.jpg", pil_bytes(odd, "JPEG", quality=90, progressive=True, subsampling=0))
    save("subsampling-422.jpg", pil_bytes(odd, "JPEG", quality=90, subsampling=1))
    save("subsampling-444.jpg", pil_bytes(small, "JPEG", quality=90, subsampling=0))
    save("gray.jpg", pil_bytes(odd.convert("L"), "JPEG", quality=90))
    save("gray-progressive.jpg", pil_bytes(small.convert("L"), "JPEG", quality=90, progressive=True))
    cmyk = small.convert("CMYK")
    save("cmyk-adobe.jpg", pil_bytes(cmyk, "JPEG", quality=92))
    # YCCK from libjpeg itself: Adobe-inverted samples, as Photoshop writes them.
    inverted = (255 - np.asarray(cmyk)).astype(np.uint8)
    ycck = subprocess.run([args.ycck, "48", "32", "92"], input=inverted.tobytes(), capture_output=True, check=True).stdout
    save("ycck-adobe.jpg", ycck)
    save("tiny-1x1.jpg", pil_bytes(Image.new("RGB", (1, 1), (200, 30, 90)), "JPEG", quality=95))
    save("strip-61x1.jpg", pil_bytes(odd.resize((61, 1)), "JPEG", quality=95))
    # EXIF orientations 1..8 on a non-square picture (big- and little-endian TIFF headers).
    for o in range(1, 9):
        save(f"exif-orientation-{o}.jpg", pil_bytes(small, "JPEG", quality=90, exif=b"Exif\0\0" + exif_bytes(o, big_endian=o % 2 == 0)))
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    save("xmp-orientation-6.jpg", pil_bytes(small, "JPEG", quality=90, xmp=xmp))

    # ---- PNG (pixels from the odd picture and from noise)
    rgb = np.asarray(odd)
    gray = np.asarray(odd.convert("L"))
    alpha = rng.integers(0, 256, gray.shape, dtype=np.uint8)
    save("rgb8.png", png(rgb, 2, 8))
    save("rgba8.png", png(np.dstack([rgb, alpha]), 6, 8))
    save("gray8.png", png(gray, 0, 8))
    save("graya8.png", png(np.dstack([gray, alpha]), 4, 8))
    wide = rng.integers(0, 65536, rgb.shape, dtype=np.uint16)
    wide[0, :, :] = np.arange(wide.shape[1])[:, None] * 7  # small values: the I;16 clipping edge
    save("rgb16.png", png(wide, 2, 16))
    save("rgba16.png", png(np.dstack([wide, wide[..., :1]]), 6, 16))
    gray16 = rng.integers(0, 65536, gray.shape, dtype=np.uint16)
    gray16[:4] = rng.integers(0, 300, gray16[:4].shape)  # below, at and above 255
    save("gray16.png", png(gray16, 0, 16))
    save("graya16.png", png(np.dstack([gray16, gray16[::-1]]), 4, 16))
    palette = rng.integers(0, 256, (200, 3), dtype=np.uint8).reshape(-1)
    indexes = rng.integers(0, 200, gray.shape, dtype=np.uint8)
    save("palette8-trns.png", png(indexes, 3, 8, palette=palette, trns=rng.integers(0, 256, 120, dtype=np.uint8)))
    save("palette4.png", png(indexes % 16, 3, 4, palette=palette[:48]))
    save("palette1.png", png(indexes % 2, 3, 1, palette=palette[:6]))
    for bits in (1, 2, 4):
        save(f"gray{bits}.png", png(indexes % (1 << bits), 0, bits))
    save("gray8-trns.png", png(gray, 0, 8, trns=struct.pack(">H", int(gray[0, 0]))))
    save("rgb8-trns.png", png(rgb, 2, 8, trns=struct.pack(">HHH", *map(int, rgb[0, 0]))))
    save("rgb8-interlaced.png", png(rgb, 2, 8, interlace=True))
    save("gray16-interlaced.png", png(gray16, 0, 16, interlace=True))
    # Orientation in an eXIf chunk after the image data, and in ImageMagick's hex text profile.
    save("exif-orientation-6.png", png(rgb, 2, 8, after_idat=png_chunk(b"eXIf", exif_bytes(6))))
    profile = exif_bytes(3, big_endian=True)
    text = b"Raw profile type exif\0" + f"\nexif\n{len(profile):8}\n{profile.hex()}\n".encode()
    save("rawprofile-orientation-3.png", png(rgb, 2, 8, before_idat=png_chunk(b"tEXt", text)))
    # Noise for resampling exactness (lossless, so both sides start from the same pixels).
    for w, h in [(1, 1), (61, 1), (1, 45), (300, 3), (17, 13), (64, 48)]:
        save(f"noise-{w}x{h}.png", png(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), 2, 8))

    # ---- files that must be refused
    base = (IMAGES / "baseline-420.jpg").read_bytes()
    save("truncated-half.jpg", base[: len(base) // 2])
    save("truncated-header.jpg", base[:100])
    prog = (IMAGES / "progressive-420.jpg").read_bytes()
    save("truncated-progressive.jpg", prog[: len(prog) * 2 // 3])
    save("missing-eoi.jpg", base[:-2])  # everything but the final EOI marker
    save("missing-eoi-progressive.jpg", prog[:-2])
    sos = base.index(b"\xff\xda")
    save("corrupt-header.jpg", base[:20] + bytes(rng.integers(0, 256, sos - 20, dtype=np.uint8)) + base[sos:])
    huge = bytearray(base)
    sof = huge.index(b"\xff\xc0")
    huge[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # 3.6 gigapixels claimed by a 2 kB file
    save("oversized-60000x60000.jpg", bytes(huge))
    rgb_png = (IMAGES / "rgb8.png").read_bytes()
    save("truncated.png", rgb_png[: len(rgb_png) * 2 // 3])
    broken = bytearray(rgb_png)
    idat = broken.index(b"IDAT")
    for i in range(idat + 6, idat + 40):
        broken[i] ^= 0x5A
    save("corrupt-idat.png", bytes(broken))
    # A valid IHDR (correct CRC) claiming 10 gigapixels, followed by one tiny IDAT.
    save("oversized-100000x100000.png", b"\x89PNG\r\n\x1a\n"
         + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0))
         + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
    save("empty.jpg", b"")
    save("not-an-image.jpg", b"this is a text file, not a picture\n")
    save("gif-renamed.jpg", pil_bytes(small.convert("P"), "GIF"))

    # ---- what Pillow makes of each file
    def pillow_decode(data: bytes, transpose: bool):
        im = Image.open(io.BytesIO(data))
        im.load()
        if transpose:
            im = ImageOps.exif_transpose(im)
        rgb = np.asarray(im.convert("RGB"))
        return {"width": rgb.shape[1], "height": rgb.shape[0], "sha256": sha(rgb)}

    expected_files = {}
    for name in sorted(files):
        data = (IMAGES / name).read_bytes()
        entry = {"bytes": len(data)}
        try:
            entry["upright"] = pillow_decode(data, True)
            entry["as_stored"] = pillow_decode(data, False)
        except Exception as e:  # what Pillow says about the broken ones
            entry["pillow_error"] = f"{type(e).__name__}: {e}"
        expected_files[name] = entry

    shared = {}
    for path in sorted(list((SHARED / "images").glob("*")) + list((SHARED / "fixtures").glob("gen*/images/*"))):
        data = path.read_bytes()
        shared[str(path.relative_to(SHARED))] = {"upright": pillow_decode(data, True), "as_stored": pillow_decode(data, False)}

    # ---- resize exactness: Pillow's Image.resize, and the HF pipeline (resize + centre crop)
    def hf_resized(im: Image.Image, mode, size, crop, resample):
        """transformers' slow CLIP/SigLIP processors up to the 8-bit image (see Sources/Imaging/Preprocessing.swift)."""
        w, h = im.size
        if mode == "shortest_edge":
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(size * long / short)
            nh, nw = (new_long, size) if w <= h else (size, new_long)
        else:
            nh, nw = size
        a = np.asarray(im.resize((nw, nh), resample=resample, reducing_gap=None))
        if crop is None:
            return a
        ch, cw = crop
        top, left = (nh - ch) // 2, (nw - cw) // 2
        if top >= 0 and left >= 0 and top + ch <= nh and left + cw <= nw:
            return a[top:top + ch, left:left + cw]
        H, W = max(ch, nh), max(cw, nw)
        pad = np.zeros((H, W, 3), np.uint8)
        tp, lp = -(-(H - nh) // 2), -(-(W - nw) // 2)
        pad[tp:tp + nh, lp:lp + nw] = a
        top, left = top + tp, left + lp
        return pad[max(0, top):min(H, top + ch), max(0, left):min(W, left + cw)]

    resize_cases = []
    sources = [f"noise-{w}x{h}.png" for w, h in [(1, 1), (61, 1), (1, 45), (300, 3), (17, 13), (64, 48)]] + ["odd-37x23-420.jpg"]
    targets = {
        "noise-1x1.png": [(1, 1), (5, 3), (224, 224)],
        "noise-61x1.png": [(7, 1), (61, 4), (200, 1)],
        "noise-1x45.png": [(1, 9), (3, 45), (2, 100), (3, 9)],
        "noise-300x3.png": [(7, 2), (150, 3), (299, 5)],
        "noise-17x13.png": [(40, 31), (5, 4), (17, 26), (16, 13), (40, 9), (15, 2)],
        # (60, 10), (100, 30), (61, 7): Pillow 13 runs the vertical pass first there.
        "noise-64x48.png": [(20, 15), (33, 47), (64, 49), (127, 95), (60, 10), (100, 30), (61, 7), (5, 2)],
        "odd-37x23-420.jpg": [(12, 8), (80, 50)],
    }
    for name in sources:
        im = Image.open(IMAGES / name).convert("RGB")
        for w, h in targets[name]:
            for f in (1, 2, 3, 4, 5):
                out = np.asarray(im.resize((w, h), resample=f, reducing_gap=None))
                resize_cases.append({"image": name, "kind": "resize", "width": w, "height": h, "resample": f,
                                     "out_width": out.shape[1], "out_height": out.shape[0], "sha256": sha(out)})
    pipelines = [("shortest_edge", 224, (224, 224)), ("exact", (256, 256), None), ("shortest_edge", 24, (16, 30)),
                 ("exact", (9, 40), (12, 12)), ("shortest_edge", 5, None)]
    # "minimind/..." names a file of shared/minimind; other names are our test images.
    hf_sources = sources + ["minimind/images/bird-1.jpg", "minimind/images/v2-dance.jpg"]
    for name in hf_sources:
        path = SHARED.parent / name if name.startswith("minimind/") else IMAGES / name
        im = Image.open(path).convert("RGB")
        for mode, size, crop in pipelines:
            for f in (2, 3, 1):
                out = hf_resized(im, mode, size, crop, f)
                resize_cases.append({"image": name, "kind": mode, "size": list(size) if isinstance(size, tuple) else [size],
                                     "crop": list(crop) if crop else None, "resample": f,
                                     "out_width": out.shape[1], "out_height": out.shape[0], "sha256": sha(out)})

    # The pipeline above must agree with the upstream fixtures (made by transformers itself).
    for gen, mode, size, crop, f in [("gen2", "shortest_edge", 224, (224, 224), 3), ("gen3", "exact", (256, 256), None, 2)]:
        for ref in sorted((SHARED / "fixtures" / gen / "ref-images").iterdir()):
            im = Image.open(SHARED / "fixtures" / gen / "images" / (ref.name + ".jpg")).convert("RGB")
            want = np.load(ref / "resized_u8.npy").transpose(1, 2, 0)
            assert np.array_equal(hf_resized(im, mode, size, crop, f), want), ref

    doc = {
        "generator": "Tools/imaging/generate.py",
        "pillow": PIL.__version__,
        "pixels": "sha256 of the RGB bytes (height x width x 3) of Image.open(f) [-> ImageOps.exif_transpose] -> convert('RGB')",
        "files": expected_files,
        "shared": shared,
        "resize": resize_cases,
    }
    (OUT / "expected.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    total = sum((IMAGES / n).stat().st_size for n in files)
    print(f"{len(files)} images, {total} bytes; {len(shared)} shared; {len(resize_cases)} resize cases")


if __name__ == "__main__":
    main()
