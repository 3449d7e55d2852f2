"""Render the images and voice notes that posts.jsonl, train.jsonl and eval.jsonl point at (under ../media/).

Deterministic (every file is drawn from its own seed, derived from SEED and the post id) and idempotent:
a file that exists and whose SHA-256 matches media/MANIFEST.json ({file name: sha256}) is skipped, so a
second run writes nothing. Run from anywhere:

    python polyglm/scenarios/packs/social_sentiment/data/make_media.py [--force] [--no-verify]

Images (224x224 "reaction image" cards, no text in them so OCR cannot read the answer): the background
colour is drawn from the post id alone (never from a label: an image model must read the face and the scene,
not a colour shortcut), a drawn face shows the gold emotion (joy smile, sadness frown and tear, anger slanted
brows, fear wide eyes, surprise O-mouth, disgust wavy mouth, neutral flat), its size and stroke grow with the
intensity, and a few simple shapes match the post's `image_hint` (sun, waves, bowl, rain, bus, ball, cat ears,
a phone screen...).

Voice notes: Debian's `espeak-ng` speaks the post text (hashtags, emoji and links dropped; voice
`cmn-latn-pinyin` for Chinese, `en-us`/`en` variants for English) at a speed, pitch and loudness set by the
emotion and the `voice_hint` (sigh and sadness slow and low, joy fast and high, anger loud and fast), plus
synthesised cues from the hint (sighs, sniffs, breathing, laughter, table bangs, wind, rain, waves, crowd,
birds, a dog), as 16 kHz mono of at most 12 s, encoded by `ffmpeg` in the format the file name asks for.

The file names (and so the formats) are chosen by make_data.py; this script renders whatever is referenced.
After changing how files are drawn or spoken, run it with --force: the manifest only knows the bytes.
"""

# No `from __future__ import annotations`: with it, dataclasses look this module up in sys.modules, which
# fails when a test loads the file with importlib.util.module_from_spec without registering it first.
import argparse
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import wave
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from polyglm.scenarios.datagen import read_jsonl

SEED = 20261001
HERE = Path(__file__).resolve().parent
PACK_DIR = HERE.parent
MEDIA_DIR = PACK_DIR / "media"
MANIFEST_NAME = "MANIFEST.json"
POSTS_FILE = HERE / "posts.jsonl"
DATA_FILES = (POSTS_FILE, HERE / "train.jsonl", HERE / "eval.jsonl")
MEDIA_KEYS = ("image", "audio")

SIZE = 224  # output images are SIZE x SIZE
SCALE = 2  # drawn at SCALE x SIZE, then downsampled: smooth edges without per-shape antialiasing
RATE = 16_000  # Hz, mono
MAX_SECONDS = 12.0
IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
AUDIO_CODECS = {  # ffmpeg output options per suffix; small bit rates: these are short speech clips
    ".wav": ["-c:a", "pcm_s16le", "-f", "wav"],
    ".flac": ["-c:a", "flac", "-compression_level", "12", "-f", "flac"],
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3"],
    ".m4a": ["-c:a", "aac", "-b:a", "32k", "-movflags", "+faststart", "-f", "ipod"],
    ".ogg": ["-c:a", "libopus", "-b:a", "24k", "-application", "voip", "-f", "ogg"],
}

# 16-bit mono PCM on stdin; no metadata or encoder-version tags, so the bytes depend on the audio only
FFMPEG_RAW_INPUT = (
    f"-nostdin -v error -f s16le -ar {RATE} -ac 1 -i pipe:0 -map_metadata -1 -fflags +bitexact -flags:a +bitexact"
).split()

Colour = tuple[int, int, int]
INK: Colour = (58, 38, 30)


