"""Encoding benchmarks, measured side by side in one run (ratios, not absolute times, are the point).

1. batched vs one-by-one encoding (goal >= 3x), per modality: the encoder alone on decoded media,
   and files end to end (`encode_files`: decoding in a thread pool + one batched encoder pass +
   projection, vs one call per file)
2. warm feature cache vs re-encoding on a second pass (goal >= 5x)
3. training samples/s with cached features vs re-encoding every step

Run: .venv/bin/python bench/encoding.py --profile offline [--items 32]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from polyglm.pipelines import adapter_data
from polyglm.platform.feature_cache import CacheOptions, FeatureCache
from polyglm.platform.multimodal import MultimodalModel, load_multimodal, part_identity


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def make_media(folder: Path, items: int) -> tuple[list, list]:
    rng = random.Random(0)
    images = [adapter_data.shapes_image(rng, "red", rng.choice(adapter_data.SHAPES), 2) for _ in range(items)]
    clips = []
    for i, text in enumerate(adapter_data.unique_sentences(items, seed=1)):
        path = folder / f"{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        clips.append(path)
    return images, clips


def bench_batching(mm: MultimodalModel, images: list, audio: list) -> None:
    for name, encode, media in (
        ("image", mm.encoder_features_images, images),
        ("audio", mm.encoder_features_audio, audio),
    ):
        encode(media[:2])  # warm-up: first calls pay for lazy init
        one = timed(lambda encode=encode, media=media: [encode([m]) for m in media])
        batched = timed(lambda encode=encode, media=media: encode(media))
        print(f"{name}: one-by-one {one:.2f} s, batched {batched:.2f} s -> batched is {one / batched:.1f}x faster")


def bench_files(mm: MultimodalModel, folder: Path, images: list, clips: list[Path]) -> None:
    pictures = []
    for i, image in enumerate(images):
        pictures.append(folder / f"{i}.jpg")
        image.save(pictures[-1], quality=90)
    for modality, files in (("image", pictures), ("audio", clips)):
        if modality not in mm.projectors:
            print(f"{modality} files: skipped (no {modality} adapter for this profile)")
            continue
        mm.encode_files(modality, files[:2])  # warm-up
        one = timed(lambda m=modality, f=files: [mm.encode_files(m, [x]) for x in f])
        batched = timed(lambda m=modality, f=files: mm.encode_files(m, f))
        print(f"{modality} files end to end: one-by-one {one:.2f} s, batched {batched:.2f} s "
              f"-> batched is {one / batched:.1f}x faster")  # fmt: skip


def bench_cache(mm: MultimodalModel, clips: list[Path], audio: list, root: Path) -> None:
    cache = FeatureCache(CacheOptions(root=root))
    encoder_id = ":".join(part_identity(mm.platform, "speech"))
    blobs = [p.read_bytes() for p in clips]

    def encode_missing(missing: list[int]) -> list[torch.Tensor]:
        return mm.encoder_features_audio([audio[i] for i in missing])

    cold = timed(lambda: cache.get_or_compute(encoder_id, blobs, encode_missing))
    warm = timed(lambda: cache.get_or_compute(encoder_id, blobs, encode_missing))
    print(f"audio features: first pass {cold:.2f} s, warm cache {warm:.3f} s -> {cold / warm:.0f}x faster")


def bench_training(mm: MultimodalModel, audio: list) -> None:
    from polyglm.pipelines.train_adapter import Example, batch_loss
    from polyglm.platform.adapters import build_projector

    projector = build_projector("pool4_mlp2x_gelu", mm.platform.speech.model.dims.n_audio_state,
                                mm.lm.model.config.hidden_size)  # fmt: skip
    optimizer = torch.optim.AdamW(projector.parameters(), lr=1e-3)
    features = mm.encoder_features_audio(audio[:8])
    item = adapter_data.Item(1, "x", "A short sentence.", {})

    def step(feats: list[torch.Tensor]) -> None:
        loss = batch_loss(mm, projector, "audio", [Example(f, item.target, item) for f in feats])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    steps = 3
    cached = timed(lambda: [step(features) for _ in range(steps)])
    encoding = timed(lambda: [step(mm.encoder_features_audio(audio[:8])) for _ in range(steps)])
    rate_cached, rate_encoding = steps * 8 / cached, steps * 8 / encoding
    dtype = str(mm.lm.model.dtype).removeprefix("torch.")  # precision.choose_dtype("training") on this machine
    print(f"training ({dtype} LM): {rate_cached:.2f} samples/s with cached features vs {rate_encoding:.2f} re-encoding "
          f"-> {rate_cached / rate_encoding:.1f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--items", type=int, default=32)
    args = parser.parse_args()
    from polyglm.pipelines.train_adapter import TrainOptions, prepare_model

    mm = prepare_model(TrainOptions(profile=args.profile))
    work = Path(tempfile.mkdtemp(prefix="polyglm-bench-"))
    try:
        import whisper

        images, clips = make_media(work, args.items)
        audio = [whisper.load_audio(str(p)) for p in clips]
        threads = torch.get_num_threads()
        print(f"profile {args.profile}, {args.items} images and {args.items} clips, torch threads {threads}")
        bench_batching(mm, images, audio)
        bench_files(load_multimodal(mm.platform), work, images, clips)
        bench_cache(mm, clips, audio, work / "cache")
        bench_training(mm, audio)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
