"""Load-time and memory benchmark for a profile, with the ratio that justifies `models prepare`.

Prints, from one run on this machine: each part's load time and the process RSS after it, and how
much faster the prepared (safetensors) language model loads than the packaged GGUF it came from.
Run: .venv/bin/python bench/load_profile.py --profile offline
"""

from __future__ import annotations

import argparse
import os
import time

import psutil


def rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / 1e6


def load_parts(profile: str) -> None:
    from polyglm.platform.loader import load_platform

    platform = load_platform(profile)
    print(f"profile {profile} on {platform.device}; RSS before loading: {rss_mb():.0f} MB")
    for role in platform.profile.parts:
        platform.get(role)
        stats = platform.stats[role]
        print(f"  {role:15s} {stats.seconds:6.2f} s  {stats.parameters / 1e6:7.1f} M params  RSS {rss_mb():6.0f} MB")


def gguf_vs_prepared() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from polyglm.platform.config import Settings
    from polyglm.platform.locate import prepared_dir
    from polyglm.platform.recipes import RECIPES, locate_packaged_file

    gguf = locate_packaged_file(RECIPES["smollm2-135m-instruct"].inputs[0])
    started = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    from_gguf = time.perf_counter() - started
    started = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(prepared_dir(Settings.from_env(), "smollm2-135m-instruct"))
    from_prepared = time.perf_counter() - started
    print(f"LM load: GGUF {from_gguf:.2f} s vs prepared safetensors {from_prepared:.2f} s "
          f"-> {from_gguf / from_prepared:.1f}x faster after `models prepare`")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="offline")
    args = parser.parse_args()
    load_parts(args.profile)
    if args.profile == "offline":
        gguf_vs_prepared()


if __name__ == "__main__":
    main()