def seed_for(*parts: object) -> int:
    """A stable 64-bit seed (Python's hash() of a str changes between runs)."""
    text = ":".join(str(p) for p in (SEED, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# ============================================================================= what to render


@dataclass(frozen=True)
class Job:
    name: str  # file name inside media/, e.g. "post-0001.png"
    kind: str  # "image" or "audio"
    post: dict


def referenced_media(data_files: tuple[Path, ...] = DATA_FILES) -> dict[str, str]:
    """{"media/post-0001.png": "image", ...} for every media path any of the JSONL files names."""
    found: dict[str, str] = {}

    def note(record: dict, where: str) -> None:
        for key in MEDIA_KEYS:
            if key in record and found.setdefault(record[key], key) != key:
                raise ValueError(f"{where}: {record[key]} is used both as an image and as audio")

    for path in data_files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            item = json.loads(line)
            note(item, f"{path.name}:{number}")
            for message in item.get("messages", []):
                note(message, f"{path.name}:{number}")
    return found


def plan_jobs(data_files: tuple[Path, ...] = DATA_FILES, posts_file: Path = POSTS_FILE) -> list[Job]:
    """One job per referenced file, each tied to the post (and hint) it shows; sorted by name."""
    posts = {post["id"]: post for post in read_jsonl(posts_file)}
    jobs = []
    for relative, kind in sorted(referenced_media(data_files).items()):
        path = Path(relative)
        if path.parent != Path("media"):
            raise ValueError(f"{relative}: media files live directly under media/")
        post = posts.get(path.stem)
        if post is None or post.get(kind) != relative:
            raise ValueError(f"{relative}: no post in {posts_file.name} has it as its {kind}; rerun make_data.py")
        suffixes = IMAGE_SUFFIXES if kind == "image" else AUDIO_CODECS
        if path.suffix not in suffixes:
            raise ValueError(f"{relative}: cannot render {kind} as {path.suffix}; use one of {sorted(suffixes)}")
        jobs.append(Job(path.name, kind, post))
    return jobs


# ============================================================================= images


class Canvas:
    """ImageDraw taking coordinates in output pixels (0..SIZE), drawing at SCALE times that."""

    def __init__(self, image: Image.Image):
        self.draw = ImageDraw.Draw(image)

    @staticmethod
    def _w(width: float) -> int:
        return max(1, round(width * SCALE)) if width else 0

    @staticmethod
    def _box(cx: float, cy: float, rx: float, ry: float) -> list[float]:
        return [(cx - rx) * SCALE, (cy - ry) * SCALE, (cx + rx) * SCALE, (cy + ry) * SCALE]

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width=0.0) -> None:
        self.draw.ellipse(self._box(cx, cy, rx, ry), fill=fill, outline=outline, width=self._w(width))

    def arc(self, cx, cy, rx, ry, start, end, fill, width) -> None:
        self.draw.arc(self._box(cx, cy, rx, ry), start, end, fill=fill, width=self._w(width))

    def chord(self, cx, cy, rx, ry, start, end, fill=None, outline=None, width=0.0) -> None:
        self.draw.chord(self._box(cx, cy, rx, ry), start, end, fill=fill, outline=outline, width=self._w(width))

    def line(self, points, fill, width, caps: bool = True) -> None:
        self.draw.line([(x * SCALE, y * SCALE) for x, y in points], fill=fill, width=self._w(width), joint="curve")
        if caps:
            for x, y in (points[0], points[-1]):
                self.ellipse(x, y, width / 2, width / 2, fill=fill)

    def polygon(self, points, fill=None, outline=None, width=0.0) -> None:
        self.draw.polygon([(x * SCALE, y * SCALE) for x, y in points], fill=fill, outline=outline, width=self._w(width))

    def rect(self, x0, y0, x1, y1, fill=None, outline=None, width=0.0, radius=0.0) -> None:
        box = [x0 * SCALE, y0 * SCALE, x1 * SCALE, y1 * SCALE]
        self.draw.rounded_rectangle(box, radius=radius * SCALE, fill=fill, outline=outline, width=self._w(width))

    def teardrop(self, cx, cy, r, fill, outline=None) -> None:
        """A drop with its point up, round end centred on (cx, cy)."""
        self.polygon([(cx - r * 0.92, cy - r * 0.35), (cx, cy - r * 2.3), (cx + r * 0.92, cy - r * 0.35)], fill=fill)
        self.ellipse(cx, cy, r, r, fill=fill)
        if outline:
            self.arc(cx, cy, r, r, -20, 200, outline, max(1.0, r / 4))


def hsv(hue: float, saturation: float, value: float) -> Colour:
    """Hue in degrees, saturation and value in 0..1."""
    h = (hue % 360) / 60
    c = value * saturation
    x = c * (1 - abs(h % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    m = value - c
    return tuple(round(255 * (v + m)) for v in (r, g, b))


def mix(a: Colour, b: Colour, t: float) -> Colour:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))


# --- colours

FACE = {
    "joy": (255, 212, 60),
    "surprise": (255, 220, 95),
    "neutral": (246, 222, 150),
    "sadness": (232, 216, 140),
    "anger": (255, 150, 70),
    "fear": (226, 220, 236),
    "disgust": (196, 212, 104),
}


def background_colours(post_id: str, night: bool) -> tuple[Colour, Colour]:
    """(top, bottom) of the card's vertical gradient, drawn from the post id alone: every colour family (warm,
    grey, cool, dark) for every label, so an image model cannot read the label off the background."""
    rng = random.Random(seed_for(post_id, "background"))
    hue = rng.uniform(0, 360)
    saturation, value = rng.choice([(0.45, 1.0), (0.08, 0.88), (0.35, 0.62), (0.4, 0.8)])  # warm/grey/dark/cool
    saturation, value = saturation + rng.uniform(-0.05, 0.1), value + rng.uniform(-0.06, 0.0)
    top = hsv(hue, saturation, value)
    bottom = hsv(hue + rng.uniform(-20, 20), min(1.0, saturation + 0.1), max(0.0, value - 0.12))
    if night:
        top, bottom = mix(top, (18, 22, 48), 0.55), mix(bottom, (18, 22, 48), 0.4)
    return top, bottom


def face_colour(emotion: str, intensity: int) -> Colour:
    colour = FACE[emotion]
    if emotion == "anger":  # redder the angrier
        colour = mix(colour, (235, 60, 45), 0.12 * intensity)
    if emotion == "disgust":
        colour = mix(colour, (120, 170, 60), 0.07 * intensity)
    return colour


def gradient(top: Colour, bottom: Colour) -> Image.Image:
    side = SIZE * SCALE
    t = np.linspace(0.0, 1.0, side)[:, None]
    rows = np.asarray(top, float)[None, :] * (1 - t) + np.asarray(bottom, float)[None, :] * t
    pixels = np.repeat(rows[:, None, :], side, axis=1)
    return Image.fromarray(np.round(pixels).astype(np.uint8), "RGB")


# --- the face: the emotion in primitives


@dataclass
class Face:
    c: Canvas
    cx: float
    cy: float
    r: float
    intensity: int
    width: float  # stroke width

    def at(self, dx: float, dy: float) -> tuple[float, float]:
        """A point in face units (radius 1) around the centre."""
        return self.cx + dx * self.r, self.cy + dy * self.r

    def oval(self, dx, dy, rx, ry, **style) -> None:
        x, y = self.at(dx, dy)
        self.c.ellipse(x, y, rx * self.r, ry * self.r, **style)

    def stroke(self, *points: tuple[float, float], scale: float = 1.0) -> None:
        self.c.line([self.at(*p) for p in points], INK, self.width * scale)

    def curve(self, dx, dy, rx, ry, start, end, scale: float = 1.0, colour: Colour = INK) -> None:
        x, y = self.at(dx, dy)
        self.c.arc(x, y, rx * self.r, ry * self.r, start, end, colour, self.width * scale)

    def eyes(self, dy: float, rx: float, ry: float) -> None:
        for side in (-1, 1):
            self.oval(side * 0.34, dy, rx, ry, fill=INK)

    def wide_eyes(self, dy: float, rx: float, ry: float, pupil: float) -> None:
        for side in (-1, 1):
            self.oval(side * 0.34, dy, rx, ry, fill=(255, 255, 255), outline=INK, width=self.width * 0.7)
            self.oval(side * 0.34, dy + 0.02, pupil, pupil, fill=INK)


def draw_joy(f: Face, rng: random.Random) -> None:
    i = f.intensity
    if i >= 3:
        for side in (-1, 1):
            f.oval(side * 0.56, 0.2, 0.15, 0.09, fill=(255, 150, 140))
    if i >= 4:
        for side in (-1, 1):  # closed, smiling eyes: ^ ^
            f.curve(side * 0.34, -0.08, 0.14, 0.12, 195, 345)
        x, y = f.at(0, 0.14)
        rx, ry = (0.46 + 0.03 * i) * f.r, 0.44 * f.r
        f.c.chord(x, y, rx, ry, 0, 180, fill=(130, 32, 42), outline=INK, width=f.width)
        f.c.rect(x - rx * 0.78, y, x + rx * 0.78, y + ry * 0.22, fill=(255, 255, 255))
        f.oval(0, 0.45, 0.2, 0.09, fill=(240, 110, 120))
    else:
        f.eyes(-0.14, 0.065, 0.11)
        f.curve(0, 0.06, 0.36 + 0.05 * i, 0.28 + 0.05 * i, 25, 155)


def draw_surprise(f: Face, rng: random.Random) -> None:
    i = f.intensity
    for side in (-1, 1):
        f.curve(side * 0.34, -0.44 - 0.02 * i, 0.16, 0.08, 200, 340, scale=0.8)
    f.wide_eyes(-0.14, 0.12, 0.15, 0.05)
    f.oval(0, 0.44, 0.09 + 0.025 * i, 0.11 + 0.03 * i, fill=(95, 30, 35), outline=INK, width=f.width * 0.8)


def draw_sadness(f: Face, rng: random.Random) -> None:
    i = f.intensity
    for side in (-1, 1):  # brows: inner ends raised
        f.stroke((side * 0.52, -0.3), (side * 0.16, -0.38 - 0.02 * i), scale=0.8)
    f.eyes(-0.08, 0.06, 0.09)
    f.curve(0, 0.62, 0.26 + 0.03 * i, 0.18 + 0.01 * i, 205, 335)
    tear = (95, 165, 235)
    sides = (-1, 1) if i >= 4 else (rng.choice((-1, 1)),)
    for side in sides:
        x, y = f.at(side * 0.34, 0.14 + 0.03 * i)
        if i >= 5:  # a stream down the cheek
            f.c.rect(x - 0.05 * f.r, f.at(0, 0.0)[1], x + 0.05 * f.r, y, fill=tear)
        f.c.teardrop(x, y, (0.06 + 0.012 * i) * f.r, tear, outline=(60, 110, 190))


def draw_anger(f: Face, rng: random.Random) -> None:
    i = f.intensity
    slant = 0.05 + 0.03 * i
    for side in (-1, 1):  # brows: inner ends pulled down
        f.stroke((side * 0.56, -0.42 - slant / 2), (side * 0.12, -0.28 + slant / 2), scale=1.3)
    f.eyes(-0.1, 0.07, 0.065)
    if i >= 4:  # gritted teeth
        x0, y0 = f.at(-0.32, 0.3)
        x1, y1 = f.at(0.32, 0.52)
        f.c.rect(x0, y0, x1, y1, fill=(255, 255, 255), outline=INK, width=f.width * 0.8, radius=0.06 * f.r)
        f.c.line([(x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2)], INK, f.width * 0.5, caps=False)
        for k in range(1, 4):
            x = x0 + (x1 - x0) * k / 4
            f.c.line([(x, y0), (x, y1)], INK, f.width * 0.5, caps=False)
        vx, vy = f.at(0.66, -0.66)  # the cartoon anger mark
        s = 0.11 * f.r
        for dx, dy, start in ((-1, -1, 0), (1, -1, 90), (1, 1, 180), (-1, 1, 270)):
            f.c.arc(vx + dx * s, vy + dy * s, s, s, start, start + 90, (215, 25, 30), f.width * 0.9)
    else:
        f.curve(0, 0.58, 0.26, 0.12, 205, 335)


def draw_fear(f: Face, rng: random.Random) -> None:
    i = f.intensity
    if i >= 4:  # the blue forehead of a frightened emoji
        f.c.chord(f.cx, f.cy, f.r, f.r, 195, 345, fill=(125, 150, 230))
        f.c.ellipse(f.cx, f.cy, f.r, f.r, outline=INK, width=f.width)
    for side in (-1, 1):
        f.stroke((side * 0.5, -0.42), (side * 0.16, -0.54), scale=0.75)
    f.wide_eyes(-0.16, 0.13, 0.16, 0.035)
    if i >= 3:  # grimace
        x0, y0 = f.at(-0.3, 0.3)
        x1, y1 = f.at(0.3, 0.48 + 0.02 * i)
        f.c.rect(x0, y0, x1, y1, fill=(255, 255, 255), outline=INK, width=f.width * 0.8, radius=0.08 * f.r)
        f.c.line([(x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2)], INK, f.width * 0.5, caps=False)
    else:
        f.oval(0, 0.42, 0.14, 0.08, fill=(95, 30, 35), outline=INK, width=f.width * 0.7)
    x, y = f.at(0.74, -0.28)
    f.c.teardrop(x, y, 0.08 * f.r, (150, 205, 250), outline=(70, 130, 200))
    if i >= 4:  # shiver marks beside the face
        for side in (-1, 1):
            for k in range(3):
                x, y = f.at(side * (1.12 + 0.1 * k), -0.2 + 0.2 * k)
                f.c.line([(x, y - 0.08 * f.r), (x + side * 0.04 * f.r, y + 0.08 * f.r)], INK, f.width * 0.5)


def draw_disgust(f: Face, rng: random.Random) -> None:
    i = f.intensity
    f.stroke((-0.54, -0.3), (-0.16, -0.24), scale=1.0)  # one brow pulled down...
    f.curve(0.34, -0.3, 0.16, 0.08, 200, 340, scale=0.8)  # ...one raised
    f.stroke((-0.46, -0.1), (-0.22, -0.06), scale=0.9)  # a squint
    f.oval(0.34, -0.08, 0.06, 0.05, fill=INK)
    points = []
    for k in range(25):  # wavy mouth
        t = k / 24
        points.append(f.at(-0.36 + 0.72 * t, 0.42 + (0.05 + 0.012 * i) * math.sin(t * 3 * math.pi)))
    f.c.line(points, INK, f.width)
    if i >= 4:  # tongue out
        x, y = f.at(0.12, 0.45)
        f.c.chord(x, y, 0.11 * f.r, 0.16 * f.r, 0, 180, fill=(235, 105, 120), outline=INK, width=f.width * 0.6)


def draw_neutral(f: Face, rng: random.Random) -> None:
    if rng.random() < 0.5:
        for side in (-1, 1):
            f.stroke((side * 0.48, -0.34), (side * 0.2, -0.34), scale=0.7)
    f.eyes(-0.12, 0.06, 0.08)
    f.stroke((-0.24, 0.4), (0.24, 0.4))


FEATURES: dict[str, Callable[[Face, random.Random], None]] = {
    "joy": draw_joy,
    "surprise": draw_surprise,
    "sadness": draw_sadness,
    "anger": draw_anger,
    "fear": draw_fear,
    "disgust": draw_disgust,
    "neutral": draw_neutral,
}


def draw_ears(c: Canvas, kind: str, cx: float, cy: float, r: float, skin: Colour, width: float) -> None:
    """Drawn before the face, which then covers their base."""
    if kind == "cat":
        for side in (-1, 1):
            tip = (cx + side * 0.72 * r, cy - 1.18 * r)
            base = [(cx + side * 0.25 * r, cy - 0.85 * r), (cx + side * 0.95 * r, cy - 0.35 * r)]
            c.polygon([base[0], tip, base[1]], fill=skin, outline=INK, width=width)
            inner = [(cx + side * 0.4 * r, cy - 0.78 * r), (cx + side * 0.7 * r, cy - 1.0 * r)]
            c.polygon([inner[0], inner[1], (cx + side * 0.82 * r, cy - 0.55 * r)], fill=(250, 160, 170))
    elif kind == "dog":
        for side in (-1, 1):
            c.ellipse(
                cx + side * 0.92 * r, cy - 0.05 * r, 0.3 * r, 0.55 * r, fill=(150, 95, 55), outline=INK, width=width
            )
    else:  # small round ears: hamster, otter
        for side in (-1, 1):
            c.ellipse(cx + side * 0.68 * r, cy - 0.74 * r, 0.24 * r, 0.24 * r, fill=skin, outline=INK, width=width)
            c.ellipse(cx + side * 0.68 * r, cy - 0.74 * r, 0.12 * r, 0.12 * r, fill=(250, 165, 170))


# --- scene elements from the hint (no text: shapes only)


@dataclass
class Scene:
    c: Canvas
    rng: random.Random
    post: dict
    hint: str
    top: Colour
    bottom: Colour
    night: bool


@dataclass
class Place:
    """One scene shape: coordinates in units of `size` around (x, y); stroke widths in pixels."""

    s: Scene
    x: float
    y: float
    size: float

    def p(self, dx: float, dy: float) -> tuple[float, float]:
        return self.x + dx * self.size, self.y + dy * self.size

    def has(self, pattern: str) -> bool:
        return re.search(pattern, self.s.hint) is not None

    def rect(self, dx0, dy0, dx1, dy1, radius=0.0, **style) -> None:
        self.s.c.rect(*self.p(dx0, dy0), *self.p(dx1, dy1), radius=radius * self.size, **style)

    def ellipse(self, dx, dy, rx, ry, **style) -> None:
        self.s.c.ellipse(*self.p(dx, dy), rx * self.size, ry * self.size, **style)

    def chord(self, dx, dy, rx, ry, start, end, **style) -> None:
        self.s.c.chord(*self.p(dx, dy), rx * self.size, ry * self.size, start, end, **style)

    def arc(self, dx, dy, rx, ry, start, end, colour, width) -> None:
        self.s.c.arc(*self.p(dx, dy), rx * self.size, ry * self.size, start, end, colour, width)

    def polygon(self, points, **style) -> None:
        self.s.c.polygon([self.p(*q) for q in points], **style)

    def line(self, points, colour, width, caps: bool = True) -> None:
        self.s.c.line([self.p(*q) for q in points], colour, width, caps)


def _sun(o: Place) -> None:
    colour = (255, 130, 60) if o.has(r"sunset|sunrise|evening") else (255, 206, 45)
    for k in range(10):
        angle = 2 * math.pi * k / 10 + o.s.rng.uniform(0, 0.2)
        cos, sin = math.cos(angle), math.sin(angle)
        o.line([(1.3 * cos, 1.3 * sin), (1.75 * cos, 1.75 * sin)], colour, 2.2)
    o.ellipse(0, 0, 1, 1, fill=colour)


def _moon(o: Place) -> None:
    o.ellipse(0, 0, 0.8, 0.8, fill=(245, 238, 190))
    o.ellipse(0.38, -0.2, 0.7, 0.7, fill=o.s.top)
    for _ in range(4):
        x, y = o.s.rng.uniform(10, SIZE - 10), o.s.rng.uniform(8, 60)
        o.s.c.ellipse(x, y, 1.3, 1.3, fill=(250, 250, 220))


def _cloud(o: Place) -> None:
    grey = (236, 238, 242) if o.s.post["polarity"] != "negative" else (170, 174, 186)
    for dx, dy, r in ((-0.7, 0.15, 0.55), (0.0, -0.2, 0.75), (0.7, 0.15, 0.55)):
        o.ellipse(dx, dy, r, r, fill=grey)
    o.rect(-0.7, 0.05, 0.7, 0.7, radius=0.3, fill=grey)


def _balloons(o: Place) -> None:
    for k, colour in enumerate(((235, 80, 90), (80, 160, 235), (250, 200, 60))):
        dx, dy = (k - 1) * 0.7, -0.2 + (k % 2) * 0.3
        o.line([(dx, dy + 0.45), (0, 1.4)], (90, 90, 90), 1.0)
        o.ellipse(dx, dy, 0.4, 0.5, fill=colour)


def _rainbow(s: Scene) -> None:
    colours = [(235, 70, 70), (245, 150, 50), (250, 220, 70), (90, 190, 90), (70, 140, 230), (140, 90, 200)]
    x, y = SIZE / 2 + s.rng.uniform(-20, 20), 150
    for k, colour in enumerate(colours):
        r = 118 - 8 * k
        s.c.arc(x, y, r, r * 0.9, 180, 360, colour, 8.5)


def _aurora(s: Scene) -> None:
    for k, colour in enumerate(((90, 230, 150), (160, 110, 220), (110, 240, 190))):
        base, amp, phase = 30 + 18 * k, 8 + 3 * k, s.rng.uniform(0, 6)
        points = [(x, base + amp * math.sin(x / 30 + phase)) for x in range(0, SIZE + 8, 8)]
        s.c.line(points, colour, 7)


def _rain(s: Scene) -> None:
    heavy = s.post["polarity"] == "negative"
    colour = (205, 215, 235) if heavy else (150, 180, 220)
    for _ in range(30 + (12 * s.post["intensity"] if heavy else 0)):
        x, y = s.rng.uniform(-10, SIZE), s.rng.uniform(-10, SIZE)
        s.c.line([(x, y), (x - 4, y + 12)], colour, 1.3)


def _wind(s: Scene) -> None:
    for _ in range(5):
        x, y, length = s.rng.uniform(0, 110), s.rng.uniform(20, 200), s.rng.uniform(60, 110)
        points = [(x + t, y + 3 * math.sin(t / 12)) for t in range(0, int(length), 6)]
        s.c.line(points, (235, 240, 248), 2.0)
        ex, ey = points[-1]
        s.c.arc(ex, ey - 6, 6, 6, -90, 180, (235, 240, 248), 2.0)


def _hail(s: Scene) -> None:
    for _ in range(30):
        x, y = s.rng.uniform(5, SIZE - 5), s.rng.uniform(150, SIZE - 4)
        s.c.ellipse(x, y, 2.6, 2.6, fill=(250, 252, 255), outline=(170, 180, 200), width=0.6)


def _confetti(s: Scene) -> None:
    for _ in range(36):
        x, y = s.rng.uniform(0, SIZE), s.rng.uniform(0, SIZE)
        colour = hsv(s.rng.uniform(0, 360), 0.75, 0.95)
        s.c.rect(x, y, x + 4, y + 2.5, fill=colour)


def _waves(s: Scene) -> None:
    level = 172 + s.rng.uniform(-6, 6)
    for k, colour in enumerate(((70, 145, 215), (110, 180, 235))):
        y0 = level + 14 * k
        points = [(x, y0 + 4 * math.sin(x / 14 + k)) for x in range(0, SIZE + 4, 4)]
        if k == 0:
            s.c.polygon([*points, (SIZE, SIZE), (0, SIZE)], fill=colour)
        else:
            s.c.line(points, colour, 2.5)


def _flood(s: Scene) -> None:
    level = 150 + s.rng.uniform(-6, 6)
    points = [(x, level + 3 * math.sin(x / 11)) for x in range(0, SIZE + 4, 4)]
    s.c.polygon([*points, (SIZE, SIZE), (0, SIZE)], fill=(128, 98, 58))
    for _ in range(5):
        x, y = s.rng.uniform(15, SIZE - 15), s.rng.uniform(level + 15, SIZE - 10)
        s.c.arc(x, y, 12, 3, 0, 360, (165, 135, 90), 1.2)


def _mountains(s: Scene) -> None:
    snowy = re.search(r"snow|aurora", s.hint) is not None
    for k in range(3):
        peak_x, peak_y = 30 + 80 * k + s.rng.uniform(-12, 12), 120 + s.rng.uniform(-10, 20)
        colour = mix((90, 110, 140), (70, 120, 90), 0.5 * (k % 2))
        s.c.polygon([(peak_x - 80, SIZE), (peak_x, peak_y), (peak_x + 80, SIZE)], fill=colour)
        if snowy:
            s.c.polygon(
                [(peak_x - 16, peak_y + 16), (peak_x, peak_y), (peak_x + 16, peak_y + 16)], fill=(250, 250, 250)
            )


def _field(s: Scene) -> None:
    colour = (225, 185, 70) if "rice" in s.hint else (105, 175, 90)
    s.c.ellipse(SIZE / 2, SIZE + 110, 190, 150, fill=colour)


def _city(s: Scene) -> None:
    x, dark = 0.0, mix(s.bottom, (30, 35, 50), 0.6)
    while x < SIZE:
        width, height = s.rng.uniform(18, 34), s.rng.uniform(30, 75)
        s.c.rect(x, SIZE - height, x + width - 2, SIZE, fill=dark)
        for wy in range(int(SIZE - height + 6), SIZE - 6, 10):
            for wx in range(int(x + 4), int(x + width - 6), 8):
                if s.rng.random() < 0.45:
                    lit = (250, 220, 120) if s.night else mix(dark, (220, 225, 235), 0.35)
                    s.c.rect(wx, wy, wx + 3, wy + 4, fill=lit)
        x += width


def _bowl(o: Place) -> None:
    food = (150, 62, 40) if o.has(r"pork|braised") else (236, 196, 118)
    if o.has(r"chili|snail|hotpot"):
        food = (215, 70, 40)
    for k in range(3):
        o.line([(-0.5 + 0.5 * k + 0.12 * math.sin(t), -1.0 - 0.1 * t) for t in range(0, 7)], (250, 250, 250), 1.5)
    o.ellipse(0, -0.3, 1.05, 0.32, fill=food)
    o.chord(0, -0.3, 1.15, 0.95, 0, 180, fill=(245, 245, 248), outline=INK, width=1.5)
    o.chord(0, -0.1, 0.9, 0.5, 20, 160, fill=(70, 130, 200))


def _plate(o: Place) -> None:
    o.ellipse(0, 0.25, 1.25, 0.5, fill=(248, 248, 250), outline=INK, width=1.3)
    food = (215, 160, 80) if o.has(r"loaf|croissant|toast|bread") else (170, 95, 55)
    o.ellipse(0, 0.05, 0.75, 0.45, fill=food, outline=mix(food, INK, 0.4), width=1.0)


def _cake(o: Place) -> None:
    o.rect(-1, -0.2, 1, 0.7, fill=(250, 200, 215), outline=INK, width=1.2)
    o.rect(-1, -0.2, 1, 0.05, fill=(255, 250, 250))
    o.rect(-0.08, -0.75, 0.08, -0.2, fill=(120, 170, 230))
    o.s.c.teardrop(*o.p(0, -0.82), 0.1 * o.size, (255, 170, 40))


def _cup(o: Place) -> None:
    drink = (110, 65, 40)
    if o.has(r"cola"):
        drink = (190, 40, 45)
    elif o.has(r"champagne|yogurt|milk tea"):
        drink = (245, 225, 160)
    o.arc(0.6, 0, 0.35, 0.3, 270, 90, INK, 2.0)
    o.rect(-0.6, -0.6, 0.6, 0.7, fill=drink, outline=INK, width=1.4)


def _vehicle(o: Place) -> None:
    body = (80, 140, 205) if o.has(r"train|subway|platform|station|departure") else (230, 90, 60)
    o.rect(-1.3, -0.75, 1.3, 0.5, radius=0.25, fill=body, outline=INK, width=1.4)
    for k in range(4):
        o.rect(-1.1 + 0.58 * k, -0.55, -0.68 + 0.58 * k, -0.1, fill=(205, 230, 250))
    for side in (-1, 1):
        o.ellipse(side * 0.8, 0.55, 0.22, 0.22, fill=INK)


def _plane(o: Place) -> None:
    white = (245, 246, 250)
    for side in (-1, 1):
        o.polygon([(-0.3, 0), (0.1, side * 1.0), (0.35, 0)], fill=white)
    o.rect(-1.3, -0.18, 1.3, 0.18, radius=0.18, fill=white, outline=(90, 100, 120))
    o.polygon([(-1.25, 0), (-1.4, -0.55), (-1.0, 0)], fill=white)


def _ball(o: Place) -> None:
    o.ellipse(0, 0, 0.85, 0.85, fill=(250, 250, 250), outline=INK, width=1.5)
    angles = [-math.pi / 2 + 2 * math.pi * k / 5 for k in range(5)]
    o.polygon([(0.3 * math.cos(a), 0.3 * math.sin(a)) for a in angles], fill=INK)
    for a in angles:
        o.line([(0.3 * math.cos(a), 0.3 * math.sin(a)), (0.78 * math.cos(a), 0.78 * math.sin(a))], INK, 1.2)


def _trophy(o: Place) -> None:
    gold, dark = (245, 195, 50), (190, 140, 30)
    for side in (-1, 1):
        o.arc(side * 0.75, -0.45, 0.3, 0.3, 0, 360, dark, 2.0)
    o.chord(0, -0.75, 0.8, 0.95, 0, 180, fill=gold, outline=dark, width=1.2)
    o.rect(-0.12, 0.15, 0.12, 0.55, fill=gold)
    o.rect(-0.5, 0.55, 0.5, 0.8, fill=dark)


def _bike(o: Place) -> None:
    frame = (40, 110, 170)
    for side in (-1, 1):
        o.arc(side * 0.75, 0.3, 0.5, 0.5, 0, 360, INK, 1.8)
    o.line([(-0.75, 0.3), (-0.1, -0.35), (0.45, -0.35), (0.75, 0.3)], frame, 2.2)
    o.line([(-0.75, 0.3), (0.05, 0.3), (0.45, -0.35)], frame, 2.2)


def _tree(o: Place) -> None:
    leaves = (230, 130, 40) if o.has(r"autumn") else (70, 150, 70)
    if o.has(r"uprooted|fallen|branches"):  # lying on its side
        o.rect(-1.3, 0.2, 0.3, 0.5, fill=(120, 80, 45))
        o.ellipse(0.75, 0.1, 0.65, 0.55, fill=leaves)
        return
    o.rect(-0.15, -0.1, 0.15, 0.9, fill=(120, 80, 45))
    for dx, dy in ((-0.45, -0.35), (0.45, -0.35), (0.0, -0.8)):
        o.ellipse(dx, dy, 0.55, 0.5, fill=leaves)


def _books(o: Place) -> None:
    for k, colour in enumerate(((200, 80, 70), (70, 120, 190), (90, 160, 100))):
        top, shift = 0.5 - 0.35 * (k + 1), o.s.rng.uniform(-0.15, 0.15)
        o.rect(-1 + shift, top, 1 + shift, top + 0.32, fill=colour, outline=INK, width=1.0)
        o.line([(-0.7 + shift, top + 0.16), (0.5 + shift, top + 0.16)], (250, 250, 250), 0.9)


def _ticket(o: Place) -> None:
    o.rect(-1.1, -0.55, 1.1, 0.55, fill=(250, 215, 90), outline=INK, width=1.2)
    for side in (-1, 1):
        o.ellipse(side * 1.1, 0, 0.2, 0.2, fill=o.s.bottom)
    for k in range(5):
        o.line([(0.5, -0.45 + 0.2 * k), (0.5, -0.35 + 0.2 * k)], INK, 1.0, caps=False)


def _box(o: Place) -> None:
    ribbon = (250, 235, 120)
    o.rect(-1, -0.6, 1, 0.7, fill=hsv(o.s.rng.uniform(0, 360), 0.5, 0.85), outline=INK, width=1.2)
    o.rect(-0.12, -0.6, 0.12, 0.7, fill=ribbon)
    for side in (-1, 1):
        o.ellipse(side * 0.25, -0.75, 0.25, 0.14, fill=ribbon)


def _suitcase(o: Place) -> None:
    o.arc(0, -0.7, 0.3, 0.25, 180, 360, INK, 2.0)
    o.rect(-1, -0.7, 1, 0.75, radius=0.15, fill=(160, 100, 60), outline=INK, width=1.3)


def _flies(o: Place) -> None:
    """Dirt and bugs: a smear and a few flies (disgust)."""
    o.ellipse(0, 0.5, 0.9, 0.3, fill=(105, 110, 55))
    for _ in range(5):
        dx, dy = o.s.rng.uniform(-1.1, 1.1), o.s.rng.uniform(-1.0, 0.3)
        for side in (-1, 1):
            o.ellipse(dx + side * 0.12, dy - 0.12, 0.12, 0.085, fill=(215, 225, 235))
        o.ellipse(dx, dy, 0.12, 0.09, fill=(30, 30, 30))


def _trash(o: Place) -> None:
    bag = (60, 62, 70)
    o.ellipse(0, 0.15, 0.85, 0.7, fill=bag)
    o.polygon([(-0.25, -0.5), (0, -0.85), (0.25, -0.5)], fill=bag)
    o.ellipse(0.9, 0.7, 0.3, 0.15, fill=(140, 120, 80))


def _laptop(o: Place) -> None:
    o.rect(-0.9, -0.7, 0.9, 0.35, fill=(60, 70, 90), outline=(170, 175, 185), width=1.6)
    o.polygon([(-1.1, 0.35), (1.1, 0.35), (1.25, 0.6), (-1.25, 0.6)], fill=(190, 195, 205))


def _controller(o: Place) -> None:
    light = (220, 220, 220)
    o.rect(-1.1, -0.45, 1.1, 0.45, radius=0.42, fill=(70, 72, 88))
    o.rect(-0.8, -0.07, -0.4, 0.07, fill=light)
    o.rect(-0.67, -0.2, -0.53, 0.2, fill=light)
    o.ellipse(0.5, -0.12, 0.11, 0.11, fill=(230, 70, 70))
    o.ellipse(0.75, 0.1, 0.11, 0.11, fill=(80, 180, 90))


def _phone(o: Place) -> None:
    o.rect(-0.55, -1, 0.55, 1, radius=0.15, fill=(40, 42, 50))
    o.rect(-0.45, -0.85, 0.45, 0.8, fill=(150, 190, 230))
    if o.has(r"cracked|scratched|worn"):
        o.line([(-0.4, -0.6), (0, -0.1), (-0.1, 0.3), (0.4, 0.7)], (250, 250, 250), 1.0)


def _appliance(o: Place) -> None:
    o.rect(-0.6, -0.9, 0.6, 0.6, radius=0.2, fill=(215, 220, 228), outline=INK, width=1.2)
    o.rect(-0.75, 0.6, 0.75, 0.85, fill=(80, 85, 95))
    if o.has(r"scorched|burn|no lights"):
        o.ellipse(0.15, 0.55, 0.55, 0.3, fill=(40, 30, 25))
    else:
        o.ellipse(0, -0.15, 0.3, 0.3, fill=(120, 190, 120))


def _chart(o: Place) -> None:
    o.rect(-1, -1, 1, 1, fill=(250, 250, 252), outline=(150, 155, 165), width=1.0)
    for k in range(4):
        height = o.s.rng.uniform(0.3, 1.6)
        o.rect(-0.8 + 0.42 * k, 0.85 - height, -0.5 + 0.42 * k, 0.85, fill=hsv(200 + 25 * k, 0.5, 0.85))


def _cross(o: Place) -> None:
    o.ellipse(0, 0, 0.9, 0.9, fill=(220, 50, 50))
    o.line([(-0.4, -0.4), (0.4, 0.4)], (255, 255, 255), 3.0)
    o.line([(-0.4, 0.4), (0.4, -0.4)], (255, 255, 255), 3.0)


def _check(o: Place) -> None:
    o.ellipse(0, 0, 0.9, 0.9, fill=(60, 170, 90))
    o.line([(-0.45, 0), (-0.1, 0.35), (0.5, -0.35)], (255, 255, 255), 3.2)


def _hourglass(o: Place) -> None:
    glass, wood = (235, 240, 250), (120, 80, 45)
    for side in (-1, 1):
        o.polygon([(-0.6, side * 1.0), (0.6, side * 1.0), (0, 0)], fill=glass, outline=INK, width=1.0)
        o.rect(-0.75, side * 1.06 - 0.06, 0.75, side * 1.06 + 0.06, fill=wood)
    o.polygon([(-0.4, 1.0), (0.4, 1.0), (0, 0.45)], fill=(230, 180, 70))


def _heart(o: Place) -> None:
    colour = (235, 75, 100)
    for side in (-1, 1):
        o.ellipse(side * 0.42, -0.25, 0.5, 0.5, fill=colour)
    o.polygon([(-0.9, -0.1), (0.9, -0.1), (0, 0.9)], fill=colour)


def _flag(o: Place) -> None:
    colour = (50, 100, 210) if o.has(r"blue") else hsv(o.s.rng.uniform(0, 360), 0.7, 0.9)
    o.line([(-0.7, -1), (-0.7, 1)], (90, 70, 50), 1.8)
    o.polygon([(-0.7, -1), (0.2, -1.15), (1.0, -0.9), (0.2, -0.3), (-0.7, -0.2)], fill=colour)


def _building(o: Place) -> None:
    o.rect(-1, -0.7, 1, 1, fill=(225, 220, 210), outline=INK, width=1.0)
    o.polygon([(-1.15, -0.7), (0, -1.3), (1.15, -0.7)], fill=(170, 80, 60))
    for row in range(2):
        for col in range(3):
            dx, dy = -0.75 + 0.55 * col, -0.45 + 0.5 * row
            o.rect(dx, dy, dx + 0.3, dy + 0.3, fill=(150, 190, 225))
    o.rect(-0.2, 0.45, 0.2, 1, fill=(120, 80, 45))
    if o.has(r"hospital"):
        o.rect(-0.08, -1.15, 0.08, -0.8, fill=(220, 40, 40))
        o.rect(-0.18, -1.05, 0.18, -0.9, fill=(220, 40, 40))


def _popcorn(o: Place) -> None:
    for k in range(6):
        o.ellipse(-0.6 + 0.24 * k, -0.7 + (k % 2) * 0.1, 0.25, 0.22, fill=(255, 248, 225))
    o.polygon([(-0.75, -0.6), (0.75, -0.6), (0.55, 1), (-0.55, 1)], fill=(250, 250, 250), outline=INK, width=1.0)
    for k in range(3):
        dx = -0.45 + 0.45 * k
        o.polygon([(dx - 0.1, -0.6), (dx + 0.1, -0.6), (dx + 0.07, 1), (dx - 0.07, 1)], fill=(220, 50, 50))


def _star(o: Place) -> None:
    points = []
    for k in range(10):
        angle, radius = -math.pi / 2 + k * math.pi / 5, 1.0 if k % 2 == 0 else 0.42
        points.append((radius * math.cos(angle), radius * math.sin(angle)))
    o.polygon(points, fill=(250, 200, 40), outline=(200, 140, 20), width=1.0)


def _tent(o: Place) -> None:
    o.polygon([(-1.2, 0.7), (0, -0.9), (1.2, 0.7)], fill=(240, 130, 50), outline=INK, width=1.0)
    o.polygon([(-0.3, 0.7), (0, -0.1), (0.3, 0.7)], fill=(90, 50, 30))


# (regex on the lower-cased hint, element). Order only breaks ties between matches at the same place.
ELEMENTS: list[tuple[str, str]] = [
    (r"screenshot", "screen"),
    (r"\bcats?\b|kitten|tabby", "ears:cat"),
    (r"\bdog\b|puppy", "ears:dog"),
    (r"hamster|otter", "ears:round"),
    (r"sunset|sunrise|sunny|golden evening sun|blue sky|clear blue", "sun"),
    (r"night|dark station", "moon"),
    (r"rainbow", "rainbow"),
    (r"aurora", "aurora"),
    (r"overcast|clouds\b|sea of clouds|grey .*skyline", "cloud"),
    (r"balloons?", "balloons"),
    (r"\brain\b|rainy|rain-|storm|typhoon", "rain"),
    (r"\bwind\b", "wind"),
    (r"hail", "hail"),
    (r"celebrat|cheering|throwing|victory|gacha|congratulations|award", "confetti"),
    (r"beach|\bsea\b(?! of clouds)|waves|lake|harbour|river|pool|swimmer", "waves"),
    (r"flood", "flood"),
    (r"mountain|\bpeak|\bridge\b|staircase|snowy", "mountains"),
    (r"rice fields|grassy|hill|park\b|pitch|\bcourt\b", "field"),
    (r"skyline|city|rooftops|street", "city"),
    (r"bowl|noodles|ramen|rice\b(?! fields)|hotpot|clay pot|dumplings|lunch box|meal-prep|salad|soup|takeaway", "bowl"),
    (r"plate|loaf|croissant|\btoast\b|skewers|flatbread|pork belly", "plate"),
    (r"cake", "cake"),
    (r"mug|coffee|cola|milk tea|yogurt|champagne|drinks|toasting", "cup"),
    (r"airplane|airport", "plane"),
    (r"\bbus\b|train|subway|platform|departure board|station", "vehicle"),
    (r"stadium|football|soccer|volleyball|goalkeeper|\bfans?\b|\bstands?\b|medics", "ball"),
    (r"trophy|medal|award|scholarship|finisher|chessboard", "trophy"),
    (r"bicycle|bikes?\b|e-scooters", "bike"),
    (r"trees?\b|branches|banyan|autumn", "tree"),
    (r"notes|textbooks|papers|study plan|calculus|library", "books"),
    (r"tickets?|stub", "ticket"),
    (r"gift|shoebox|sneakers|wrapping|(?<!lunch )(?<!prep )\bbox\b(?!-)|jacket|coat|handbag|lipstick|snack", "box"),
    (r"suitcase", "suitcase"),
    (r"bugs|mou?ld|\brat\b|\bhair\b|dirty|stained|shells|durian|scouring", "flies"),
    (r"trash|dumpster|debris|litter", "trash"),
    (r"laptop|keyboard", "laptop"),
    (r"controller|game", "controller"),
    (r"phone|e-reader|mp3 player|text message|app\b", "phone"),
    (r"blender|kettle|vacuum|earbuds", "appliance"),
    (r"chart|ranking|spreadsheet|bracket|comparison|itinerary|calendar|\bmap\b|\bspec\b", "chart"),
    (r"error|cancelled|expired|unavailable|no longer|account locked|complaint|death|suspicious", "cross"),
    (r"\bpass(ed)?\b|victory|congratulations|\boffer\b|results", "check"),
    (r"queue|in transit|awaiting|position|delayed", "hourglass"),
    (r"family|friends|hugging|hand\b|mother|child|neighbours|volunteers|coworkers|paw", "heart"),
    (r"flags|scarves|banner|poster", "flag"),
    (r"hospital|museum|cinema|hotel|restaurant|shop\b|(?<!box-)office|marquee|facade|building", "building"),
    (r"popcorn", "popcorn"),
    (r"\bgold\b|golden (character|card)|gacha|limited-edition", "star"),
    (r"tent", "tent"),
]
SKY = {"sun": _sun, "moon": _moon, "cloud": _cloud, "balloons": _balloons}
BANDS = {
    "rainbow": _rainbow,
    "aurora": _aurora,
    "waves": _waves,
    "flood": _flood,
    "mountains": _mountains,
    "field": _field,
    "city": _city,
}
OVERLAYS = {"rain": _rain, "wind": _wind, "hail": _hail, "confetti": _confetti}
OBJECTS = {
    "bowl": _bowl,
    "plate": _plate,
    "cake": _cake,
    "cup": _cup,
    "plane": _plane,
    "vehicle": _vehicle,
    "ball": _ball,
    "trophy": _trophy,
    "bike": _bike,
    "tree": _tree,
    "books": _books,
    "ticket": _ticket,
    "box": _box,
    "suitcase": _suitcase,
    "flies": _flies,
    "trash": _trash,
    "laptop": _laptop,
    "controller": _controller,
    "phone": _phone,
    "appliance": _appliance,
    "chart": _chart,
    "cross": _cross,
    "check": _check,
    "hourglass": _hourglass,
    "heart": _heart,
    "flag": _flag,
    "building": _building,
    "popcorn": _popcorn,
    "star": _star,
    "tent": _tent,
}


def scene_elements(hint: str) -> list[str]:
    """Elements the hint mentions, in the order it mentions them, each once."""
    found = []
    for order, (pattern, name) in enumerate(ELEMENTS):
        match = re.search(pattern, hint.lower())
        if match:
            found.append((match.start(), order, name))
    return list(dict.fromkeys(name for _, _, name in sorted(found)))


def pick_scene(elements: list[str]) -> dict[str, list[str]]:
    """At most: one band, two sky shapes, one overlay, two objects; ears and screen as mentioned."""
    chosen = {
        "band": [e for e in elements if e in BANDS][:1],
        "sky": [e for e in elements if e in SKY][:2],
        "overlay": [e for e in elements if e in OVERLAYS][:1],
        "objects": [e for e in elements if e in OBJECTS][:2],
        "ears": [e.split(":")[1] for e in elements if e.startswith("ears:")][:1],
        "screen": [e for e in elements if e == "screen"],
    }
    return chosen


def _screen(s: Scene) -> None:
    """A phone screenshot: a device frame tinted with the polarity colour and abstract UI blocks."""
    tint = mix(s.top, (255, 255, 255), 0.72)
    accent = {"positive": (70, 170, 90), "neutral": (80, 130, 200), "negative": (215, 65, 60)}[s.post["polarity"]]
    s.c.rect(18, 6, SIZE - 18, SIZE - 6, fill=tint, outline=(40, 42, 52), width=5, radius=16)
    s.c.rect(26, 14, SIZE - 26, 30, fill=accent, radius=4)
    for k in range(4):
        y = 40 + 44 * k
        s.c.rect(30, y, SIZE - 30 - s.rng.uniform(0, 60), y + 8, fill=mix(tint, (120, 125, 140), 0.35), radius=3)


def render_image(post: dict) -> Image.Image:
    """The post's reaction card: SIZE x SIZE RGB, drawn from the gold labels and the image hint."""
    rng = random.Random(seed_for(post["id"], "image"))
    hint = post.get("image_hint", "").lower()
    parts = pick_scene(scene_elements(hint))
    night = "moon" in parts["sky"]
    top, bottom = background_colours(post["id"], night)
    image = gradient(top, bottom)
    c = Canvas(image)
    scene = Scene(c, rng, post, hint, top, bottom, night)
    if parts["screen"]:
        _screen(scene)
    for name in parts["band"]:
        BANDS[name](scene)
    sky_slots = [(40.0, 38.0), (SIZE - 40.0, 38.0)]
    rng.shuffle(sky_slots)
    for name, (x, y) in zip(parts["sky"], sky_slots, strict=False):
        SKY[name](Place(scene, x + rng.uniform(-6, 6), y + rng.uniform(-6, 6), 19.0))
    for name in parts["overlay"]:
        OVERLAYS[name](scene)

    intensity, emotion = post["intensity"], post["emotion"]
    r = (41 + 5 * intensity) * (0.86 if parts["screen"] else 1.0)
    cx, cy = SIZE / 2 + rng.uniform(-9, 9), SIZE / 2 + 2 + rng.uniform(-7, 7)
    width = 1.6 + 0.55 * intensity
    skin = face_colour(emotion, intensity)
    for kind in parts["ears"]:
        draw_ears(c, kind, cx, cy, r, skin, width)
    c.ellipse(cx, cy, r, r, fill=skin, outline=INK, width=width)
    FEATURES[emotion](Face(c, cx, cy, r, intensity, width), rng)

    object_slots = [(36.0, SIZE - 38.0), (SIZE - 36.0, SIZE - 38.0)]
    rng.shuffle(object_slots)
    for name, (x, y) in zip(parts["objects"], object_slots, strict=False):
        OBJECTS[name](Place(scene, x + rng.uniform(-4, 4), y + rng.uniform(-4, 4), 23.0 + rng.uniform(-2, 3)))
    return image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def encode_image(image: Image.Image, suffix: str) -> bytes:
    buffer = io.BytesIO()
    fmt = IMAGE_SUFFIXES[suffix]
    if fmt == "PNG":
        # 256 colours are plenty for flat cartoon shapes and make the file about three times smaller
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buffer, "PNG", optimize=True
        )
    elif fmt == "JPEG":
        image.save(buffer, "JPEG", quality=85, optimize=True)
    else:
        image.save(buffer, "WEBP", quality=82, method=6)
    return buffer.getvalue()


