"""`polyglm train-adapter`: align an encoder with the frozen language model through a projector.

Stage 1 trains the projector only (speech -> transcript, image -> caption). Stage 2 continues from a
stage-1 adapter and trains projector + LoRA on instruction data that mixes text-only and
multimodal samples. Encoder features are computed once and kept in the feature cache, so reruns and
evaluation never re-encode. Checkpoints every N steps make a killed run resume where it stopped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from polyglm.pipelines import adapter_data as data
from polyglm.platform import trainer
from polyglm.platform.adapters import WEIGHTS, AdapterError, AdapterManifest, build_projector, save_adapter
from polyglm.platform.config import Settings
from polyglm.platform.engine import GenerationOptions, generate_batch
from polyglm.platform.errors import InputError
from polyglm.platform.feature_cache import CacheOptions, FeatureCache
from polyglm.platform.fusion import MediaFeatures, build_batch
from polyglm.platform.inventory import STAGE2_MANIFEST
from polyglm.platform.language_model import labelled_token_losses
from polyglm.platform.loader import Platform, load_platform
from polyglm.platform.multimodal import MODALITY_ROLE, MultimodalModel, load_media, part_identity, weights_hash
from polyglm.platform.precision import dtype_name
from polyglm.platform.trainer import Trainable, TrainerOptions

PROMPTS = {"audio": "Transcribe the speech.", "image": "Describe the image in a few words."}
DEFAULT_SPECS = {"image": "mlp2x_gelu", "audio": "pool4_mlp2x_gelu"}


@dataclass(frozen=True)
class TrainOptions:
    profile: str = "offline"  # model profile whose encoder and LM are aligned
    modality: str = "audio"  # audio or image
    spec: str = ""  # projector spec; empty = DEFAULT_SPECS[modality]
    items: int = 400  # examples generated (index % 10 == 0 held out)
    epochs: int = 3  # passes over the training split
    batch_size: int = 8
    lr: float = 1e-3  # AdamW learning rate
    seed: int = 0  # data, init and shuffling
    lm_dtype: str = "auto"  # the frozen LM's dtype while training: auto = precision.choose_dtype("training")
    checkpoint_every: int = 25  # steps between resumable checkpoints
    eval_generate: int = 40  # held-out items scored by generation (WER / caption accuracy)
    out_dir: Path = Path("runs/adapter")  # checkpoints, loss curve, metrics, final adapter


def resolved_spec(options: TrainOptions) -> str:
    return options.spec or DEFAULT_SPECS[options.modality]


def check_options(options: TrainOptions) -> None:
    """Every problem with stage-1 options in one InputError, before a model loads or data is generated."""
    if options.modality not in DEFAULT_SPECS:
        raise InputError(f"train-adapter: modality must be audio or image, got {options.modality!r}")
    problems = _item_problems(options.modality, options.items)
    problems += _at_least_one(options, "epochs", "batch_size", "checkpoint_every")
    if options.eval_generate < 0:
        problems.append(f"--eval-generate must be 0 or more, got {options.eval_generate}")
    if not options.lr > 0:
        problems.append(f"--lr must be above 0, got {options.lr}")
    try:
        build_projector(resolved_spec(options), 8, 8)
    except AdapterError as exc:
        problems.append(f"--spec: {exc}")
    if problems:
        raise InputError("train-adapter: " + "; ".join(problems))


def _item_problems(modality: str, items: int) -> list[str]:
    train, held_out = data.split_sizes(modality, items)
    if train and held_out:
        return []
    return [
        f"--items {items} gives {train} training and {held_out} held-out {modality} examples (index % 10 == 0 is "
        f"held out{' in each of the five image kinds' if modality == 'image' else ''}); use --items "
        f"{data.minimum_items(modality)} or more (hundreds for a useful adapter)"
    ]


def _at_least_one(options, *names: str) -> list[str]:
    return [
        f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}"
        for name in names
        if getattr(options, name) < 1
    ]


# --- data and features -----------------------------------------------------------------------


def dataset_dir(settings: Settings, options: TrainOptions, kind: str, count: int) -> Path:
    """Per profile: photo captions are the profile's own vision model's top-1 labels."""
    return settings.cache_dir / "adapter_data" / options.profile / f"{kind}-n{count}-s{options.seed}"


def build_dataset(mm: MultimodalModel, options: TrainOptions) -> list[tuple[Path, list[data.Item]]]:
    """(set folder, items) per data kind; generated once, then reused from the cache.

    Images: `options.items` split evenly over shapes, photos, rendered text, symbols and charts."""
    settings = mm.platform.settings
    if options.modality == "audio":
        makers: dict[str, tuple[int, Callable[[Path, int], object]]] = {
            "speech": (options.items, lambda d, n: data.make_speech_items(d, n, options.seed))
        }
    else:
        generators: dict[str, Callable[[Path, int], object]] = {
            "shapes": lambda d, n: data.make_shape_items(d, n, options.seed),
            "photos": lambda d, n: data.make_photo_items(d, n, options.seed, _top1(mm)),
            "texts": lambda d, n: data.make_text_items(d, n, options.seed),
            "symbols": lambda d, n: data.make_symbol_items(d, n, options.seed),
            "charts": lambda d, n: data.make_chart_items(d, n, options.seed),
        }
        makers = {kind: (n, generators[kind]) for kind, n in data.image_split(options.items).items() if n}
    sets = []
    for kind, (count, make) in makers.items():
        folder = dataset_dir(settings, options, kind, count)
        if not _complete(folder, count):
            _generate_once(folder, count, lambda staging, m=make, n=count: data.write_set(staging, m(staging, n)))
        sets.append((folder, data.read_set(folder)))
    return sets


def _complete(folder: Path, count: int) -> bool:
    return (folder / "items.jsonl").is_file() and len(data.read_set(folder)) == count


def _generate_once(folder: Path, count: int, fill: Callable[[Path], object]) -> None:
    """Make a data set in a staging folder and rename it into place, so that two processes generating
    the same set never hash each other's half-written files; the first to finish wins."""
    staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    fill(staging)
    if folder.exists() and not _complete(folder, count):
        shutil.rmtree(folder, ignore_errors=True)  # left by a run from before sets were staged
    try:
        staging.rename(folder)
    except OSError:  # another process finished the same set first: theirs has the same bytes
        shutil.rmtree(staging, ignore_errors=True)


