"""A small real multimodal dataset on disk: texts, PNG photos and WAV voice notes with labels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageDraw

TEXTS = [
    ("I love this phone, the battery lasts for days", "positive"),
    ("Terrible service, I waited two hours and nobody came", "negative"),
    ("The meeting is moved to room 4 on Tuesday", "neutral"),
    ("Best concert of my life, thank you all!", "positive"),
    ("The package arrived broken and support ignored me", "negative"),
    ("Store opens at 9 am tomorrow", "neutral"),
]


def write_dataset(folder: Path, rows: int = 12, extra_lines: str = "") -> Path:
    """data.csv with `rows` items cycling through TEXTS; every third has a photo, every fourth a voice note."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "media").mkdir(exist_ok=True)
    photo = folder / "media" / "photo.png"
    image = Image.new("RGB", (64, 48), (240, 240, 240))
    ImageDraw.Draw(image).text((4, 16), "GREAT", fill=(0, 0, 0))
    image.save(photo)
    t = np.arange(16000) / 16000
    sf.write(folder / "media" / "note.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    with (folder / "data.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "text", "image", "audio", "label"])
        for i in range(rows):
            text, label = TEXTS[i % len(TEXTS)]
            writer.writerow([f"item-{i:03d}", text, "media/photo.png" if i % 3 == 0 else "",
                             "media/note.wav" if i % 4 == 0 else "", label])  # fmt: skip
    if extra_lines:
        with (folder / "data.csv").open("a", encoding="utf-8") as out:
            out.write(extra_lines)
    return folder / "data.csv"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset")