# ============================================================================= voice notes

HASHTAG = re.compile(r"#[^#\s]{1,40}#|#[\w-]+")
URL = re.compile(r"https?://\S+|www\.\S+")
SENTENCE_END = {"zh": re.compile(r"(?<=[。！？!?…~])"), "en": re.compile(r"(?<=[.!?…])\s+")}
LAUGH = {"zh": "哈哈哈", "en": "ha ha ha"}
SOFT_LAUGH = {"zh": "嘿嘿", "en": "heh heh"}
GIGGLE = {"zh": "嘻嘻嘻", "en": "hee hee hee"}
SCREAM = {"zh": "啊啊啊！", "en": "Aaah!"}


def is_symbol(ch: str) -> bool:
    """Emoji and pictographs (dropped before speaking)."""
    cp = ord(ch)
    if cp >= 0x1F000 or 0x2600 <= cp <= 0x27BF or cp in (0xFE0F, 0xFE0E, 0x200D, 0x20E3):
        return True
    return unicodedata.category(ch) in ("So", "Sk", "Cs", "Co")


def speakable(text: str) -> str:
    """The post text as it would be said aloud: no links, hashtags or emoji."""
    text = HASHTAG.sub(" ", URL.sub(" ", text))
    text = "".join(" " if is_symbol(ch) else ch for ch in text)
    return re.sub(r"\s+", " ", text).strip(" ,，")