def _top1(mm: MultimodalModel) -> Callable:
    return lambda image: mm.platform.vision.classify([image], top_k=1)[0][0][0]


def encoder_features(mm: MultimodalModel, modality: str, files: Sequence[Path]) -> list[torch.Tensor]:
    """Features per file through the on-disk cache: only misses are encoded, in batches."""
    encoder_id = ":".join(part_identity(mm.platform, MODALITY_ROLE[modality]))
    cache = FeatureCache(CacheOptions(root=mm.platform.settings.cache_dir / "features"))

    def compute(missing: list[int]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for start in tqdm(range(0, len(missing), 16), desc=f"encode {modality}", unit="batch", leave=False):
            chunk = missing[start : start + 16]
            out.extend(mm.encoder_features(modality, [load_media(modality, files[i]) for i in chunk]))
        return out

    return cache.get_or_compute(encoder_id, [f.read_bytes() for f in files], compute)


@dataclass(frozen=True)
class Example:
    features: torch.Tensor  # (T, D_enc) encoder features
    target: str
    item: data.Item


def examples(mm: MultimodalModel, options: TrainOptions) -> tuple[list[Example], list[Example], str]:
    """Train and held-out examples and the hash of the data they came from."""
    train, test, hashes = [], [], []
    for folder, items in build_dataset(mm, options):
        feats = encoder_features(mm, options.modality, [folder / item.file for item in items])
        for item, feat in zip(items, feats, strict=True):
            (test if item.is_test else train).append(Example(feat.float(), item.target, item))
        hashes.append(f"{folder.name}:{data.set_hash(folder)}")
    return train, test, ",".join(hashes)


# --- loss and evaluation ----------------------------------------------------------------------


def conversation(modality: str, media: MediaFeatures, target: str | None) -> list[dict]:
    turns = [{"role": "user", "content": [media, PROMPTS[modality]]}]
    return turns + ([{"role": "assistant", "content": target}] if target is not None else [])


def batch_loss(mm: MultimodalModel, projector, modality: str, batch: Sequence[Example]) -> torch.Tensor:
    lm = mm.lm
    media = [MediaFeatures(modality, projector(ex.features[None])[0].to(lm.model.dtype)) for ex in batch]
    conversations = [conversation(modality, m, ex.target) for m, ex in zip(media, batch, strict=True)]
    return answer_loss(mm, conversations)


def answer_loss(mm: MultimodalModel, conversations: Sequence[Sequence[dict]]) -> torch.Tensor:
    """Mean cross-entropy of the last assistant turn of each conversation (prompt tokens are not scored)."""
    fused = build_batch(mm.lm, conversations, mm.placeholder_ids, train=True)
    inputs = {"inputs_embeds": fused.inputs_embeds, "attention_mask": fused.attention_mask}
    return labelled_token_losses(mm.lm.model, fused.labels, **inputs).mean()


def held_out_loss(mm: MultimodalModel, projector, modality: str, test: Sequence[Example], batch_size: int) -> float:
    with torch.no_grad():
        losses = [
            batch_loss(mm, projector, modality, test[i : i + batch_size]).item()
            for i in range(0, len(test), batch_size)
        ]
    return sum(losses) / len(losses)


def generate_targets(mm: MultimodalModel, projector, modality: str, test: Sequence[Example]) -> list[str]:
    lm, outputs = mm.lm, []
    options = GenerationOptions(max_new_tokens=32, repetition_penalty=1.1)
    with torch.no_grad():
        for i in range(0, len(test), 8):
            chunk = test[i : i + 8]
            media = [MediaFeatures(modality, projector(ex.features[None])[0].to(lm.model.dtype)) for ex in chunk]
            fused = build_batch(lm, [conversation(modality, m, None) for m in media], mm.placeholder_ids)
            rows = generate_batch(lm.model, fused.inputs_embeds, fused.attention_mask, lm.stop_token_ids, options)
            outputs.extend(lm.tokenizer.decode(r, skip_special_tokens=True).strip() for r in rows)
    return outputs


def speech_metrics(mm: MultimodalModel, projector, test: Sequence[Example], folder_of: Callable) -> dict:
    """WER of the LM given only speech features, against the ASR-text path (Whisper's transcript)."""
    from polyglm.platform.verify import word_error_rate

    hypotheses = generate_targets(mm, projector, "audio", test)
    asr = [mm.platform.speech.transcribe(str(folder_of(ex.item)), language="en")["text"] for ex in test]
    wer = sum(word_error_rate(ex.target, h) for ex, h in zip(test, hypotheses, strict=True)) / len(test)
    asr_wer = sum(word_error_rate(ex.target, h) for ex, h in zip(test, asr, strict=True)) / len(test)
    samples = [{"reference": ex.target, "adapter": h} for ex, h in zip(test[:5], hypotheses[:5], strict=True)]
    return {"held_out_wer_adapter": round(wer, 4), "held_out_wer_asr_text_path": round(asr_wer, 4), "samples": samples}


def image_metrics(mm: MultimodalModel, projector, test: Sequence[Example], folder_of: Callable) -> dict:
    """Exact-caption accuracy per kind, against chance and the OCR-text path.

    `{kind}_ocr_path_accuracy` scores the OCR text as a caption, like the adapter's. For rendered text
    that is no real contest (OCR cannot name the colour), so the text kind also gets the fair one:
    `text_word_accuracy` (the adapter's caption quotes exactly the rendered words) against
    `text_ocr_path_word_accuracy` (OCR reads exactly those words)."""
    from PIL import Image

    captions = generate_targets(mm, projector, "image", test)
    ocr = [" ".join(t for t, _ in mm.platform.ocr.read(Image.open(folder_of(ex.item)))) for ex in test]
    metrics: dict = {}
    for kind in data.IMAGE_KINDS.values():
        rows = [(ex, c, o) for ex, c, o in zip(test, captions, ocr, strict=True) if ex.item.file.startswith(kind)]
        if not rows:
            continue
        chance = data.CHANCE.get(kind)
        metrics[f"{kind}_caption_accuracy"] = _share(_same(ex.target, c) for ex, c, _ in rows)
        metrics[f"{kind}_ocr_path_accuracy"] = _share(_same(ex.target, o) for ex, _, o in rows)
        if chance is None:  # chance for photos: always answering the most common label
            labels = [ex.target for ex, _, _ in rows]
            chance = max(labels.count(t) for t in set(labels)) / len(labels)
        metrics[f"{kind}_chance_accuracy"] = round(chance, 4)
        metrics[f"{kind}_held_out_items"] = len(rows)
        if kind == "text":
            metrics["text_word_accuracy"] = _share(_quoted(c) == _words(ex.item.meta["words"]) for ex, c, _ in rows)
            metrics["text_ocr_path_word_accuracy"] = _share(
                _words(o) == _words(ex.item.meta["words"]) for ex, _, o in rows
            )
            metrics["text_word_chance_accuracy"] = round((1 - data.TWO_WORD_RATE) / len(data.WORDS), 4)
    metrics["samples"] = [{"reference": ex.target, "adapter": c} for ex, c in _samples(test, captions)]
    return metrics


def _share(hits) -> float:
    hits = list(hits)
    return round(sum(hits) / len(hits), 4)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z ]+", " ", text.lower()).split())


