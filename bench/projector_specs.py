"""Which projector spec per modality? Reduced stage-1 runs side by side: held-out loss and step time.

Same data, seed, steps and LM for every spec, so the printed differences come from the projector.
Run: .venv/bin/python bench/projector_specs.py --modality audio --items 120 --epochs 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from polyglm.pipelines.train_adapter import TrainOptions, prepare_model, train_adapter

SPECS = {
    "audio": ["pool4_mlp2x_gelu", "pool8_mlp2x_gelu", "resampler32", "mlp2x_gelu"],
    "image": ["mlp2x_gelu", "linear", "resampler32"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--modality", choices=sorted(SPECS), default="audio")
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    platform = prepare_model(TrainOptions(profile=args.profile)).platform
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in SPECS[args.modality]:
            options = TrainOptions(profile=args.profile, modality=args.modality, spec=spec, items=args.items,
                                   epochs=args.epochs, eval_generate=0, out_dir=Path(tmp) / spec)  # fmt: skip
            metrics = train_adapter(options, platform=platform)
            rows.append((spec, metrics))
    print(f"{args.modality}: {args.items} items, {args.epochs} epochs, profile {args.profile}")
    print(f"{'spec':20s} {'loss before':>12s} {'loss after':>11s} {'after/before':>13s} {'s/step':>8s}")
    for spec, m in rows:
        per_step = m["train_seconds_this_run"] / max(1, m["steps"])
        print(f"{spec:20s} {m['held_out_loss_before']:12.3f} {m['held_out_loss_after']:11.3f} "
              f"{m['loss_ratio_after_before']:13.3f} {per_step:8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
