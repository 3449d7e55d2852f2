"""Combining modalities: the weighted product, its fit, the fusion file's checks, and the pipeline using it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from polyglm.pipelines.sentiment import LABELS, SentimentInput, analyse
from polyglm.pipelines.sentiment_fusion import Fusion, fit_weights, fuse, load_fusion, subsets
from tests.pipelines.test_label_scoring import media_platform, sign  # noqa: F401  (fixture)


def test_the_product_weighs_each_modality_and_leaves_one_alone_unchanged():
    text = {"negative": 0.7, "neutral": 0.2, "positive": 0.1}
    audio = {"negative": 0.1, "neutral": 0.2, "positive": 0.7}
    assert fuse({"text": text}, Fusion({"text": 5.0})) == text
    equal = fuse({"text": text, "audio": audio}, Fusion())
    assert equal["negative"] == pytest.approx(equal["positive"]) and sum(equal.values()) == pytest.approx(1.0)
    weighted = fuse({"text": text, "audio": audio}, Fusion({"text": 1.0, "audio": 0.0}))
    assert [weighted[k] for k in LABELS] == pytest.approx([text[k] for k in LABELS])
    # a zero from one modality does not veto a label the others are sure of
    sure = fuse({"text": {"negative": 0.0, "neutral": 0.0, "positive": 1.0},
                 "image": {"negative": 0.0, "neutral": 0.0, "positive": 1.0},
                 "audio": {"negative": 0.5, "neutral": 0.5, "positive": 0.0}}, Fusion())  # fmt: skip
    assert max(sure, key=sure.get) == "positive"
    assert subsets(("text", "image", "audio")) == [("text", "image"), ("text", "audio"), ("image", "audio"),
                                                   ("text", "image", "audio")]  # fmt: skip


def _synthetic_posts(count: int = 600):
    """Gold labels; text names it 90 % of the time (else a random label), image 70 %, audio never (noise)."""
    generator = torch.Generator().manual_seed(0)
    posts = []
    for _ in range(count):
        gold = int(torch.randint(3, (), generator=generator))
        views = {}
        for modality, right in (("text", 0.9), ("image", 0.7), ("audio", 0.0)):
            said = (
                gold
                if float(torch.rand((), generator=generator)) < right
                else int(torch.randint(3, (), generator=generator))
            )
            views[modality] = {label: (0.8 if i == said else 0.1) for i, label in enumerate(LABELS)}
        posts.append((views, LABELS[gold]))
    return posts


def test_fitted_weights_trust_the_informative_modalities_and_beat_equal_weights():
    posts = _synthetic_posts()
    weights = fit_weights(posts)
    assert weights["text"] > weights["image"] > weights["audio"]
    assert weights["audio"] < 0.2

    def accuracy(fusion):
        return sum(max(p := fuse(views, fusion), key=p.get) == gold for views, gold in posts) / len(posts)

    assert accuracy(Fusion(weights)) > accuracy(Fusion()) + 0.02
    assert accuracy(Fusion(weights)) >= accuracy(Fusion({"text": 1.0, "image": 0.0, "audio": 0.0}))
    with pytest.raises(ValueError, match="two or more modalities"):
        fit_weights([({"text": posts[0][0]["text"]}, "positive")])


def test_a_fusion_file_is_used_only_for_its_head_and_temperature(tmp_path):
    path = tmp_path / "fusion.json"
    assert "no fusion fitted" in load_fusion("tiny", "abc", 1.3, path).status
    record = {"weights": {"text": 1.1, "image": 0.4, "audio": 0.1}, "head": "abc", "temperature": 1.3}
    path.write_text(json.dumps(record))
    fitted = load_fusion("tiny", "abc", 1.3, path)
    assert fitted.status == "fitted" and fitted.weight("audio") == 0.1 and fitted.weight("other") == 1.0
    for head, temperature in (("def", 1.3), ("abc", 1.0)):
        other = load_fusion("tiny", head, temperature, path)
        assert other.weights == {} and "was fitted for head abc" in other.status
        assert "bench/sentiment_fusion.py --profile tiny" in other.status
    path.write_text("{not json")
    assert "unreadable" in load_fusion("tiny", "abc", 1.3, path).status
    path.write_text(json.dumps({**record, "weights": {"text": -1}}))
    assert "out of range" in load_fusion("tiny", "abc", 1.3, path).status


def test_the_pipeline_fuses_each_modalitys_own_scores(media_platform):  # noqa: F811
    result = analyse(media_platform, SentimentInput(text="what a lovely day", images=(sign("GREAT"),)))
    assert set(result.by_modality) == {"text", "image"}
    expected = fuse(result.by_modality, result.fusion)
    assert [result.probabilities[k] for k in LABELS] == pytest.approx([expected[k] for k in LABELS])
    assert result.by_modality["text"] == result.attribution["alone"]["text"]
    assert "no fusion fitted" in result.fusion.status  # the tiny profile ships none
    assert not math.isclose(result.probabilities["positive"], result.by_modality["text"]["positive"])


def test_the_shipped_offline_fusion_matches_the_shipped_head_and_calibration():
    """Retraining the head or refitting the temperature without refitting the fusion would ship stale weights
    (the loader would then fall back to equal weights, which score worse than text alone)."""
    import hashlib

    from polyglm.platform.inventory import ADAPTER_ROOT

    folder = ADAPTER_ROOT / "offline" / "sentiment"
    record = json.loads((folder / "fusion.json").read_text())
    calibration = json.loads((folder / "calibration.json").read_text())
    head = hashlib.sha256((folder / "head" / "head.safetensors").read_bytes()).hexdigest()
    assert record["head"] == head and record["temperature"] == calibration["temperature"]
    assert load_fusion("offline", head, calibration["temperature"], folder / "fusion.json").status == "fitted"
    # on the validation posts it was fitted on, the fitted weights were no worse than text alone
    fitted = record["validation"]["fitted"]
    assert fitted["text+image+audio"] >= fitted["text"] > fitted["audio"]
