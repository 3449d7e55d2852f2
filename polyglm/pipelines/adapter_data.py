"""Training data for adapters, made here: speech from espeak-ng, images drawn with PIL.

- speech: varied English sentences from a seeded grammar, spoken by several espeak-ng voices at
  several speeds; target = the sentence.
- images, five kinds, all 224x224 RGB PNG:
  - shapes: one to three coloured shapes on varied backgrounds; target = "Two red circles." etc.;
  - photos: scikit-image photos, augmented, captioned with the vision model's own ImageNet top-1
    label (so the adapter learns to say what the encoder sees);
  - texts: a word or two rendered on a coloured card (font, size, position, colours, slight
    rotation vary); target = 'The word "river" written in blue.';
  - symbols: one to three emoji-like symbols (DejaVu Sans glyphs: star, heart, sun...); target =
    "A red heart symbol." / "Three yellow star symbols.";
  - charts: bar, pie and line charts; target = "A bar chart with four bars; the tallest bar is
    green." / "A pie chart with three slices; the largest slice is red." / "A line chart that rises."
  Fonts are the DejaVu files bundled with matplotlib (a pinned dependency), so every machine draws
  the same bytes; no system font or colour-emoji font is needed.

Split rule used everywhere in polyglm: item index % 10 == 0 is test data and is never trained on.
Every set is written once to a folder with `items.jsonl` and the media files; its hash goes into
the adapter manifest.
"""

from __future__ import annotations

import functools
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

# Common nouns for the rendered-text images (no colour words, so the caption's colour is unambiguous).
WORDS = ["river", "apple", "house", "train", "cloud", "bread", "chair", "garden", "window", "music", "water",
         "forest", "bottle", "pencil", "rabbit", "candle", "island", "mirror", "basket", "rocket", "planet", "pocket",
         "ticket", "winter", "summer", "market", "bridge", "castle", "school", "street", "tiger", "horse", "table",
         "lemon", "paper", "stone", "money", "phone", "clock", "honey", "beach", "ocean", "flower", "dinner",
         "coffee", "camera", "guitar", "jacket", "kitten", "ladder", "monkey", "parrot", "pillow", "sugar", "tomato",
         "violin", "wallet", "zebra", "cheese", "hammer"]  # fmt: skip
TWO_WORD_RATE = 0.3  # share of text images with two words instead of one
CARDS = [(255, 255, 255), (250, 240, 210), (205, 225, 250), (210, 240, 210), (250, 215, 225), (225, 225, 225),
         (60, 60, 60), (30, 40, 80)]  # fmt: skip
# Emoji-like symbols: all in DejaVu Sans (no colour-emoji font needed); name -> (glyph, plural).
SYMBOLS = {"star": "★", "heart": "♥", "sun": "☀", "umbrella": "☂", "smiley face": "☺", "plane": "✈",
           "telephone": "☎", "music note": "♫", "flower": "✿", "coffee cup": "☕", "snowflake": "❄",
           "anchor": "⚓"}  # fmt: skip
SYMBOL_COUNTS = {1: "A", 2: "Two", 3: "Three"}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
BAR_COUNTS, SLICE_COUNTS = (3, 4, 5, 6), (2, 3, 4, 5)
TRENDS = ["rises", "falls", "rises and then falls", "falls and then rises"]
CHART_TYPES = ["bar", "pie", "line"]
# DejaVu fonts as bundled with matplotlib (identical bytes on every machine with the pinned version).
WORD_FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
              "DejaVuSansMono-Bold.ttf"]  # fmt: skip
SYMBOL_FONT = "DejaVuSans.ttf"

