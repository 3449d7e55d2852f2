"""Combining modalities: the weighted product, its fit, the fusion file's checks, and the pipeline using it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from polyglm.pipelines.sentiment import LABELS, SentimentInput, analyse
from polyglm.pipelines.sentiment_fusion import (
    Fusion,
    fit_fusion,
    fit_weights,
    fuse,
    fuse_views,
    load_fusion,
    subsets,
)
from polyglm.pipelines.sentiment_ngram import VIEW, load_ngram
from tests.pipelines.test_label_scoring import media_platform, sign  # noqa: F401  (fixture)


def test_the_product_weighs_each_modality_and_leaves_one_alone_unchanged():
    text = {"negative": 0.7, "neutral": 0.2, "positive": 0.1}
    audio = {"negative": 0.1, "neutral": 0.2, "positive": 0.7}
    assert fuse({"text": text}, Fusion({"text": {"text": 5.0}})) == text
    equal = fuse({"text": text, "audio": audio}, Fusion())
    assert equal["negative"] == pytest.approx(equal["positive"]) and sum(equal.values()) == pytest.approx(1.0)
    weighted = fuse({"text": text, "audio": audio}, Fusion({"audio+text": {"text": 1.0, "audio": 0.0}}))
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

    fitted = Fusion({"audio+image+text": weights})
    assert accuracy(fitted) > accuracy(Fusion()) + 0.02
    assert accuracy(fitted) >= accuracy(Fusion({"audio+image+text": {"text": 1.0, "image": 0.0, "audio": 0.0}}))
    with pytest.raises(ValueError, match="two or more modalities"):
        fit_weights([({"text": posts[0][0]["text"]}, "positive")])


def test_each_combination_of_modalities_has_its_own_weights():
    """A picture that mostly repeats the text adds little beside it, but is the best evidence beside a
    noisy voice note: one set of weights for every combination cannot say both."""
    from sklearn.metrics import log_loss

    generator = torch.Generator().manual_seed(2)
    posts = []
    for views, gold in _synthetic_posts(600):
        if float(torch.rand((), generator=generator)) < 0.8:
            views["image"] = views["text"]  # the picture says what the text says
        posts.append(({m: {m: p} for m, p in views.items()}, gold))
    fusion = fit_fusion(posts)
    assert set(fusion.weights) == {"image+text", "audio+text", "audio+image", "audio+image+text"}
    assert fusion.weights["image+text"]["image"] < fusion.weights["audio+image"]["image"] / 2
    gold = [label for _, label in posts]

    def loss(modalities, chosen=fusion):
        fused = [fuse({m: views[m][m] for m in modalities}, chosen) for views, _ in posts]
        return log_loss(gold, [[p[y] for y in LABELS] for p in fused], labels=LABELS)

    for together in subsets(("text", "image", "audio")):  # fitted on these posts: never worse than its best part
        assert loss(together) <= min(loss((m,)) for m in together) + 1e-6
    shared = Fusion({key: fusion.weights["audio+image+text"] for key in fusion.weights})
    assert loss(("image", "audio")) < loss(("image", "audio"), shared) - 0.01


def test_views_of_one_modality_count_once_unless_fitted_and_fitted_weights_trust_the_better_reading():
    one = {"negative": 0.6, "neutral": 0.3, "positive": 0.1}
    assert fuse_views("image", {"image": one, "ocr": one}, Fusion()) == pytest.approx(one)  # not sharpened
    assert fuse_views("image", {"image": one}, Fusion(views={"image": {"image": {"image": 3.0}}})) == one
    # synthetic posts: the picture's words name the label 90 % of the time, its adapter prompt 55 %
    generator = torch.Generator().manual_seed(1)
    posts = []
    for views, gold in _synthetic_posts(400):
        read = {}
        for view, right in (("image", 0.55), ("ocr", 0.9)):
            said = (
                gold
                if float(torch.rand((), generator=generator)) < right
                else LABELS[int(torch.randint(3, (), generator=generator))]
            )
            read[view] = {label: (0.8 if label == said else 0.1) for label in LABELS}
        posts.append(({"text": {"text": views["text"]}, "image": read}, gold))
    fusion = fit_fusion(posts)
    weights = fusion.view_weights("image", ["ocr", "image"])
    assert weights["ocr"] > 1.5 * weights["image"]
    assert set(fusion.weights) == {"image+text"} and fusion.status == "fitted"

    def accuracy(pick):
        return sum(max(p := pick(views), key=p.get) == gold for views, gold in posts) / len(posts)

    fused = accuracy(lambda views: fuse_views("image", views["image"], fusion))
    assert fused >= accuracy(lambda views: views["image"]["ocr"]) - 0.01
    assert fused > accuracy(lambda views: fuse_views("image", views["image"], Fusion())) + 0.02


def test_view_weights_are_fitted_per_set_of_views_and_a_rare_set_keeps_equal_weights():
    """Chinese pictures are read three ways (adapter prompt, OCR text, n-gram model), English ones two; the
    OCR reading needs less weight where the n-gram model reads the same words beside it."""
    generator = torch.Generator().manual_seed(2)

    def said(gold: str, right: float) -> dict[str, float]:
        pick = gold
        if float(torch.rand((), generator=generator)) >= right:
            pick = LABELS[int(torch.randint(3, (), generator=generator))]
        return {label: (0.8 if label == pick else 0.1) for label in LABELS}

    posts = []
    for number in range(400):
        gold = LABELS[number % 3]
        read = {"image": said(gold, 0.5), "ocr": said(gold, 0.85)}
        if number % 2:  # a Chinese card: the n-gram model reads its words (and mostly agrees with the OCR view)
            read[VIEW] = read["ocr"] if float(torch.rand((), generator=generator)) < 0.7 else said(gold, 0.85)
        posts.append(({"image": read}, gold))
    posts += [({"image": {"image": said(g, 0.5), "ngram": said(g, 0.9)}}, g) for g in LABELS * 2]  # too few to fit
    fusion = fit_fusion([*posts, *(({"text": {"text": said(g, 0.9)}, **v}, g) for v, g in posts[:30])])
    assert set(fusion.views["image"]) == {"image+ocr", "image+ngram+ocr"}
    two, three = fusion.view_weights("image", ["image", "ocr"]), fusion.view_weights("image", ["image", "ocr", VIEW])
    assert three["ocr"] < two["ocr"] - 0.1
    assert fusion.view_weights("image", ["image", VIEW]) == {"image": 0.5, VIEW: 0.5}


def test_a_fusion_file_is_used_only_for_its_head_temperature_and_ngram_model(tmp_path):
    path = tmp_path / "fusion.json"
    assert "no fusion fitted" in load_fusion("tiny", "abc", 1.3, "ng", path).status
    record = {"weights": {"audio+image+text": {"text": 1.1, "image": 0.4, "audio": 0.1}}, "head": "abc",
              "temperature": 1.3, "ngram": "ng"}  # fmt: skip
    path.write_text(json.dumps(record))
    fitted = load_fusion("tiny", "abc", 1.3, "ng", path)
    assert fitted.status == "fitted"
    assert fitted.modality_weights(["text", "audio", "image"]) == {"text": 1.1, "audio": 0.1, "image": 0.4}
    assert fitted.modality_weights(["text", "image"]) == {"text": 1.0, "image": 1.0}  # not fitted: naive Bayes
    for head, temperature, ngram in (("def", 1.3, "ng"), ("abc", 1.0, "ng"), ("abc", 1.3, "other"), ("abc", 1.3, None)):
        other = load_fusion("tiny", head, temperature, ngram, path)
        assert other.weights == {} and "was fitted for head abc, temperature 1.3, n-gram model ng" in other.status
        assert "bench/sentiment_fusion.py --profile tiny" in other.status
    path.write_text("{not json")
    assert "unreadable" in load_fusion("tiny", "abc", 1.3, "ng", path).status
    path.write_text(json.dumps({**record, "weights": {"image+text": {"text": -1}}}))
    assert "out of range" in load_fusion("tiny", "abc", 1.3, "ng", path).status
    path.write_text(json.dumps({**record, "weights": {"text": 1.1}}))  # the flat format before combinations
    assert "unreadable" in load_fusion("tiny", "abc", 1.3, "ng", path).status
    path.write_text(json.dumps({**record, "views": {"image": {"image": 0.2, "ocr": 0.8}}}))  # before sets of views
    assert "unreadable" in load_fusion("tiny", "abc", 1.3, "ng", path).status
    views = {"image": {"image+ocr": {"image": 0.2, "ocr": 0.8}, "image+ngram+ocr": {"image": 0.1, "ocr": 0.3,
                                                                                   "ngram": 0.6}}}  # fmt: skip
    path.write_text(json.dumps({**record, "views": views}))
    fitted = load_fusion("tiny", "abc", 1.3, "ng", path)
    assert fitted.view_weights("image", ["ocr", "image"]) == {"ocr": 0.8, "image": 0.2}
    assert fitted.view_weights("image", ["image", "ocr", "ngram"]) == {"image": 0.1, "ocr": 0.3, "ngram": 0.6}
    assert fitted.view_weights("text", ["text", "ngram"]) == {"text": 0.5, "ngram": 0.5}  # not fitted: 1/n
    path.write_text(json.dumps({**record, "views": {"image": {"image+ocr": {"image": -0.2}}}}))
    assert "out of range" in load_fusion("tiny", "abc", 1.3, "ng", path).status


def test_the_pipeline_fuses_each_modalitys_own_scores(media_platform):  # noqa: F811
    result = analyse(media_platform, SentimentInput(text="what a lovely day", images=(sign("GREAT"),)))
    assert set(result.by_modality) == {"text", "image"}
    assert result.by_modality["image"] == pytest.approx(fuse_views("image", result.by_view["image"], result.fusion))
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
    ngram = load_ngram().model.sha256
    heard = json.loads((ADAPTER_ROOT / "offline" / "syllables" / "manifest.json").read_text())
    syllables = f"{heard['sha256']['head.safetensors']}+{load_ngram(analyzer='syllables').model.sha256}"
    assert record["head"] == head and record["temperature"] == calibration["temperature"]
    assert record["ngram"] == ngram and record["syllables"] == syllables
    fitted = load_fusion("offline", head, calibration["temperature"], ngram, folder / "fusion.json", syllables)
    assert fitted.status == "fitted"
    # on the validation posts it was fitted on: every combination's log loss is no worse than its best
    # modality's, and a picture scores better read both ways than by its adapter prompt alone
    loss, accuracy = record["validation"]["fitted"]["log_loss"], record["validation"]["fitted"]["accuracy"]
    for together in subsets(("text", "image", "audio")):
        assert loss["+".join(together)] <= min(loss[m] for m in together)
    assert accuracy["image"] > accuracy["image:image"] and accuracy["text"] > accuracy["audio"]
    assert accuracy["audio:syllables"] > accuracy["audio:transcript"] + 0.2  # 0.735 against 0.443


def test_an_eval_record_keeps_the_views_the_fusion_is_fitted_on(tiny_platform, tmp_path):
    """bench/sentiment_fusion.py fits the view weights on these records: without them it could only refit
    the modality weights."""
    from polyglm.evaluation.manifest import Row
    from polyglm.evaluation.predictors import SentimentPredictor
    from polyglm.evaluation.tasks import load_task

    sign("SO HAPPY TODAY").save(tmp_path / "card.png")
    row = Row(id="card", images=(str(tmp_path / "card.png"),), label="positive")
    [record] = SentimentPredictor(tiny_platform, load_task("sentiment")).predict([row])
    views = record["views"]["image"]
    assert set(views) == {"image", "ocr"}
    fused = fuse_views("image", views, Fusion())
    assert [record["probabilities"][k] for k in LABELS] == pytest.approx([fused[k] for k in LABELS], abs=1e-5)