def _quoted(caption: str) -> str:
    match = re.search(r'"([^"]*)"', caption)
    return _words(match.group(1)) if match else ""


def _samples(test: Sequence[Example], captions: Sequence[str], per_kind: int = 2) -> list[tuple[Example, str]]:
    """The first few held-out captions of each kind."""
    rows = list(zip(test, captions, strict=True))
    return [
        row
        for prefix in data.IMAGE_KINDS.values()
        for row in [r for r in rows if r[0].item.file.startswith(prefix)][:per_kind]
    ]


def _same(reference: str, hypothesis: str) -> bool:
    def norm(text: str) -> str:
        return " ".join(text.lower().replace(".", " ").split())

    return norm(reference) == norm(hypothesis)


# --- training ---------------------------------------------------------------------------------


def prepare_model(options: TrainOptions, platform: Platform | None = None) -> MultimodalModel:
    platform = platform or load_platform(options.profile)
    mm = MultimodalModel(platform)
    choice = platform.training_dtype(options.lm_dtype)
    tqdm.write(f"training dtype: {choice.dtype} ({choice.reason})")
    mm.lm.model.to(choice.torch_dtype).requires_grad_(False)
    return mm


def train_adapter(options: TrainOptions, platform: Platform | None = None) -> dict:
    """Stage-1 training of one modality's projector; returns the metrics written to the manifest."""
    check_options(options)
    options = replace(options, spec=resolved_spec(options))
    options.out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(options.seed)
    mm = prepare_model(options, platform)
    train, test, data_hash = examples(mm, options)
    d_in, d_out = train[0].features.shape[-1], mm.lm.model.config.hidden_size
    projector = build_projector(options.spec, d_in, d_out)
    encoder_id, encoder_hash = part_identity(mm.platform, MODALITY_ROLE[options.modality])
    lm_id, lm_hash = part_identity(mm.platform, "language_model")

    def measure_before() -> dict:
        return {"before": held_out_loss(mm, projector, options.modality, test, options.batch_size)}

    projector.train()
    state = trainer.train(
        Trainable.of_modules({"projector": projector}),
        trainer.epoch_batches(len(train), options.batch_size, options.epochs, options.seed),
        lambda batch: batch_loss(mm, projector, options.modality, [train[i] for i in batch]),
        TrainerOptions(lr=options.lr, weight_decay=0.01, checkpoint_every=options.checkpoint_every,
                       desc=f"train {options.modality}"),
        options.out_dir / "checkpoint.pt",
        trainer.make_fingerprint(options=_trajectory(options), data=data_hash, encoder=encoder_hash, lm=lm_hash,
                                 dtype=str(mm.lm.model.dtype)),
        initial_extra=measure_before,
    )  # fmt: skip
    before, seconds = state.extra["before"], state.seconds_this_run
    projector.eval()
    after = held_out_loss(mm, projector, options.modality, test, options.batch_size)
    folders = {folder.name.split("-")[0]: folder for folder, _ in build_dataset(mm, options)}
    folder_of = lambda item: folders[_kind(item)] / item.file  # noqa: E731
    scored = test[: options.eval_generate] if options.modality == "audio" else _balanced(test, options.eval_generate)
    scorer = speech_metrics if options.modality == "audio" else image_metrics
    extra = scorer(mm, projector, scored, folder_of) if scored else {}
    metrics = {"held_out_loss_before": round(before, 4), "held_out_loss_after": round(after, 4),
               "loss_ratio_after_before": round(after / before, 4), "train_items": len(train),
               "held_out_items": len(test), "steps": state.step, "steps_this_run": state.steps_this_run,
               "train_seconds_this_run": round(seconds, 1), "checkpoint": state.note,
               "lm_dtype": dtype_name(mm.lm.model.dtype), **extra}  # fmt: skip
    title = f"{options.modality} adapter, stage 1"
    trainer.plot_losses(state.losses, before, after, options.out_dir / "loss.png", title)
    manifest = AdapterManifest(
        modality=options.modality, spec=options.spec, encoder_id=encoder_id, encoder_hash=encoder_hash,
        lm_id=lm_id, lm_hash=lm_hash, d_in=d_in, d_out=d_out, seed=options.seed, metrics=metrics,
        data={"sets": data_hash, "items": options.items, "split": "index % 10 == 0 held out"},
        command=shlex.join(["polyglm", *sys.argv[1:]]) if sys.argv[0].endswith("polyglm") else "",
    )  # fmt: skip
    save_adapter(projector, manifest, options.out_dir)
    (options.out_dir / "train_options.json").write_text(json.dumps(asdict(options), default=str, indent=2))
    return metrics