# Image data kinds: set folder name -> media file prefix (also the prefix of its metric keys).
IMAGE_KINDS = {"shapes": "shape", "photos": "photo", "texts": "text", "symbols": "symbol", "charts": "chart"}
# Chance level of an exact caption: how often the single best constant answer would be right under
# each generator's distribution (photos: measured as the most common held-out label instead).
CHANCE = {
    "shape": 1 / (len(COLOURS) * len(SHAPES) * len(COUNTS)),
    "text": (1 - TWO_WORD_RATE) / (len(WORDS) * len(COLOURS)),
    "symbol": 1 / (len(SYMBOLS) * len(COLOURS) * len(SYMBOL_COUNTS)),
    "chart": 1 / (len(CHART_TYPES) * len(TRENDS)),  # "A line chart that rises." every time
}


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


def voice_for(lang: str) -> str:
    """The espeak-ng voice that speaks `lang` (zh or en). Plain "cmn" reads Chinese as pinyin spelt out by
    the English voice ("ni three hao three"); this one speaks it."""
    return "cmn-latn-pinyin" if lang == "zh" else "en"


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


def fresh_shapes(count: int, seed: int = 31337) -> list[tuple[str, str, object]]:
    """(colour, shape, image) drawings from other seeds than training's, for questions at inference."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        colour, shape, n = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(COUNTS))
        out.append((colour, shape, shapes_image(random.Random(1000 + index), colour, shape, n)))
    return out


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
            f"A photo of {article(label)} {label}.",
            {"source": source, "label": label},
        )


def image_split(total: int) -> dict[str, int]:
    """How many of `total` image items each kind gets: equal shares, the remainder to the first kinds."""
    share, rest = divmod(total, len(IMAGE_KINDS))
    return {kind: share + (i < rest) for i, kind in enumerate(IMAGE_KINDS)}


def split_sizes(modality: str, total: int) -> tuple[int, int]:
    """(training, held-out) examples that `total` items give: every set holds out its indices 0, 10, 20..."""
    counts = [total] if modality == "audio" else list(image_split(total).values())
    held_out = sum(-(-n // 10) for n in counts)
    return sum(counts) - held_out, held_out


def minimum_items(modality: str) -> int:
    """The fewest items with at least one training and one held-out example (image: 6, as each kind holds
    out its first item before any is trained on)."""
    return next(n for n in range(1, 100) if all(split_sizes(modality, n)))


def font_path(name: str) -> Path:
    """A DejaVu font file: matplotlib's bundled copy, else Debian's fonts-dejavu-core."""
    import matplotlib

    for folder in (Path(matplotlib.get_data_path()) / "fonts" / "ttf", Path("/usr/share/fonts/truetype/dejavu")):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"font {name} not found: reinstall matplotlib (it bundles DejaVu) or apt-get install "
                            "fonts-dejavu-core")  # fmt: skip


@functools.lru_cache(maxsize=256)
def _font(name: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_path(name)), size)


def _luma(rgb: tuple[int, int, int]) -> float:
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]


def text_caption(words: str, ink: str) -> str:
    return f'The {"words" if " " in words else "word"} "{words}" written in {ink}.'


def text_image(rng: random.Random, words: str, ink: str):
    """`words` in one of the DejaVu fonts on a card of a contrasting colour, slightly rotated."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (224, 224), rng.choice(BACKGROUNDS))
    cards = [c for c in CARDS if abs(_luma(c) - _luma(COLOURS[ink])) >= 90]
    x0, y0, x1, y1 = rng.randint(0, 24), rng.randint(0, 40), 223 - rng.randint(0, 24), 223 - rng.randint(0, 40)
    ImageDraw.Draw(image).rounded_rectangle((x0, y0, x1, y1), radius=rng.randint(0, 16), fill=rng.choice(cards))
    font_name, angle = rng.choice(WORD_FONTS), rng.uniform(-12, 12)
    size = rng.randint(24, 36) if " " in words else rng.randint(28, 52)
    while True:  # shrink until the rotated text fits on the card (no random draws in here)
        font = _font(font_name, size)
        left, top, right, bottom = font.getbbox(words)
        mask = Image.new("L", (right - left + 8, bottom - top + 8), 0)
        ImageDraw.Draw(mask).text((4 - left, 4 - top), words, font=font, fill=255)
        mask = mask.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        if (mask.width <= x1 - x0 - 8 and mask.height <= y1 - y0 - 8) or size <= 12:
            break
        size -= 2
    x = rng.randint(x0 + 4, max(x0 + 4, x1 - 4 - mask.width))
    y = rng.randint(y0 + 4, max(y0 + 4, y1 - 4 - mask.height))
    image.paste(Image.new("RGB", mask.size, COLOURS[ink]), (x, y), mask)
    return image