def sentences(text: str, lang: str) -> list[str]:
    parts = [p.strip() for p in SENTENCE_END[lang].split(text)]
    return [p for p in parts if re.search(r"\w", p)] or [text]


@dataclass
class VoicePlan:
    """How to say one post: espeak-ng settings plus synthesised cues, from emotion, intensity and hint."""

    lang: str
    language: str  # espeak-ng voice: cmn-latn-pinyin, en-us or en
    variant: str  # espeak-ng variant: f1..f5, m1..m7
    speed: float  # words per minute (espeak -s)
    pitch: float  # 0..99 (espeak -p)
    amplitude: float  # 0..200 (espeak -a)
    level: float  # peak of the final mix (0..1)
    tremolo: float = 0.0  # depth of a 5.5 Hz loudness wobble (shaky, crying)
    vibrato: float = 0.0  # depth of a 5 Hz pitch wobble
    drive: float = 0.0  # soft clipping (shouting)
    pause: float = 0.0  # seconds between sentences
    scream: bool = False
    sigh_first: bool = False
    sigh_between: bool = False
    sniffs: bool = False
    breaths: bool = False
    laugh: str = ""  # "", "laugh", "soft", "giggle"
    bangs: int = 0
    backgrounds: list[str] = field(default_factory=list)
    loud_background: bool = False
    whisper: bool = False

    @property
    def voice(self) -> str:
        whisper = "whisperf" if self.variant.startswith("f") else "whisper"
        return f"{self.language}+{whisper if self.whisper else self.variant}"