def _trajectory(options) -> dict:
    """The options that change what training computes (not where it writes or how often it saves)."""
    return {k: v for k, v in asdict(options).items() if k not in {"out_dir", "checkpoint_every", "eval_generate"}}


def write_stage2_manifest(options: Stage2Options, lm: tuple[str, str], metrics: dict, modalities: list[str]) -> None:
    """What inference checks before applying stage 2: the LM it was trained on, its LoRA and projectors."""
    manifest = {
        "lm_id": lm[0],
        "lm_hash": lm[1],
        "lora": {"folder": "lora", "r": options.lora_rank, "alpha": 2 * options.lora_rank},
        "projectors": {modality: modality for modality in modalities},
        "data": {"items": options.items, "seed": options.seed, "split": "index % 10 == 0 held out"},
        "metrics": metrics,
        "command": shlex.join(["polyglm", *sys.argv[1:]]) if sys.argv[0].endswith("polyglm") else "",
    }
    (options.out_dir / STAGE2_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _kind(item: data.Item) -> str:
    prefix = item.file.split("-")[0]
    return "speech" if prefix == "clip" else {v: k for k, v in data.IMAGE_KINDS.items()}[prefix]


def _balanced(test: Sequence[Example], total: int) -> list[Example]:
    """Up to `total` held-out items, shared evenly over the image kinds present."""
    by_kind = [[ex for ex in test if ex.item.file.startswith(p)] for p in data.IMAGE_KINDS.values()]
    by_kind = [rows for rows in by_kind if rows]
    if not by_kind:
        return []
    share, rest = divmod(total, len(by_kind))
    return [ex for i, rows in enumerate(by_kind) for ex in rows[: share + (i < rest)]]


# --- stage 2: projector + LoRA on mixed instruction data -------------------------------------

# Text-only turns keep the LM's plain chat ability while LoRA adapts it to multimodal questions.
TEXT_ONLY = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is 7 times 8?", "7 times 8 is 56."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What do bees make?", "Bees make honey."),
    ("Translate 'thank you' into French.", "'Thank you' in French is 'merci'."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Which planet do we live on?", "We live on Earth."),
    ("What is 15 plus 27?", "15 plus 27 is 42."),
    ("What gas do plants take in?", "Plants take in carbon dioxide."),
    ("Give a synonym for happy.", "A synonym for happy is joyful."),
    ("How many legs does a spider have?", "A spider has eight legs."),
]


