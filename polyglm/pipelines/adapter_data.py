"""Training data for adapters, made here: speech from espeak-ng, images drawn with PIL.

- speech: varied English sentences from a seeded grammar, spoken by several espeak-ng voices at
  several speeds; target = the sentence.
- images: one to three coloured shapes on varied backgrounds; target = "Two red circles." etc.;
  plus scikit-image photos, augmented, captioned with the vision model's own ImageNet top-1 label
  (so the adapter learns to say what the encoder sees).

Split rule used everywhere in polyglm: item index % 10 == 0 is test data and is never trained on.
Every set is written once to a folder with `items.jsonl` and the media files; its hash goes into
the adapter manifest.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

SUBJECTS = ["the teacher", "my brother", "a small dog", "the old farmer", "our neighbour", "the pilot", "a young girl",
            "the doctor", "my friend", "the cook", "a tired student", "the driver", "her mother", "the captain",
            "a clever cat", "the waiter", "his sister", "the nurse", "a quiet man", "the children"]  # fmt: skip
VERBS = ["opened", "painted", "carried", "found", "cleaned", "bought", "sold", "watched", "fixed", "lost", "cooked",
         "moved", "washed", "visited", "borrowed", "dropped", "closed", "counted", "loved", "forgot"]  # fmt: skip
OBJECTS = ["the red door", "a heavy box", "the blue car", "a green apple", "the window", "an old book", "the kitchen",
           "a wooden chair", "the garden gate", "a silver key", "the big map", "a warm coat", "the new phone",
           "a paper bag", "the yellow boat", "a glass of milk", "the music room", "a bag of rice", "the black horse",
           "a birthday cake"]  # fmt: skip
TAILS = ["this morning", "last night", "before lunch", "after the rain", "on Sunday", "in the evening", "at noon",
         "yesterday", "very slowly", "with great care", "near the station", "in the park", "by the river",
         "after school", "during the storm", ""]  # fmt: skip
VOICES = ["en-us", "en", "en-us+f3", "en+m3", "en-us+m5", "en+f2"]
SPEEDS = [135, 150, 165, 180]

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (240, 210, 20),
           "purple": (140, 40, 170), "orange": (250, 130, 10), "black": (15, 15, 15)}  # fmt: skip
SHAPES = ["circle", "square", "triangle", "cross"]
COUNTS = {1: "One", 2: "Two", 3: "Three"}
BACKGROUNDS = [(255, 255, 255), (235, 235, 235), (250, 245, 225), (220, 235, 250)]
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "horse", "hubble_deep_field",
          "immunohistochemistry", "brick", "grass", "gravel", "moon", "page", "text", "coins", "logo", "retina",
          "colorwheel"]  # fmt: skip


@dataclass(frozen=True)
class Item:
    """One training example: a media file and its target text."""

    index: int  # position in the set: index % 10 == 0 -> test
    file: str  # media file name inside the set folder
    target: str  # what the language model should say
    meta: dict  # generator details (voice, colour, shape, label...)

    @property
    def is_test(self) -> bool:
        return self.index % 10 == 0


def sentence(rng: random.Random) -> str:
    words = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}".strip()
    return words[0].upper() + words[1:] + "."


def unique_sentences(count: int, seed: int) -> list[str]:
    rng, seen = random.Random(seed), dict.fromkeys([])
    while len(seen) < count:
        seen.setdefault(sentence(rng), None)
    return list(seen)


def speak_to(path: Path, text: str, voice: str, speed: int) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)


def make_speech_items(out_dir: Path, count: int, seed: int) -> Iterator[Item]:
    rng = random.Random(seed + 1)
    for index, text in enumerate(tqdm(unique_sentences(count, seed), desc="speech clips", unit="clip")):
        voice, speed = rng.choice(VOICES), rng.choice(SPEEDS)
        name = f"clip-{index:05d}.wav"
        speak_to(out_dir / name, text, voice, speed)
        yield Item(index, name, text, {"voice": voice, "speed": speed})


def draw_shape(draw, shape: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:  # cross
        w = (x1 - x0) // 3
        draw.rectangle((x0 + w, y0, x1 - w, y1), fill=colour)
        draw.rectangle((x0, y0 + w, x1, y1 - w), fill=colour)


def shapes_image(rng: random.Random, colour: str, shape: str, count: int):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (224, 224), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(image)
    slots = rng.sample([(x, y) for x in range(3) for y in range(3)], count)
    for cx, cy in slots:
        size = rng.randint(40, 66)
        x0 = cx * 74 + rng.randint(2, 72 - size) if size < 70 else cx * 74
        y0 = cy * 74 + rng.randint(2, 72 - size) if size < 70 else cy * 74
        draw_shape(draw, shape, (x0, y0, x0 + size, y0 + size), COLOURS[colour])
    return image


def shape_caption(colour: str, shape: str, count: int) -> str:
    plural = {"cross": "crosses"}.get(shape, shape + "s")
    return f"{COUNTS[count]} {colour} {shape if count == 1 else plural}."


def make_shape_items(out_dir: Path, count: int, seed: int) -> Iterator[Item]:
    rng = random.Random(seed)
    for index in tqdm(range(count), desc="shape images", unit="image"):
        colour, shape, n = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(COUNTS))
        name = f"shape-{index:05d}.png"
        shapes_image(rng, colour, shape, n).save(out_dir / name)
        yield Item(index, name, shape_caption(colour, shape, n), {"colour": colour, "shape": shape, "count": n})


def augment_photo(rng: random.Random, image):
    from PIL import ImageOps

    width, height = image.size
    scale = rng.uniform(0.6, 1.0)
    w, h = int(width * scale), int(height * scale)
    x, y = rng.randint(0, width - w), rng.randint(0, height - h)
    crop = image.crop((x, y, x + w, y + h)).resize((224, 224))
    return ImageOps.mirror(crop) if rng.random() < 0.5 else crop


def make_photo_items(out_dir: Path, count: int, seed: int, label_of: Callable) -> Iterator[Item]:
    """Augmented scikit-image photos captioned with the vision model's own top-1 ImageNet label."""
    from PIL import Image
    from skimage import data

    rng = random.Random(seed + 2)
    photos = {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS}
    for index in tqdm(range(count), desc="photo images", unit="image"):
        source = rng.choice(PHOTOS)
        image = augment_photo(rng, photos[source])
        label = label_of(image).split(",")[0].strip()
        name = f"photo-{index:05d}.png"
        image.save(out_dir / name)
        yield Item(
            index,
            name,
            f"A photo of {'an' if label[0] in 'aeiou' else 'a'} {label}.",
            {"source": source, "label": label},
        )


def write_set(out_dir: Path, items: Iterator[Item]) -> Path:
    """Write items.jsonl (once, atomically); the set folder is reused if already complete."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps(asdict(item), ensure_ascii=False) for item in items]
    tmp = out_dir / "items.jsonl.tmp"
    tmp.write_text("\n".join(rows) + "\n")
    tmp.replace(out_dir / "items.jsonl")
    return out_dir


def read_set(set_dir: Path) -> list[Item]:
    return [Item(**json.loads(line)) for line in (set_dir / "items.jsonl").read_text().splitlines() if line]


def set_hash(set_dir: Path) -> str:
    """sha256 over items.jsonl and every media file: what the adapter manifest records as its data."""
    digest = hashlib.sha256((set_dir / "items.jsonl").read_bytes())
    for item in read_set(set_dir):
        digest.update((set_dir / item.file).read_bytes())
    return digest.hexdigest()[:16]