EMOTION_VOICE = {  # (pitch, speed factor, amplitude, level)
    "joy": (60, 1.08, 120, 0.75),
    "surprise": (62, 1.05, 120, 0.7),
    "anger": (45, 1.1, 160, 0.85),
    "sadness": (36, 0.88, 90, 0.45),
    "fear": (56, 1.1, 105, 0.6),
    "disgust": (40, 0.95, 110, 0.6),
    "neutral": (50, 1.0, 100, 0.6),
}
BACKGROUND_CUES = [  # (regex on one hint descriptor, backgrounds)
    (r"wind and rain", ["storm"]),
    (r"cheering crowd", ["cheering"]),
    (r"crowd noise", ["crowd"]),
    (r"birds", ["birds", "wind"]),
    (r"dog barking", ["dog"]),
    (r"children laughing", ["children"]),
    (r"waves", ["waves"]),
    (r"water", ["water"]),
    (r"\bwind", ["wind"]),
]


def voice_plan(post: dict) -> VoicePlan:
    rng = random.Random(seed_for(post["id"], "voice"))
    lang, emotion, intensity = post["lang"], post["emotion"], post["intensity"]
    pitch, speed_factor, amplitude, level = EMOTION_VOICE[emotion]
    strength = 0.6 + 0.1 * intensity  # how far intensity pushes away from a calm voice
    female = rng.random() < 0.5
    variant = f"f{rng.randint(1, 5)}" if female else f"m{rng.randint(1, 7)}"
    # "cmn" spells Chinese out as pinyin in the English voice ("ni three hao three"); this voice speaks it.
    language = "cmn-latn-pinyin" if lang == "zh" else rng.choice(["en-us", "en-us", "en"])
    plan = VoicePlan(
        lang=lang,
        language=language,
        variant=variant,
        speed=(260 if lang == "zh" else 165) * (1 + (speed_factor - 1) * strength),
        pitch=50 + (pitch - 50) * strength + rng.uniform(-4, 4),
        amplitude=amplitude,
        level=level,
    )
    if emotion == "fear":
        plan.tremolo = 0.1
    descriptors = [d.strip().lower() for d in post.get("voice_hint", "").removeprefix("voice note,").split(",")]
    for descriptor in filter(None, descriptors):
        apply_descriptor(plan, descriptor)
    plan.speed = min(max(plan.speed, 80), 450)
    plan.pitch = min(max(plan.pitch, 0), 99)
    return plan