@dataclass(frozen=True)
class Stage2Options:
    profile: str = "offline"
    adapters: tuple[Path, ...] = ()  # stage-1 adapter folders (image and/or audio) to start from
    items: int = 400  # must match the stage-1 data sets (they are reused from the cache)
    epochs: int = 1
    batch_size: int = 8
    lr: float = 2e-4
    lora_rank: int = 8
    seed: int = 0
    lm_dtype: str = "auto"  # as TrainOptions.lm_dtype
    checkpoint_every: int = 25  # steps between resumable checkpoints
    out_dir: Path = Path("runs/stage2")


@dataclass(frozen=True)
class Sample:
    modality: str | None  # None for text-only
    features: torch.Tensor | None
    question: str
    answer: str
    is_test: bool


def instructions(example: Example, modality: str) -> list[tuple[str, str]]:
    """Questions a user would ask about one generated item, with answers derived from its metadata."""
    meta = example.item.meta
    if modality == "audio":
        return [("What did the speaker say?", example.target),
                ("Repeat the spoken sentence.", example.target)]  # fmt: skip
    if "shape" in meta:
        plural = "" if meta["count"] == 1 else "s"
        return [("What colour are the shapes?", f"They are {meta['colour']}."),
                ("How many shapes are in the picture?", f"There {'is' if meta['count'] == 1 else 'are'} "
                 f"{data.COUNTS[meta['count']].lower()} shape{plural}."),
                ("Describe the image in a few words.", example.target)]  # fmt: skip
    if "words" in meta:
        return [("What does the text in the image say?", f"It says \"{meta['words']}\"."),
                ("What colour is the writing?", f"It is {meta['colour']}."),
                ("Describe the image in a few words.", example.target)]  # fmt: skip
    if "symbol" in meta:
        return [("What symbol is shown?", f"{data.article(meta['symbol']).capitalize()} {meta['symbol']} symbol."),
                ("How many symbols are in the picture?", f"{data.SYMBOL_COUNTS[meta['count']].replace('A', 'One')}."),
                ("Describe the image in a few words.", example.target)]  # fmt: skip
    if "chart" in meta:
        return [("What kind of chart is this?", f"It is a {meta['chart']} chart."),
                ("Describe the image in a few words.", example.target)]  # fmt: skip
    return [("What is in this photo?", example.target)]


