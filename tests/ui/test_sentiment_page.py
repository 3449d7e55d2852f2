"""The Sentiment page through AppTest on the tiny profile: a real analysis of text + an image + a voice note,
the social_sentiment pack's extras, and every kind of bad input as one clear message."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.ui.test_app import _app, _png_with_text, _wav


def _chart(at: AppTest) -> dict[str, float]:
    """label -> probability as plotted by the page's bar chart."""
    import pyarrow as pa

    [chart] = at.get("vega_lite_chart")
    table = pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()
    return dict(zip(table["label"], table["probability"], strict=True))


def _analyse(at: AppTest, text: str = "", files: list | None = None, voice: bytes | None = None) -> AppTest:
    at.text_area(key="sentiment_text").set_value(text)
    at.file_uploader(key="sentiment_files").set_value(files or None)
    recorder = at.audio_input(key="sentiment_voice")
    recorder.upload("recording.wav", voice) if voice else recorder.clear()
    at.button(key="sentiment_run").click().run()
    assert not at.exception, at.exception
    return at


def test_text_an_image_and_a_voice_note_give_label_bars_attribution_and_evidence(tiny_platform):
    at = _app("sentiment")
    assert at.title[0].value == "Sentiment" and at.info  # the hint before any analysis
    files = [("sign.png", _png_with_text("GREAT DAY"), "image/png"), ("note.wav", _wav(0.5), "audio/wav")]
    _analyse(at, "I love this so much", files)
    assert not at.error, at.error[0].value
    shown = at.session_state["sentiment_result"]
    result = shown.result
    assert result.modalities == ("text", "image", "audio")  # all three reached the pipeline
    assert (shown.image_names, shown.audio_names) == (("sign.png",), ("note.wav",))
    # label and probability bars: exactly the pipeline's calibrated probabilities
    [metric] = at.metric
    assert metric.value == result.label == max(result.probabilities, key=result.probabilities.get)
    assert _chart(at) == pytest.approx(result.probabilities)
    assert list(_chart(at)) == ["negative", "neutral", "positive"]
    line = " · ".join(f"{k} {100 * v:.1f} %" for k, v in result.probabilities.items())
    assert line in [c.value for c in at.caption]
    assert any(c.value.startswith("Uncalibrated: no calibration fitted for profile 'tiny'") for c in at.caption)
    # per modality: what each says alone and how the label moves when it is left out
    table = at.dataframe[0].value
    label = result.label
    assert list(table["modality"]) == ["text", "image", "audio"]
    alone = result.attribution["alone"]
    assert list(table[f"P({label}) alone"]) == [round(alone[m][label], 4) for m in result.modalities]
    assert list(table["change without it"]) == [
        round(result.attribution["change_without"][m], 4) for m in result.modalities
    ]
    # the picture was read two ways (its prompt, its OCR text as a post), and the page says how each read it
    assert set(result.by_view["image"]) == {"image", "ocr"}
    assert f"Images read as: {result.views_read('image')}" in [c.value for c in at.caption]
    assert f"Combined with weights {result.weights_used()}" in [c.value for c in at.caption]
    # evidence: the OCR text under the image's name, the transcript under the voice note's
    ocr, transcripts = at.expander
    assert ocr.label == "Text in the images (OCR)" and ocr.markdown[0].value == "**sign.png**"
    assert ocr.text[0].value.replace(" ", "").upper() == "GREATDAY"
    assert transcripts.label == "Transcripts of the voice notes" and transcripts.markdown[0].value == "**note.wav**"
    assert transcripts.text[0].value == (result.evidence["transcripts"][0].strip() or "(nothing read)")


def test_the_social_sentiment_pack_adds_intensity_emotion_and_its_guideline(tiny_platform):
    at = _app("sentiment")
    at.checkbox(key="sentiment_pack").check()
    _analyse(at, "Best concert of my life, thank you all!")
    assert not at.error, at.error[0].value
    result = at.session_state["sentiment_result"].result
    assert result.scenario == "social_sentiment" and result.intensity and result.emotion
    shown = {m.label: m.value for m in at.metric}
    assert shown["Intensity (1-5)"] == result.intensity and shown["Emotion"] == result.emotion
    assert shown["Polarity (pack)"] == result.pack_labels["polarity"]["label"]
    [guideline] = at.expander
    passage = result.evidence["guideline"]
    assert guideline.label == f"Guideline: {passage['title']} [{passage['citation']}]"
    assert guideline.markdown[0].value == passage["text"]
    assert "Only text carried something: nothing to attribute." in [c.value for c in at.caption]


BAD = {
    "nothing given": ({}, "nothing to analyse: no input was given"),
    "empty text": ({"text": "   "}, "nothing to analyse: the text is empty"),
    "unreadable file": ({"files": [("photo.png", b"\x89PNG\r\n\x1a\n not really", "image/png")]}, "photo.png"),
    "wrong type": (
        {"files": [("report.png", b"%PDF-1.7", "application/pdf")]},
        "report.png: the browser sent it as application/pdf, not an image or a voice note",
    ),
    "lying extension": ({"files": [("voice.wav", _png_with_text("X"), "audio/wav")]}, "voice.wav"),
    "silent recording": ({"voice": _wav(amplitude=0.0)}, "recording.wav contains only silence"),
    "image without text": (
        {"files": [("blank.png", _png_with_text(""), "image/png")]},
        "blank.png: no text in it (OCR found none), and profile 'tiny' has no trained image adapter",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_message_and_the_page_goes_on(tiny_platform, case):
    given, expected = BAD[case]
    at = _app("sentiment")
    _analyse(at, "Fine weather today", [("sign.png", _png_with_text("SALE"), "image/png")])  # an earlier result
    assert at.metric and not at.error
    _analyse(at, **given)
    assert len(at.error) == 1 and expected in at.error[0].value, at.error[0].value if at.error else "no error"
    assert not at.metric and "sentiment_result" not in at.session_state  # no stale result beside the error
    _analyse(at, "What a lovely day")  # the next request works
    assert not at.error and at.metric[0].value in ("negative", "neutral", "positive")


def test_a_post_that_repeats_a_training_post_shows_its_labelled_copies(tiny_platform):
    from polyglm.pipelines.sentiment_memory import load_memory

    text = next(t for t, c in load_memory().counts.items() if c == {"positive": 2})
    at = _analyse(_app("sentiment"), text)
    result = at.session_state["sentiment_result"].result
    assert result.label == "positive"
    assert "Text: its words stand on 2 labelled posts: positive 2" in [c.value for c in at.caption]