def apply_descriptor(plan: VoicePlan, d: str) -> None:
    """One comma-separated part of a voice hint, e.g. 'long sigh' or 'cheering crowd in background'."""
    for pattern, backgrounds in BACKGROUND_CUES:
        if re.search(pattern, d):
            plan.backgrounds += [b for b in backgrounds if b not in plan.backgrounds]
            plan.loud_background |= d.startswith("loud")
            return

    def has(pattern: str) -> bool:
        return re.search(pattern, d) is not None

    if has(r"fast tempo|clipped"):
        plan.speed *= 1.3
    if has(r"slow tempo"):
        plan.speed *= 0.75
    if has(r"high pitch"):
        plan.pitch = max(plan.pitch, 80)
    if has(r"low pitch|low quiet"):
        plan.pitch = min(plan.pitch, 22)
    if has(r"quiet"):
        plan.amplitude, plan.level = 60, 0.3
    if has(r"flat voice"):
        plan.pitch, plan.tremolo = min(plan.pitch, 32), 0.0
    if has(r"shout|yell|^loud$|angry tone|scream|squeal"):
        loud(plan)
    if has(r"scream|squeal"):
        plan.pitch, plan.scream = 95, True
    if has(r"table|bang"):
        plan.bangs = 4
    if has(r"sigh"):
        plan.sigh_first = True
    if has(r"sighs"):
        plan.sigh_between = True
    if has(r"whisper"):
        plan.whisper, plan.level = True, min(plan.level, 0.5)
    if has(r"breaking|shaky|trembl|crying|emotional"):
        plan.tremolo, plan.vibrato = max(plan.tremolo, 0.35), 0.035
    if has(r"sniffl|crying"):
        plan.sniffs = True
    if has(r"long pauses"):
        plan.pause = 0.8
    if has(r"breathing|out of breath"):
        plan.breaths, plan.speed = True, plan.speed * 1.1
    if has(r"panick"):
        plan.pitch, plan.tremolo = plan.pitch + 15, max(plan.tremolo, 0.2)
    if has(r"nervous|tense"):
        plan.tremolo = max(plan.tremolo, 0.15)
    if has(r"warm|upbeat|excited|awe"):
        plan.pitch += 8
    if has(r"excited|upbeat"):
        plan.speed *= 1.1
    if has(r"giggl|squeal"):
        plan.laugh = "giggle"
    elif has(r"soft laughter|warm laughing"):
        plan.laugh = plan.laugh or "soft"
    elif has(r"laugh"):
        plan.laugh = plan.laugh or "laugh"


