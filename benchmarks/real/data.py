"""Offline data for the real-model benchmark, in three splits: calibration, dev (choices), test (reported).

- Natural images: seeded crops, flips and scales of scikit-image's and scikit-learn's bundled photos. Each
  split has its own photos (PHOTOS); skimage's ``cat`` is ``chelsea``, so only one of them is used.
- Faces: LFW faces from scikit-image (25x25, the first 100 of ``lfw_subset``) scaled up and pasted at
  random places and sizes on crops of the split's photos; each split has its own faces.
- Text lines: strings drawn from a word list, rendered with Pillow in Debian's DejaVu fonts, with noise and
  blur; the strings are the labels. Each split has its own seed, and no test string is in another split.
- Sentences: sentences.PAIRS (calibration pairs split into calibration and dev; the test pairs as they are).

Everything is uint8 images or token ids; each model's preprocessing is its own (models.py).
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np

SPLITS = ("calibration", "dev", "test")
# No photo in two splits. Gray photos are stacked to RGB.
PHOTOS = {
    "calibration": ("coffee", "astronaut", "rocket", "camera", "clock"),
    "dev": ("immunohistochemistry", "coins", "moon", "page"),
    "test": ("chelsea", "retina", "hubble_deep_field", "china.jpg", "flower.jpg", "grass"),
}
SEEDS = {"calibration": 11, "dev": 22, "test": 33}
# lfw_subset: images 0-99 are faces; each split takes its own.
FACES = {"calibration": range(0, 50), "dev": range(50, 70), "test": range(70, 100)}
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
# The six faces of fonts-dejavu-core (the Makefile installs it when missing).
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf",
         "DejaVuSansMono-Bold.ttf")
WORDS = ("river", "market", "Boston", "train", "coffee", "garden", "window", "summer", "planet", "rocket",
         "violet", "harbor", "Lisbon", "silver", "ticket", "number", "street", "orange", "yellow", "museum",
         "doctor", "bridge", "castle", "forest", "winter", "Quebec", "Oslo", "piano", "camera", "engine",
         "Monday", "April", "total", "price", "exit", "north", "south", "east", "west", "hotel", "label",
         "model", "metal", "paper", "stone", "water", "light", "night", "green", "black")
ASCII94 = string.printable[:94]  # the 94 printable ASCII characters, '0'..'~' in string.printable's order


def photo(name: str) -> np.ndarray:
    """A bundled photo as uint8 RGB (H, W, 3)."""
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(name)
    else:
        import skimage.data

        img = getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def crops(split: str, count: int, size: int = 224) -> np.ndarray:
    """``count`` seeded square crops (35-100% of the short side, so scales vary), resized to ``size`` and
    flipped at random, round-robin over the split's photos: uint8 (count, size, size, 3)."""
    from PIL import Image

    rng = np.random.default_rng(SEEDS[split])
    photos = [photo(n) for n in PHOTOS[split]]
    out = []
    for k in range(count):
        img = photos[k % len(photos)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.35, 1.0))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = np.asarray(Image.fromarray(img[top:top + side, left:left + side]).resize((size, size),
                                                                                       Image.BILINEAR))
        out.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def faces(split: str, count: int, size: int = 128) -> np.ndarray:
    """Photo crops with one LFW face pasted on each (face 30-70% of the image): uint8 (count, size, size, 3)."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(SEEDS[split] + 1)
    lfw = skimage.data.lfw_subset()
    ids = list(FACES[split])
    backgrounds = crops(split, count, size)
    out = []
    for k in range(count):
        face = (lfw[ids[k % len(ids)]] * 255).clip(0, 255).astype(np.uint8)
        side = int(size * rng.uniform(0.3, 0.7))
        patch = np.asarray(Image.fromarray(face).resize((side, side), Image.BICUBIC))
        tint = rng.uniform(0.8, 1.2, 3)  # a skin-ish colour cast on the gray face
        patch = np.clip(patch[..., None] * tint * np.array([1.0, 0.85, 0.75]), 0, 255).astype(np.uint8)
        img = backgrounds[k].copy()
        top, left = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
        img[top:top + side, left:left + side] = patch
        out.append(img)
    return np.stack(out)


def text_strings(split: str, count: int) -> list[str]:
    """Seeded strings of one or two words, sometimes with digits; no test string occurs in another split."""
    def draw(sp: str, n: int) -> list[str]:
        rng = np.random.default_rng(SEEDS[sp] + 2)
        out = []
        for _ in range(n):
            words = [WORDS[i] for i in rng.integers(0, len(WORDS), int(rng.integers(1, 3)))]
            if rng.random() < 0.4:
                words.append(str(int(rng.integers(0, 1000))))
            text = " ".join(words)
            out.append(text.upper() if rng.random() < 0.2 else text)
        return out

    strings = draw(split, count)
    if split == "test":
        others = set(draw("calibration", 512)) | set(draw("dev", 512))
        strings = [s if s not in others else s + " 7" for s in strings]
    return strings


def render_text(strings: list[str], split: str, height: int = 48) -> list[np.ndarray]:
    """Each string black-ish on a light background in a DejaVu font, tightly cropped with a margin, then
    Gaussian noise and a light blur: uint8 RGB images of ``height`` rows and their own width."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(SEEDS[split] + 3)
    out = []
    for text in strings:
        font = ImageFont.truetype(str(FONT_DIR / FONTS[int(rng.integers(0, len(FONTS)))]), 64)
        left, top, right, bottom = font.getbbox(text)
        pad = 12
        bg = tuple(int(v) for v in rng.integers(190, 256, 3))
        fg = tuple(int(v) for v in rng.integers(0, 70, 3))
        img = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), bg)
        ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=fg)
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.5))))
        w = max(1, round(img.width * height / img.height))
        arr = np.asarray(img.resize((w, height), Image.BILINEAR)).astype(np.float32)
        arr += rng.normal(0, rng.uniform(2, 10), arr.shape)
        out.append(arr.clip(0, 255).astype(np.uint8))
    return out


def sentence_split(split: str) -> list[str]:
    """Sentences in pair order (rows 2i and 2i+1 are paraphrases): calibration pairs 0-23, dev pairs 24-35
    (both from sentences.py's calibration pairs), test = sentences.py's test pairs."""
    from benchmarks.real import sentences

    pairs = sentences.PAIRS
    cut = sentences.CALIBRATION_PAIRS
    chosen = {"calibration": pairs[:cut * 2 // 3], "dev": pairs[cut * 2 // 3:cut], "test": pairs[cut:]}[split]
    return [s for pair in chosen for s in pair]
