"""Sentiment performance, measured side by side in one run (ratios, no absolute promises).

1. label scoring by the pipeline's scorer (the profile's trained sentiment head where one ships, else the
   label words) vs greedy generation (up to 16 new tokens, the label parsed from the text), one item at
   a time, on the same items (the social_sentiment pack's eval posts): items/s and accuracy;
2. batched scoring (--batch-size) vs one by one: items/s;
3. batched scoring items/s as a fraction of the FLOP-bound limit: items/s x FLOPs per item / the matmul
   rate measured here in the LM's dtype. FLOPs per item: 2 x the LM's non-embedding parameters x the
   tokens the call really forwards (the prompt prefix every item shares runs once per call, see
   label_scoring.shared_prefix), plus the LM head on the positions whose logits are computed (none for a
   head); attention's own FLOPs left out. The whole prompts' FLOPs are printed beside it;
4. a 10-second voice note end to end (Whisper transcript, audio adapter, syllables heard, scoring), on a note
   the media cache has never seen, and the same note again (transcript and features from the cache);
5. peak RSS.

    python bench/sentiment.py [--profile offline] [--items 40] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def matmul_rate(dtype, size: int = 1024, repeats: int = 5, rounds: int = 5) -> float:
    """FLOP/s of square matmuls in `dtype`: the best of `rounds` timed rounds (the bound is the rate the
    machine reaches; on a shared machine a single round read 197-222 GFLOP/s)."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 * repeats / best


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from polyglm.pipelines.attachments import ReadAttachments
    from polyglm.pipelines.chat import language_of
    from polyglm.pipelines.label_scoring import shared_prefix
    from polyglm.pipelines.sentiment import (
        ANSWER,
        LABELS,
        SentimentInput,
        analyse,
        score_sentiment,
        sentiment_conversation,
        sentiment_scorer,
    )
    from polyglm.platform.engine import GenerationOptions, generate_ids
    from polyglm.platform.fusion import generation_prompt
    from polyglm.platform.loader import load_platform
    from polyglm.platform.media import load_audio
    from polyglm.scenarios.loader import load_pack

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    platform = load_platform(args.profile, device="cpu")
    lm = platform.lm
    pack = load_pack("social_sentiment")
    posts = [json.loads(line) for line in (pack.root / "data" / "posts.jsonl").read_text().splitlines() if line]
    items = [p for p in posts if p["split"] == "eval"] + [p for p in posts if p["split"] == "train"]
    items = items[: args.items]
    gold = [p["polarity"] for p in items]
    conversations = [sentiment_conversation(p["text"], ReadAttachments(), language_of(p["text"])) for p in items]
    rows: dict[str, object] = {"profile": args.profile, "items": len(items), "threads": torch.get_num_threads(),
                               "lm_dtype": str(lm.model.dtype).removeprefix("torch.")}  # fmt: skip

    rows["scorer"] = sentiment_scorer(platform).status
    score_sentiment(platform, conversations[:2], 1)  # warm-up
    started = time.perf_counter()
    single = [score_sentiment(platform, [c], 1)[0] for c in conversations]
    scoring_seconds = time.perf_counter() - started
    scored = [r[ANSWER]["label"] for r in single]

    options = GenerationOptions(max_new_tokens=16, repetition_penalty=1.0)
    started = time.perf_counter()
    generated = []
    for conversation in conversations:
        text = lm.tokenizer.decode(generate_ids(lm.model, lm.chat_ids(conversation), lm.stop_token_ids, options))
        found = sorted((text.lower().find(label), label) for label in LABELS if label in text.lower())
        generated.append(found[0][1] if found else "")
    generation_seconds = time.perf_counter() - started

    def accuracy(predicted):
        return round(sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold), 4)

    rows["scoring_items_per_s"] = round(len(items) / scoring_seconds, 3)
    rows["generation_items_per_s"] = round(len(items) / generation_seconds, 3)
    rows["scoring_vs_generation_speed"] = round(generation_seconds / scoring_seconds, 2)
    rows["scoring_accuracy"], rows["generation_accuracy"] = accuracy(scored), accuracy(generated)
    rows["generation_unparsed"] = generated.count("")

    started = time.perf_counter()
    batched = score_sentiment(platform, conversations, args.batch_size)
    batch_seconds = time.perf_counter() - started
    rows["batched_items_per_s"] = round(len(items) / batch_seconds, 3)
    rows["batched_vs_single_speed"] = round(scoring_seconds / batch_seconds, 2)
    rows["batched_max_probability_difference"] = max(
        abs(b[ANSWER]["probabilities"][k] - s[ANSWER]["probabilities"][k])
        for b, s in zip(batched, single, strict=True)
        for k in LABELS
    )

    # FLOPs: every forwarded token through every non-embedding weight, plus the LM head on the positions whose
    # logits are computed. The batched call runs the prompts' common prefix once, then each prompt's own
    # tokens and the answer's opening ('{"sentiment": "'); a head reads the hidden state there and the
    # forward stops before the LM head, while label words forward each label's tokens and read their logits.
    parameters = sum(p.numel() for n, p in lm.model.named_parameters() if "embed" not in n)
    head = lm.model.get_output_embeddings().weight.numel()

    def encode(text: str) -> list[int]:
        return lm.tokenizer.encode(text, add_special_tokens=False)

    opening = len(encode('{"')) + len(encode(f'{ANSWER}": "'))
    headed = sentiment_scorer(platform).sha256 is not None
    label_words = 0 if headed else sum(len(encode(f'{x}"')) - 1 for x in LABELS)
    logits_read = 0 if headed else opening + label_words
    prompts = [generation_prompt(lm.tokenizer, c)[0] for c in conversations]
    prefix = shared_prefix(prompts, set())
    tokens = [len(p) for p in prompts]
    forwarded = prefix + sum(n - prefix + opening + label_words for n in tokens)
    flops = (2 * parameters * forwarded + 2 * head * logits_read * len(tokens)) / len(tokens)
    whole = (2 * parameters * (sum(tokens) + (opening + label_words) * len(tokens))
             + 2 * head * logits_read * len(tokens)) / len(tokens)  # fmt: skip
    rate = matmul_rate(lm.model.dtype)
    rows["mean_prompt_tokens"] = round(sum(tokens) / len(tokens), 1)
    rows["mean_tokens_forwarded_batched"] = round(forwarded / len(tokens), 1)
    rows["gflops_per_item_batched"] = round(flops / 1e9, 2)
    rows["gflops_per_item_whole_prompt"] = round(whole / 1e9, 2)
    rows["matmul_gflops_per_s"] = round(rate / 1e9, 1)
    rows["batched_fraction_of_flop_bound"] = round(rows["batched_items_per_s"] * flops / rate, 3)

    with tempfile.TemporaryDirectory() as folder:
        note = Path(folder) / "note.wav"
        text = ("I waited forty minutes for the bus this morning and then it drove straight past me. "
                "Honestly, what a terrible start to the day, I am so annoyed.")  # fmt: skip
        subprocess.run(["espeak-ng", "-s", "135", "-w", str(note), text], check=True)
        clip = load_audio(note)
        # The media cache keeps every clip's transcript and features on disk: a note it has seen (this one, in
        # an earlier run or in the warm-up) would skip Whisper. The measured note is one it has never seen:
        # the same speech with noise at -80 dB, seeded by the clock. The warm-up (loading every part) is another.
        fresh = clip + np.random.default_rng(time.time_ns()).normal(0, 1e-4, clip.shape).astype(clip.dtype)
        analyse(platform, SentimentInput(audio=(clip[::-1].copy(),)), attribution=False)
        started = time.perf_counter()
        result = analyse(platform, SentimentInput(audio=(fresh,)), attribution=False)
        rows["voice_note_seconds"] = round(len(clip) / 16_000, 1)
        rows["voice_note_end_to_end_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        analyse(platform, SentimentInput(audio=(fresh,)), attribution=False)
        rows["voice_note_again_from_media_cache_s"] = round(time.perf_counter() - started, 2)
        rows["voice_note_label"] = result.label
        rows["voice_note_transcript"] = result.evidence["transcripts"][0][:120]
    rows["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    for name, value in rows.items():
        print(f"{name:38s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