def loud(plan: VoicePlan) -> None:
    plan.amplitude, plan.level, plan.drive = 200, 0.95, 2.5
    plan.pitch += 10
    plan.speed *= 1.08


# --- signal helpers (numpy only)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.float32)


def shaped_noise(n: int, rng: np.random.Generator, low: float, high: float, tilt: float = 0.0) -> np.ndarray:
    """Noise band-limited to about low..high Hz (gentle slopes), peak 1; tilt > 0 darkens it (pink-ish)."""
    if n <= 0:
        return np.zeros(0, np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    freqs[0] = 1e-3
    gain = 1 / np.sqrt(1 + (low / freqs) ** 4) / np.sqrt(1 + (freqs / high) ** 4) / freqs**tilt
    out = np.fft.irfft(spectrum * gain, n)
    return (out / (np.abs(out).max() + 1e-12)).astype(np.float32)


def slow_envelope(n: int, rng: np.random.Generator, every_s: float, floor: float) -> np.ndarray:
    """A smooth random gain between floor and 1 that changes about every `every_s` seconds."""
    points = max(2, int(n / RATE / every_s) + 2)
    knots = rng.uniform(floor, 1.0, points)
    curve = np.interp(np.linspace(0, points - 1, n), np.arange(points), knots)
    return curve.astype(np.float32)


def envelope(n: int, attack: float, release: float) -> np.ndarray:
    """Rise over `attack` seconds, exponential fall with time constant `release`."""
    t = np.arange(n) / RATE
    rise = np.clip(t / max(attack, 1e-3), 0, 1)
    fall = np.exp(-np.clip(t - attack, 0, None) / max(release, 1e-3))
    return (rise * fall).astype(np.float32)


def sigh(rng: np.random.Generator) -> np.ndarray:
    n = int(1.1 * RATE)
    breath = shaped_noise(n, rng, 250, 2200, tilt=0.3)
    t = np.arange(n) / RATE
    shape = np.where(t < 0.3, np.sin(np.pi / 2 * t / 0.3), np.exp(-(t - 0.3) / 0.3))
    return (0.35 * breath * shape).astype(np.float32)


def sniff(rng: np.random.Generator) -> np.ndarray:
    one = shaped_noise(int(0.11 * RATE), rng, 1500, 6500) * envelope(int(0.11 * RATE), 0.02, 0.04)
    return np.concatenate([0.3 * one, silence(0.1), 0.25 * one, silence(0.15)])


def breaths(rng: np.random.Generator, count: int) -> np.ndarray:
    out = []
    for k in range(count):
        n = int(0.22 * RATE)
        shape = np.sin(np.linspace(0, np.pi, n)) ** 2
        out += [(0.3 if k % 2 else 0.22) * shaped_noise(n, rng, 400, 3000) * shape, silence(0.08)]
    return np.concatenate(out).astype(np.float32)


def bang(rng: np.random.Generator) -> np.ndarray:
    n = int(0.3 * RATE)
    t = np.arange(n) / RATE
    thump = np.sin(2 * np.pi * 72 * t) * np.exp(-t / 0.07) + 0.5 * np.sin(2 * np.pi * 140 * t) * np.exp(-t / 0.04)
    click = shaped_noise(n, rng, 200, 5000) * np.exp(-t / 0.008)
    return (0.9 * thump + 0.6 * click).astype(np.float32)


def bark(rng: np.random.Generator) -> np.ndarray:
    n = int(0.17 * RATE)
    t = np.arange(n) / RATE
    f0 = 520 - 900 * t
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 7))
    return ((0.7 * tone + 0.4 * shaped_noise(n, rng, 300, 3000)) * envelope(n, 0.01, 0.06)).astype(np.float32)


def chirp(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.uniform(0.05, 0.09) * RATE)
    f = np.linspace(rng.uniform(2500, 3200), rng.uniform(3800, 4800), n)
    return (np.sin(2 * np.pi * np.cumsum(f) / RATE) * np.sin(np.linspace(0, np.pi, n))).astype(np.float32)


def scatter(n: int, rng: np.random.Generator, sound: Callable[[], np.ndarray], every_s: float) -> np.ndarray:
    """`sound()` dropped at random moments, about one per `every_s` seconds."""
    out = np.zeros(n, np.float32)
    t = rng.uniform(0.0, every_s)
    while t < n / RATE:
        clip = sound()
        start = int(t * RATE)
        end = min(n, start + clip.size)
        out[start:end] += clip[: end - start]
        t += rng.uniform(0.5, 1.5) * every_s
    return out