def make_text_items(out_dir: Path, count: int, seed: int) -> Iterator[Item]:
    rng = random.Random(seed + 3)
    for index in tqdm(range(count), desc="text images", unit="image"):
        words = " ".join(rng.sample(WORDS, 2 if rng.random() < TWO_WORD_RATE else 1))
        ink = rng.choice(list(COLOURS))
        name = f"text-{index:05d}.png"
        text_image(rng, words, ink).save(out_dir / name)
        yield Item(index, name, text_caption(words, ink), {"words": words, "colour": ink})


def article(word: str) -> str:
    """The indefinite article our captions use before `word` (by its first letter, as written)."""
    return "an" if word[:1] in "aeiou" else "a"


def symbol_caption(symbol: str, colour: str, count: int) -> str:
    if count == 1:
        return f"{article(colour).capitalize()} {colour} {symbol} symbol."
    return f"{SYMBOL_COUNTS[count]} {colour} {symbol} symbols."


def symbols_image(rng: random.Random, symbol: str, colour: str, count: int):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (224, 224), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(image)
    for cx, cy in rng.sample([(x, y) for x in range(3) for y in range(3)], count):
        size = rng.randint(50, 70)
        jitter = (74 - size) // 2
        centre = (cx * 74 + 37 + rng.randint(-jitter, jitter), cy * 74 + 37 + rng.randint(-jitter, jitter))
        draw.text(centre, SYMBOLS[symbol], font=_font(SYMBOL_FONT, size), fill=COLOURS[colour], anchor="mm")
    return image


def make_symbol_items(out_dir: Path, count: int, seed: int) -> Iterator[Item]:
    rng = random.Random(seed + 4)
    for index in tqdm(range(count), desc="symbol images", unit="image"):
        symbol, colour, n = rng.choice(list(SYMBOLS)), rng.choice(list(COLOURS)), rng.choice(list(SYMBOL_COUNTS))
        name = f"symbol-{index:05d}.png"
        symbols_image(rng, symbol, colour, n).save(out_dir / name)
        yield Item(index, name, symbol_caption(symbol, colour, n), {"symbol": symbol, "colour": colour, "count": n})


def chart_caption(chart: str, count: int = 0, colour: str = "", trend: str = "") -> str:
    if chart == "bar":
        return f"A bar chart with {NUMBER_WORDS[count]} bars; the tallest bar is {colour}."
    if chart == "pie":
        return f"A pie chart with {NUMBER_WORDS[count]} slices; the largest slice is {colour}."
    return f"A line chart that {trend}."


def _one_clear_maximum(rng: random.Random, n: int, low: float, high: float) -> tuple[list[float], int]:
    """n values in [low, high), one of them (returned index) at least 1.25x every other."""
    values = [rng.uniform(low, high) for _ in range(n)]
    top = rng.randrange(n)
    values[top] = max(v for i, v in enumerate(values) if i != top) * rng.uniform(1.25, 1.6)
    return values, top