def stage2_samples(mm: MultimodalModel, options: Stage2Options, modalities: Sequence[str]) -> list[Sample]:
    samples = []
    for modality in modalities:
        stage1 = TrainOptions(profile=options.profile, modality=modality, items=options.items, seed=options.seed)
        train, test, _ = examples(mm, stage1)
        for example in train + test:
            samples += [Sample(modality, example.features, q, a, example.item.is_test)
                        for q, a in instructions(example, modality)]  # fmt: skip
    # Split the unique text-only pairs first, then repeat only the training ones: repeating before the
    # split would put copies of held-out pairs into training.
    text = [Sample(None, None, q, a, i % 10 == 0) for i, (q, a) in enumerate(TEXT_ONLY)]
    samples += [s for s in text if s.is_test] + [s for s in text if not s.is_test] * 4
    return samples


def mixed_loss(mm: MultimodalModel, projectors: dict, batch: Sequence[Sample]) -> torch.Tensor:
    conversations = []
    for sample in batch:
        content: object = sample.question
        if sample.modality is not None:
            projected = projectors[sample.modality](sample.features[None])[0].to(mm.lm.model.dtype)
            content = [MediaFeatures(sample.modality, projected), sample.question]
        conversations.append([{"role": "user", "content": content}, {"role": "assistant", "content": sample.answer}])
    return answer_loss(mm, conversations)


def mean_loss(mm: MultimodalModel, projectors: dict, samples: Sequence[Sample], batch_size: int) -> float:
    if not samples:
        return float("nan")
    with torch.no_grad():
        losses = [mixed_loss(mm, projectors, samples[i : i + batch_size]).item()
                  for i in range(0, len(samples), batch_size)]  # fmt: skip
    return sum(losses) / len(losses)