def background(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if name == "wind":
        return shaped_noise(n, rng, 60, 700, tilt=0.5) * slow_envelope(n, rng, 0.8, 0.2)
    if name == "storm":
        rain = shaped_noise(n, rng, 1500, 7500) * 0.6
        drops = scatter(n, rng, lambda: shaped_noise(160, rng, 2000, 7000) * np.exp(-np.arange(160) / 30), 0.03)
        return background("wind", n, rng) + rain + 0.5 * drops
    if name == "waves":
        t = np.arange(n) / RATE
        swell = (0.5 - 0.5 * np.cos(2 * np.pi * t / rng.uniform(4.5, 6.0))) ** 2 + 0.08
        return (shaped_noise(n, rng, 60, 900, 0.3) + 0.4 * shaped_noise(n, rng, 2000, 6000)) * swell
    if name == "water":
        bubbles = scatter(
            n, rng, lambda: np.sin(2 * np.pi * rng.uniform(350, 900) * np.arange(480) / RATE) * np.hanning(480), 0.12
        )
        return shaped_noise(n, rng, 200, 2500) * slow_envelope(n, rng, 0.1, 0.3) + 0.5 * bubbles
    if name in ("crowd", "cheering"):
        voices = sum(shaped_noise(n, rng, 300, 3000) * slow_envelope(n, rng, 0.25, 0.0) for _ in range(4))
        if name == "crowd":
            return voices
        claps = scatter(n, rng, lambda: shaped_noise(240, rng, 800, 7000) * np.exp(-np.arange(240) / 40), 0.05)
        return 1.5 * voices + 0.8 * claps
    if name == "birds":
        return scatter(n, rng, lambda: np.concatenate([chirp(rng), silence(0.05), chirp(rng)]), 0.9)
    if name == "dog":
        return scatter(n, rng, lambda: np.concatenate([bark(rng), silence(0.12), bark(rng)]), 2.2)
    raise ValueError(f"unknown background {name!r}")


BACKGROUND_DB = {
    "wind": -16,
    "storm": -10,
    "waves": -14,
    "water": -14,
    "crowd": -13,
    "cheering": -9,
    "birds": -14,
    "dog": -8,
    "children": -8,
}


def resample(x: np.ndarray, rate_in: int) -> np.ndarray:
    """Band-limited (FFT) resampling to RATE."""
    if rate_in == RATE or x.size == 0:
        return x.astype(np.float32)
    pad = rate_in // 10
    padded = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    n_out = round(padded.size * RATE / rate_in)
    spectrum = np.fft.rfft(padded)[: n_out // 2 + 1]
    y = np.fft.irfft(spectrum, n_out) * (n_out / padded.size)
    cut = round(pad * RATE / rate_in)
    return y[cut : n_out - cut].astype(np.float32)


def trim_silence(x: np.ndarray, margin: float = 0.04) -> np.ndarray:
    loud_samples = np.flatnonzero(np.abs(x) > 0.01 * (np.abs(x).max() + 1e-12))
    if loud_samples.size == 0:
        return x
    keep = int(margin * RATE)
    return x[max(0, loud_samples[0] - keep) : loud_samples[-1] + keep]


def espeak(text: str, voice: str, speed: float, pitch: float, amplitude: float) -> np.ndarray:
    """espeak-ng's rendering of `text`, at RATE, leading and trailing silence trimmed."""
    with tempfile.TemporaryDirectory(prefix="make-media-") as folder:
        out = Path(folder) / "speech.wav"
        settings = f"-v {voice} -s {round(speed)} -p {round(pitch)} -a {round(amplitude)} -b 1 --stdin"
        command = [tool("espeak-ng"), *settings.split(), "-w", str(out)]
        subprocess.run(command, input=text.encode(), capture_output=True, check=True, timeout=120)
        with wave.open(str(out), "rb") as reader:
            rate, frames = reader.getframerate(), reader.readframes(reader.getnframes())
    samples = np.frombuffer(frames, "<i2").astype(np.float32) / 32768
    return trim_silence(resample(samples, rate))


def wobble(x: np.ndarray, tremolo: float, vibrato: float) -> np.ndarray:
    t = np.arange(x.size) / RATE
    if vibrato:  # time warp whose speed swings by +-vibrato: the pitch wobbles
        rate_hz = 5.0
        position = (t + vibrato / (2 * np.pi * rate_hz) * np.sin(2 * np.pi * rate_hz * t)) * RATE
        x = np.interp(np.clip(position, 0, x.size - 1), np.arange(x.size), x).astype(np.float32)
    if tremolo:
        x = x * (1 - tremolo / 2 + tremolo / 2 * np.sin(2 * np.pi * 5.5 * t)).astype(np.float32)
    return x


def render_voice(post: dict) -> np.ndarray:
    """The post's voice note: float32 mono at RATE, at most MAX_SECONDS long."""
    plan = voice_plan(post)
    rng = np.random.default_rng(seed_for(post["id"], "sounds"))
    text = speakable(post["text"]) or post["text"]
    split = plan.pause or plan.sigh_between or plan.sniffs or plan.breaths
    chunks = sentences(text, plan.lang) if split else [text]

    def say(speed_factor: float) -> list[np.ndarray]:
        voice = [espeak(c, plan.voice, plan.speed * speed_factor, plan.pitch, plan.amplitude) for c in chunks]
        return [wobble(v, plan.tremolo, plan.vibrato) for v in voice]

    extras = []  # cue clips that are not the post text
    if plan.scream:
        extras.append(espeak(SCREAM[plan.lang], f"{plan.language}+f4", 200, 99, 200))
    if plan.laugh:
        words = {"laugh": LAUGH, "soft": SOFT_LAUGH, "giggle": GIGGLE}[plan.laugh][plan.lang]
        loudness = plan.amplitude * (0.6 if plan.laugh == "soft" else 1.0)
        laugh = espeak(words, f"{plan.language}+{plan.variant}", 260, min(99, plan.pitch + 20), loudness)
        extras.append(wobble(laugh, 0.6, 0.0))
    speech = say(1.0)
    gap_clips = len(chunks) - 1
    cue_seconds = sum(e.size for e in extras) / RATE + 1.3 * plan.sigh_first + 0.9 * plan.breaths + 0.5 * plan.sniffs
    cue_seconds += gap_clips * (plan.pause + 0.5 * (plan.sigh_between + plan.sniffs))
    budget = MAX_SECONDS - 0.5 - cue_seconds
    spoken = sum(s.size for s in speech) / RATE
    if spoken > budget > 0:  # speak faster (within reason) rather than lose the end of the post
        speech = say(min(1.35, spoken / budget))

    parts: list[np.ndarray] = [silence(0.15)]
    if plan.scream:
        parts += [extras.pop(0), silence(0.2)]
    if plan.sigh_first:
        parts += [sigh(rng), silence(0.15)]
    if plan.breaths:
        parts += [breaths(rng, 4)]
    if plan.sniffs:
        parts += [sniff(rng)]
    for k, chunk in enumerate(speech):
        if k:
            parts.append(silence(plan.pause or 0.25))
            if plan.sigh_between:
                parts += [sigh(rng)[: int(0.7 * RATE)], silence(0.1)]
            elif plan.sniffs and k % 2:
                parts.append(sniff(rng))
            elif plan.breaths:
                parts.append(breaths(rng, 2))
        parts.append(chunk)
    if plan.laugh:
        parts += [silence(0.15), extras.pop(0)]
    parts.append(silence(0.3))
    mix_ = np.concatenate(parts).astype(np.float32)[: int(MAX_SECONDS * RATE)]
    if plan.drive:
        peak = np.abs(mix_).max() + 1e-12
        mix_ = (np.tanh(plan.drive * mix_ / peak) / np.tanh(plan.drive)).astype(np.float32)
    speech_rms = float(np.sqrt(np.mean(np.concatenate(speech) ** 2))) + 1e-9
    if plan.bangs:
        positions = np.sort(rng.uniform(0.3, mix_.size / RATE - 0.4, plan.bangs))
        for at in positions:
            clip = bang(rng) * 2.5 * speech_rms / 0.3
            start = int(at * RATE)
            end = min(mix_.size, start + clip.size)
            mix_[start:end] += clip[: end - start]
    for name in plan.backgrounds:
        if name == "children":
            kids = espeak("he he he ha ha", "en-us+f5", 300, 99, 120)
            layer = np.zeros(mix_.size, np.float32)
            for at in rng.uniform(0, max(0.1, mix_.size / RATE - kids.size / RATE), 3):
                start = int(at * RATE)
                layer[start : start + kids.size] += kids[: layer.size - start]
        else:
            layer = background(name, mix_.size, rng).astype(np.float32)
        rms = float(np.sqrt(np.mean(layer**2))) + 1e-12
        decibels = BACKGROUND_DB[name] + (5 if plan.loud_background else 0)
        mix_ += layer / rms * speech_rms * 10 ** (decibels / 20)
    fade = min(int(0.12 * RATE), mix_.size // 4)
    mix_[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
    mix_[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return (mix_ / (np.abs(mix_).max() + 1e-12) * plan.level).astype(np.float32)


def encode_audio(waveform: np.ndarray, suffix: str) -> bytes:
    """`waveform` (float32 mono at RATE) as a file of the format `suffix` names, via ffmpeg."""
    pcm = (np.clip(waveform, -1, 1) * 32767).round().astype("<i2").tobytes()
    with tempfile.TemporaryDirectory(prefix="make-media-") as folder:
        out = Path(folder) / f"voice{suffix}"
        command = [tool("ffmpeg"), *FFMPEG_RAW_INPUT, *AUDIO_CODECS[suffix], "-y", str(out)]
        subprocess.run(command, input=pcm, capture_output=True, check=True, timeout=120)
        return out.read_bytes()


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"`{name}` is not installed; the voice notes need it (Debian: apt-get install {name})")
    return found


# ============================================================================= files, manifest, main


def render(job: Job) -> bytes:
    suffix = Path(job.name).suffix
    if job.kind == "image":
        return encode_image(render_image(job.post), suffix)
    return encode_audio(render_voice(job.post), suffix)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_manifest(media_dir: Path) -> dict[str, str]:
    path = media_dir / MANIFEST_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def up_to_date(media_dir: Path, name: str, manifest: dict[str, str]) -> bool:
    path = media_dir / name
    return path.is_file() and manifest.get(name) == sha256(path.read_bytes())


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def build(
    jobs: list[Job], media_dir: Path = MEDIA_DIR, force: bool = False, workers: int | None = None
) -> tuple[list[str], list[str], list[str]]:
    """Render what is missing or changed; returns (written, skipped, removed) file names.

    A file is up to date when it exists and its SHA-256 is the one media/MANIFEST.json records. Files the
    manifest lists that no JSONL file references any more are deleted. The manifest is rewritten even when
    a render fails, so the files finished before the failure are not rendered again.
    """
    media_dir.mkdir(parents=True, exist_ok=True)
    old = load_manifest(media_dir)
    todo = [job for job in jobs if force or not up_to_date(media_dir, job.name, old)]
    written = {job.name for job in todo}
    skipped = [job.name for job in jobs if job.name not in written]
    wanted = {job.name for job in jobs}
    removed = sorted(name for name in old if name not in wanted)
    manifest = {name: old[name] for name in [*skipped, *removed]}  # removed ones leave once deleted

    def run(job: Job) -> tuple[str, str]:
        data = render(job)
        write_atomically(media_dir / job.name, data)
        return job.name, sha256(data)

    try:
        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            for name, digest in pool.map(run, todo):
                manifest[name] = digest
        for name in removed:  # files this script made for names the data no longer uses
            (media_dir / name).unlink(missing_ok=True)
            del manifest[name]
    finally:
        text = json.dumps(dict(sorted(manifest.items())), indent=1) + "\n"
        (media_dir / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return sorted(written), skipped, removed


def verify(jobs: list[Job], media_dir: Path = MEDIA_DIR) -> list[str]:
    """Problems found by decoding every file the way the platform does (empty list: all good)."""
    from polyglm.platform.errors import InputError
    from polyglm.platform.media import load_audio, load_image

    problems = []
    for job in jobs:
        path = media_dir / job.name
        try:
            if job.kind == "image":
                size = load_image(path).size
                if size != (SIZE, SIZE):
                    problems.append(f"{job.name}: {size[0]}x{size[1]}, expected {SIZE}x{SIZE}")
            else:
                seconds = load_audio(path).size / RATE
                if not 0.5 <= seconds <= MAX_SECONDS + 0.05:
                    problems.append(f"{job.name}: {seconds:.2f} s long, expected 0.5..{MAX_SECONDS:g} s")
        except InputError as error:
            problems.append(str(error))
    return problems


def folder_bytes(media_dir: Path) -> int:
    return sum(p.stat().st_size for p in media_dir.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="render every file again, even if up to date")
    parser.add_argument("--no-verify", action="store_true", help="skip decoding every file with polyglm.platform.media")
    parser.add_argument("--workers", type=int, default=None, help="parallel renderers (default: min(8, CPUs))")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    jobs = plan_jobs()
    written, skipped, removed = build(jobs, force=args.force, workers=args.workers)
    elapsed = time.perf_counter() - started
    formats = Counter(Path(job.name).suffix.lstrip(".") for job in jobs)
    print(f"media/: {len(jobs)} files ({', '.join(f'{k} {v}' for k, v in sorted(formats.items()))})")
    print(f"  written {len(written)}, up to date {len(skipped)}, removed {len(removed)} in {elapsed:.1f} s")
    print(f"  total {folder_bytes(MEDIA_DIR) / 1e6:.2f} MB")
    if not args.no_verify:
        problems = verify(jobs)
        for problem in problems:
            print("  PROBLEM", problem)
        if problems:
            return 1
        print(f"  verified: all {len(jobs)} decode with polyglm.platform.media")
    return 0


if __name__ == "__main__":
    sys.exit(main())