def _axes(rng: random.Random, draw, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if rng.random() < 0.6:  # light horizontal grid
        for k in range(1, 5):
            y = y1 - (y1 - y0) * k // 4
            draw.line((x0, y, x1, y), fill=(205, 205, 205), width=1)
    draw.line((x0, y0, x0, y1), fill=(70, 70, 70), width=2)
    draw.line((x0, y1, x1, y1), fill=(70, 70, 70), width=2)


def chart_image(rng: random.Random, chart: str) -> tuple[object, dict]:
    """A bar, pie or line chart and what its caption needs (count, colour of the largest, trend)."""
    from PIL import Image, ImageDraw

    background = rng.choice(BACKGROUNDS)
    image = Image.new("RGB", (224, 224), background)
    draw = ImageDraw.Draw(image)
    box = (rng.randint(14, 36), rng.randint(14, 36), 224 - rng.randint(10, 30), 224 - rng.randint(14, 36))
    x0, y0, x1, y1 = box
    if chart == "bar":
        count = rng.choice(BAR_COUNTS)
        colours = rng.sample(list(COLOURS), count)
        heights, top = _one_clear_maximum(rng, count, 0.15, 0.62)
        _axes(rng, draw, box)
        slot, fill = (x1 - x0 - 4) / count, rng.uniform(0.5, 0.8)
        for i, (height, colour) in enumerate(zip(heights, colours, strict=True)):
            left = x0 + 4 + i * slot + slot * (1 - fill) / 2
            draw.rectangle((left, y1 - 1 - height * (y1 - y0 - 4), left + slot * fill, y1 - 1), fill=COLOURS[colour])
        return image, {"chart": "bar", "count": count, "colour": colours[top]}
    if chart == "pie":
        count = rng.choice(SLICE_COUNTS)
        colours = rng.sample(list(COLOURS), count)
        weights, top = _one_clear_maximum(rng, count, 1.0, 2.0)
        radius = min(x1 - x0, y1 - y0) // 2
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        start = rng.uniform(0, 360)
        for weight, colour in zip(weights, colours, strict=True):
            sweep = 360 * weight / sum(weights)
            draw.pieslice((cx - radius, cy - radius, cx + radius, cy + radius), start, start + sweep,
                          fill=COLOURS[colour], outline=background, width=2)  # fmt: skip
            start += sweep
        return image, {"chart": "pie", "count": count, "colour": colours[top]}
    trend, points = rng.choice(TRENDS), rng.randint(6, 10)
    low, high = rng.uniform(0.05, 0.3), rng.uniform(0.7, 0.95)
    if trend in ("rises", "falls"):
        values = [low + (high - low) * i / (points - 1) + rng.uniform(-0.05, 0.05) for i in range(points)]
    else:
        peak = rng.randint(2, points - 3)
        ends = (rng.uniform(low, 0.4), rng.uniform(low, 0.4))
        values = [ends[0] + (high - ends[0]) * i / peak if i <= peak
                  else high - (high - ends[1]) * (i - peak) / (points - 1 - peak) for i in range(points)]  # fmt: skip
        values = [v + rng.uniform(-0.03, 0.03) for v in values]
    if trend.startswith("falls"):
        values = [1 - v for v in values]
    _axes(rng, draw, box)
    xy = [(x0 + 6 + (x1 - x0 - 12) * i / (points - 1), y1 - 4 - v * (y1 - y0 - 8)) for i, v in enumerate(values)]
    colour = rng.choice(list(COLOURS))
    draw.line(xy, fill=COLOURS[colour], width=rng.choice([2, 3, 4]), joint="curve")
    if rng.random() < 0.5:
        for x, y in xy:
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=COLOURS[colour])
    return image, {"chart": "line", "trend": trend, "colour": colour}


def make_chart_items(out_dir: Path, count: int, seed: int) -> Iterator[Item]:
    rng = random.Random(seed + 5)
    for index in tqdm(range(count), desc="chart images", unit="image"):
        image, meta = chart_image(rng, rng.choice(CHART_TYPES))
        name = f"chart-{index:05d}.png"
        image.save(out_dir / name)
        target = chart_caption(meta["chart"], meta.get("count", 0), meta["colour"], meta.get("trend", ""))
        yield Item(index, name, target, meta)


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
