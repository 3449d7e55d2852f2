"""Questions about fresh drawn shapes through the product path (polyglm chat), stage 1 vs stage 2.

Prints, for N drawings never trained on, how often the answer to "What colour are the shapes?" names
the right colour and how often "Describe the image in a few words." names the right shape, with the
profile's stage-2 LoRA + projectors and with stage-1 adapters only; chance for colour is 1/7.
Run: .venv/bin/python bench/media_questions.py [--items 12]
"""

from __future__ import annotations

import argparse
import dataclasses

from polyglm.pipelines.adapter_data import COLOURS, fresh_shapes
from polyglm.pipelines.chat import reply
from polyglm.platform.engine import GenerationOptions
from polyglm.platform.loader import load_platform

SHORT = GenerationOptions(max_new_tokens=12)


def ask(platform, question: str, image) -> str:
    return reply(platform, [{"role": "user", "content": question}], SHORT, images=[image]).lower()


def score(platform, items: int) -> tuple[int, int]:
    colour_hits = shape_hits = 0
    for colour, shape, image in fresh_shapes(items):
        colour_hits += colour in ask(platform, "What colour are the shapes?", image)
        shape_hits += shape in ask(platform, "Describe the image in a few words.", image)
    return colour_hits, shape_hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12)
    args = parser.parse_args()
    for label, keep_stage2 in (("stage 2 (shipped)", True), ("stage 1 only", False)):
        platform = load_platform("offline")
        if not keep_stage2:
            platform.profile = dataclasses.replace(platform.profile, stage2="")
        colour, shape = score(platform, args.items)
        print(f"{label:18s} colour named {colour}/{args.items}, shape named {shape}/{args.items} "
              f"(colour chance {args.items / len(COLOURS):.1f}/{args.items})")  # fmt: skip


if __name__ == "__main__":
    main()
