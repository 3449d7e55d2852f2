"""The sentiment pipeline on the tiny profile: result shape, attribution, calibration, bad input, the CLI."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from polyglm.pipelines.sentiment import (
    LABELS,
    SentimentInput,
    analyse,
    analyse_batch,
    calibrated,
    fit_temperature,
    load_calibration,
    prompt_fingerprint,
)
from polyglm.platform.errors import InputError
from tests.pipelines.test_label_scoring import media_platform, sign, spoken  # noqa: F401  (fixture)


def blank_png(tmp_path, name: str = "plain.png"):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (160, 160), (90, 140, 200))
    ImageDraw.Draw(image).ellipse((40, 40, 120, 120), fill=(250, 220, 60))  # a shape, no text
    image.save(tmp_path / name)
    return tmp_path / name


def test_text_only_result(tiny_platform):
    result = analyse(tiny_platform, SentimentInput(text="The food was wonderful!"))
    assert result.label in LABELS and list(result.probabilities) == list(LABELS)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert result.modalities == ("text",) and result.empty == {}
    assert result.attribution["together"] == result.probabilities and result.attribution["alone"]["text"]
    # no calibration ships for the tiny profile: raw scores, and the status says how to fit one
    assert result.calibration.temperature == 1.0
    assert "bench/sentiment_calibrate.py --profile tiny" in result.calibration.status
    json.dumps(result.as_dict())  # serialisable as the CLI and the API print it


def test_attribution_scores_each_modality_alone_together_and_left_out(media_platform, tmp_path):  # noqa: F811
    image, clip = sign("CLOSED MONDAY"), spoken(tmp_path, "I am so happy today")
    item = SentimentInput(text="Guess what happened", images=(image,), audio=(clip,))
    result = analyse(media_platform, item)
    assert result.modalities == ("text", "image", "audio")
    view = result.attribution
    assert set(view["alone"]) == set(view["without"]) == {"text", "image", "audio"}
    # each "alone" row is what the pipeline says about that modality on its own
    for modality, alone in (("text", SentimentInput(text=item.text)), ("image", SentimentInput(images=(image,))),
                            ("audio", SentimentInput(audio=(clip,)))):  # fmt: skip
        own = analyse(media_platform, alone).probabilities
        assert [view["alone"][modality][k] for k in LABELS] == pytest.approx([own[k] for k in LABELS], abs=1e-4)
    for modality, without in view["without"].items():
        expected = without[result.label] - result.probabilities[result.label]
        assert view["change_without"][modality] == pytest.approx(expected)
    assert result.evidence["ocr"] == ["CLOSED MONDAY"] and result.evidence["transcripts"][0].strip()
    # a batch gives what single posts give
    [first, second] = analyse_batch(media_platform, [item, SentimentInput(text="meh")], batch_size=3)
    assert [first.probabilities[k] for k in LABELS] == pytest.approx([result.probabilities[k] for k in LABELS],
                                                                      abs=1e-4)  # fmt: skip
    assert second.modalities == ("text",)


def test_two_modalities_left_out_is_the_other_alone(media_platform):  # noqa: F811
    result = analyse(media_platform, SentimentInput(text="nice", images=(sign("OK"),)))
    view = result.attribution
    assert view["without"]["text"] == view["alone"]["image"] and view["without"]["image"] == view["alone"]["text"]


def test_fit_temperature_recovers_the_temperature_of_synthetic_scores():
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 3, generator=generator) * 2
    gold = torch.multinomial(true_logits.softmax(-1), 1, generator=generator).squeeze(1)
    overconfident = (true_logits * 2.5).tolist()  # a model 2.5x too sure of itself
    assert fit_temperature(overconfident, gold.tolist()) == pytest.approx(2.5, rel=0.08)
    assert calibrated({"a": 2.0, "b": 0.0}, 2.0)["a"] == pytest.approx(1 / (1 + math.exp(-1.0)))


def test_calibration_for_another_lm_prompt_or_head_is_ignored_with_the_reason(tiny_platform, tmp_path):
    from polyglm.platform.multimodal import part_identity

    lm_id, lm_hash = part_identity(tiny_platform, "language_model")
    path = tmp_path / "calibration.json"
    fitted = {"temperature": 2.0, "lm_id": lm_id, "lm_hash": lm_hash, "prompt": prompt_fingerprint(), "head": "ab" * 32}
    path.write_text(json.dumps(fitted))
    assert load_calibration(tiny_platform, "ab" * 32, path).temperature == 2.0
    path.write_text(json.dumps(fitted | {"lm_id": "x", "lm_hash": "0123"}))
    other = load_calibration(tiny_platform, "ab" * 32, path)
    assert other.temperature == 1.0 and f"fitted for x (weights 0123), not {lm_id} (weights {lm_hash})" in other.status
    path.write_text(json.dumps(fitted | {"prompt": "old"}))
    assert "another sentiment prompt" in load_calibration(tiny_platform, "ab" * 32, path).status
    path.write_text(json.dumps(fitted))
    for head, now in (("cd" * 32, "head cdcdcdcdcdcd"), (None, "label-word scores")):
        refused = load_calibration(tiny_platform, head, path)
        assert refused.temperature == 1.0 and f"fitted for head abababababab, not {now}" in refused.status


def test_the_shipped_offline_calibration_matches_the_prompt():
    """Editing the prompt without refitting would ship a temperature for another prompt."""
    from polyglm.platform.inventory import ADAPTER_ROOT

    record = json.loads((ADAPTER_ROOT / "offline" / "sentiment" / "calibration.json").read_text())
    assert record["prompt"] == prompt_fingerprint() and record["labels"] == list(LABELS)
    assert 0.05 < record["temperature"] < 20 and record["command"].startswith("python bench/sentiment_calibrate.py")
    head = ADAPTER_ROOT / "offline" / "sentiment" / "head" / "head.safetensors"
    assert record["head"] == (hashlib.sha256(head.read_bytes()).hexdigest() if head.is_file() else None)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (SentimentInput(), "nothing to analyse: no input was given"),
        (SentimentInput(text="   "), "nothing to analyse: the text is empty"),
        (SentimentInput(text="x" * 8_001), "the text is 8,001 characters; sentiment takes at most 8,000"),
    ],
)
def test_bad_input_is_refused_with_the_fix(tiny_platform, item, message):
    with pytest.raises(InputError, match=message):
        analyse(tiny_platform, item)


def test_an_image_without_text_and_audio_without_speech_say_they_carried_nothing(tiny_platform, tmp_path, monkeypatch):
    from polyglm.platform.media import load_image

    monkeypatch.setattr(tiny_platform.speech, "transcribe", lambda clip, *a, **k: {"text": " "})
    image = load_image(blank_png(tmp_path))
    hum = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16_000) / 16_000)).astype(np.float32)
    result = analyse(tiny_platform, SentimentInput(text="hm", images=(image,), audio=(hum,),
                                                   image_names=("plain.png",), audio_names=("hum.wav",)))  # fmt: skip
    assert result.modalities == ("text",)  # the tiny profile has no adapters: nothing else carried anything
    assert result.empty["image"].startswith("plain.png: no text in it (OCR found none)")
    assert result.empty["audio"].startswith("hum.wav: no speech heard")
    # with nothing but such files there is nothing to judge: a clear refusal, not a guess
    with pytest.raises(
        InputError, match=r"nothing to analyse: no text was given; plain.png: no text in it .* no trained image adapter"
    ):
        analyse(tiny_platform, SentimentInput(images=(image,), image_names=("plain.png",)))


def test_with_adapters_an_image_without_text_is_still_read(media_platform, tmp_path):  # noqa: F811
    from polyglm.platform.media import load_image

    result = analyse(media_platform, SentimentInput(images=(load_image(blank_png(tmp_path)),)))
    assert result.modalities == ("image",) and result.empty == {"text": "no text was given"}
    assert result.notes == ("image 1: no text in it (OCR found none); its adapter features are scored",)
    assert set(result.by_view["image"]) == {"image"}  # no words: nothing to read as a typed post


def test_a_picture_with_words_is_also_read_as_the_typed_post_of_its_words(media_platform):  # noqa: F811
    from polyglm.pipelines.sentiment_fusion import weighted_product

    result = analyse(media_platform, SentimentInput(images=(sign("WHAT A GREAT DAY"),)))
    views = result.by_view["image"]
    assert set(views) == {"image", "ocr"}
    [words] = result.evidence["ocr"]
    typed = analyse(media_platform, SentimentInput(text=words))
    assert views["ocr"] == pytest.approx(typed.by_modality["text"])
    assert views["image"] != pytest.approx(views["ocr"])  # the adapter prompt is another reading
    # no fusion fitted for tiny: the two readings of one picture count half each, not as two pieces of evidence
    assert result.by_modality["image"] == pytest.approx(weighted_product(views, {"image": 0.5, "ocr": 0.5}))
    assert result.probabilities == pytest.approx(result.by_modality["image"])


def test_the_pack_adds_intensity_emotion_and_its_guideline(tiny_platform):
    result = analyse(tiny_platform, SentimentInput(text="Worst customer service ever, I'm furious!!!"),
                     scenario="social_sentiment", attribution=False)  # fmt: skip
    assert result.intensity in {"1", "2", "3", "4", "5"}
    assert result.emotion in {"joy", "surprise", "anger", "sadness", "fear", "disgust", "neutral"}
    # the pack hands its polarity to this pipeline (label_scorers), so the two never disagree
    assert result.pack_labels["polarity"]["label"] == result.label
    assert result.pack_labels["polarity"]["probabilities"] == {k: round(v, 4) for k, v in result.probabilities.items()}
    assert result.evidence["guideline"]["citation"] and result.evidence["guideline"]["text"]


def test_cli_prints_json_and_refuses_bad_input(tiny_platform, tmp_path, monkeypatch, capsys):
    from polyglm import cli
    from polyglm.platform import loader

    monkeypatch.setattr(loader, "load_platform", lambda *args, **kwargs: tiny_platform)
    photo = tmp_path / "sign.png"
    sign("CLOSED MONDAY").save(photo)
    assert cli.main(["sentiment", "--profile", "tiny", "--text", "so happy", "--image", str(photo), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["label"] in LABELS and printed["evidence"]["ocr"] == ["CLOSED MONDAY"]
    assert printed["modalities"] == ["text", "image"]
    assert cli.main(["sentiment", "--profile", "tiny", "--text", "so happy"]) == 0
    assert capsys.readouterr().out.startswith(tuple(LABELS))
    assert cli.main(["sentiment", "--profile", "tiny", "--image", str(photo)]) == 0
    out = capsys.readouterr().out
    assert "combined with weights image 1.00 [image 0.50, ocr 0.50] (equal weights" in out
    assert "read as: image prompt " in out and " · its OCR text as a post " in out
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("just words")
    for args, message in (
        ([], "error: nothing to analyse: give --text T, --image PATH or --audio PATH"),
        (["--text", ""], "error: nothing to analyse: the text is empty"),
        (["--image", str(not_an_image)], "notes.png"),
        (["--audio", str(tmp_path / "missing.wav")], "missing.wav"),
    ):
        assert cli.main(["sentiment", "--profile", "tiny", *args]) == 2, args
        error = capsys.readouterr().err
        assert error.startswith("error: ") and message in error and "Traceback" not in error


def test_console_script_help_has_an_example():
    out = subprocess.run([sys.executable, "-m", "polyglm", "sentiment", "--help"], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0 and "example: polyglm sentiment" in out.stdout and "--scenario" in out.stdout