def check_stage2_options(options: Stage2Options) -> None:
    """Stage-2 options in one InputError: adapters to start from, and items that give both splits."""
    problems = [] if options.adapters else ["stage 2 starts from stage-1 adapters: add --adapters DIR [DIR]"]
    missing = [str(folder) for folder in options.adapters if not (Path(folder) / "manifest.json").is_file()]
    if missing:
        problems.append(f"no adapter (manifest.json) in {', '.join(missing)}: give stage-1 output folders")
    for modality in sorted(DEFAULT_SPECS):  # the adapters' modalities are read later; both must work
        problems += _item_problems(modality, options.items)
    problems += _at_least_one(options, "epochs", "batch_size", "lora_rank")
    if not options.lr > 0:
        problems.append(f"--lr must be above 0, got {options.lr}")
    if problems:
        raise InputError("train-adapter --stage 2: " + "; ".join(problems))


def train_stage2(options: Stage2Options, platform: Platform | None = None) -> dict:
    """Projector(s) + LoRA on mixed instruction data; saves each projector and the LoRA weights."""
    from peft import LoraConfig, get_peft_model

    from polyglm.platform.adapters import load_adapter

    check_stage2_options(options)
    torch.manual_seed(options.seed)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    mm = prepare_model(TrainOptions(profile=options.profile, lm_dtype=options.lm_dtype), platform)
    lm_identity = part_identity(mm.platform, "language_model")
    projectors, manifests = {}, {}
    for folder in options.adapters:
        modality = json.loads((Path(folder) / "manifest.json").read_text())["modality"]
        identity = part_identity(mm.platform, MODALITY_ROLE[modality])
        projectors[modality], manifests[modality] = load_adapter(Path(folder), *identity, *lm_identity)
        projectors[modality].train()
    samples = stage2_samples(mm, options, list(projectors))
    train = [s for s in samples if not s.is_test]
    test = {kind: [s for s in samples if s.is_test and (s.modality or "text") == kind]
            for kind in [*projectors, "text"]}  # fmt: skip
    lora = LoraConfig(r=options.lora_rank, lora_alpha=2 * options.lora_rank, lora_dropout=0.05,
                      target_modules=list(mm.lm.lora_targets))  # fmt: skip
    mm.lm.model = get_peft_model(mm.lm.model, lora)  # LoRA B starts at zero: the LM answers as before

    def measure_before() -> dict:
        return {kind: mean_loss(mm, projectors, rows, options.batch_size) for kind, rows in test.items()}

    state = trainer.train(
        Trainable.of_lora(mm.lm.model, projectors),
        trainer.epoch_batches(len(train), options.batch_size, options.epochs, options.seed),
        lambda batch: mixed_loss(mm, projectors, [train[i] for i in batch]),
        TrainerOptions(lr=options.lr, checkpoint_every=options.checkpoint_every, desc="stage 2"),
        options.out_dir / "checkpoint.pt",
        trainer.make_fingerprint(options=_trajectory(options), lm=lm_identity, samples=len(samples),
                                 adapters=[weights_hash(Path(f) / WEIGHTS) for f in options.adapters],
                                 dtype=str(mm.lm.model.dtype)),
        initial_extra=measure_before,
    )  # fmt: skip
    before = state.extra
    after = measure_before()
    metrics = {f"held_out_loss_{kind}_{when}": round(value, 4)
               for when, table in (("before", before), ("after", after)) for kind, value in table.items()}  # fmt: skip
    metrics.update(steps=state.step, train_samples=len(train), train_seconds_this_run=round(state.seconds_this_run, 1),
                   lm_dtype=dtype_name(mm.lm.model.dtype))  # fmt: skip
    mm.lm.model.save_pretrained(options.out_dir / "lora")
    # Give the caller's platform its plain LM back: the LoRA lives in out_dir, not in shared state.
    mm.lm.model = mm.lm.model.unload().eval()
    for modality, projector in projectors.items():
        manifest = replace(manifests[modality], metrics={**manifests[modality].metrics, "stage2": metrics},
                           data={**manifests[modality].data, "stage2": "instruction mix + text-only"})  # fmt: skip
        save_adapter(projector.eval(), manifest, options.out_dir / modality)
    write_stage2_manifest(options, lm_identity, metrics, sorted(projectors))
    mean_before = sum(before.values()) / len(before)
    mean_after = sum(after.values()) / len(after)
    trainer.plot_losses(
        state.losses, mean_before, mean_after, options.out_dir / "loss.png", "stage 2: projectors + LoRA"
    )
    (options.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
