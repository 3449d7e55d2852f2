"""`polyglm eval` throughput, measured side by side in one run (ratios, not absolute times, are the point).

On a multimodal manifest of N items (default 200: every item has text, every 3rd a photo with text on it,
every 5th a spoken voice note made with espeak-ng; every file distinct), the same task is run three times
into fresh run folders:

1. one item at a time (batch size 1), cold media cache
2. batched (the task's batch size), cold media cache
3. batched again, warm media cache (encoder features, OCR text and transcripts cached by content)

Printed: items/s of each, batched / one-by-one, and warm / cold. Each run has its own media cache folder,
so "cold" is cold; the model stays loaded across the three (load time is not part of any number).

Run: .venv/bin/python bench/eval_runner.py --profile offline [--items 200] [--task labels]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from polyglm.evaluation.runner import RunOptions, run_eval
from polyglm.platform.feature_cache import CacheOptions, FeatureCache
from polyglm.platform.loader import load_platform

SENTENCES = [
    ("I love this phone, the battery lasts for days", "positive"),
    ("Terrible service, I waited two hours and nobody came", "negative"),
    ("The meeting is moved to room four on Tuesday", "neutral"),
    ("Best concert of my life, thank you all", "positive"),
    ("The package arrived broken and support ignored me", "negative"),
    ("The store opens at nine tomorrow", "neutral"),
]


def make_manifest(folder: Path, items: int) -> Path:
    (folder / "media").mkdir(parents=True, exist_ok=True)
    with (folder / "data.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "text", "image", "audio", "label"])
        for i in range(items):
            text, label = SENTENCES[i % len(SENTENCES)]
            image = audio = ""
            if i % 3 == 0:
                image = f"media/{i:04d}.png"
                picture = Image.new("RGB", (320, 96), (250, 250, 245))
                ImageDraw.Draw(picture).text((10, 36), f"{text} #{i}", fill=(10, 10, 10))
                picture.save(folder / image)
            if i % 5 == 0:
                audio = f"media/{i:04d}.wav"
                subprocess.run(["espeak-ng", "-w", str(folder / audio), f"{text}, number {i}"], check=True)
            writer.writerow([f"item-{i:04d}", text, image, audio, label])
    return folder / "data.csv"


def run(
    platform, manifest: Path, out: Path, task: str, batch_size: int | None, cache_root: Path, limit: int | None = None
) -> float:
    platform.forget("media_cache")
    platform.cached("media_cache", lambda: FeatureCache(CacheOptions(root=cache_root)))
    started = time.perf_counter()
    result = run_eval(RunOptions(task=task, manifest=manifest, out=out, profile=platform.profile.name,
                                 batch_size=batch_size, limit=limit), platform=platform, progress=True)  # fmt: skip
    seconds = time.perf_counter() - started
    assert result.new == result.items and not result.failed, result.metrics["failed"][:3]
    return result.items / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--task", default="labels")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="polyglm-bench-eval-"))
    try:
        manifest = make_manifest(work / "data", args.items)
        platform = load_platform(args.profile)
        # loads every part (LM, encoders, OCR, Whisper) so that no timed run pays for it
        run(platform, manifest, work / "warmup", args.task, args.batch_size, work / "cache-warmup", limit=16)
        one = run(platform, manifest, work / "one", args.task, 1, work / "cache-one")
        batched = run(platform, manifest, work / "batched", args.task, args.batch_size, work / "cache-batched")
        warm = run(platform, manifest, work / "warm", args.task, args.batch_size, work / "cache-batched")
        print(f"\n{args.items} items, task {args.task}, profile {args.profile}")
        print(f"one at a time, cold cache : {one:7.2f} items/s")
        size = args.batch_size
        print(f"batched ({size}), cold cache  : {batched:7.2f} items/s   {batched / one:5.2f}x one at a time")
        print(f"batched ({size}), warm cache  : {warm:7.2f} items/s   {warm / batched:5.2f}x cold")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
