"""Sentiment: a post's text, images and voice notes -> negative / neutral / positive, and why.

Thin over pipelines/sentiment.py: the page gathers the inputs (typed text, uploaded or dropped files, a
voice note recorded with st.audio_input, a photo from st.camera_input), decodes the files through
pipelines/attachments.py (so the size, format, content and silence checks are media.py's own), calls
`analyse` once and draws what it returns: the label, every label's probability as bars, what each
modality says alone and what changes when it is left out, the OCR text and transcripts the model read,
and with the social_sentiment pack its intensity, emotion and nearest guideline passage. Any refusal
(nothing given, an unreadable or wrongly typed file, silence, an image with no text and no adapter) is
one message; the page and the server stay up. The last result stays in st.session_state (per user).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from polyglm.pipelines.attachments import decode_uploads
from polyglm.pipelines.sentiment import LABELS, SentimentInput, SentimentResult, analyse
from polyglm.platform.errors import PolyglmError
from polyglm.platform.media import IMAGE_EXTENSIONS
from polyglm.ui import PageSpec
from polyglm.ui.assistants_page import ATTACHABLE, media_uploads
from polyglm.ui.state import current_platform, show_error, show_failure

PACK = "social_sentiment"  # the optional scenario pack: intensity, emotion, guideline passage
RESULT_KEY = "sentiment_result"  # the last Shown, per browser session
LONG_EVIDENCE = 600  # characters of OCR text or transcript shown in a scrolling box beyond this
MODALITY_NAMES = {"text": "text", "image": "images", "audio": "voice notes"}


@dataclass(frozen=True)
class Shown:
    """One analysis as the page keeps it: the pipeline's result and the file names it came from."""

    result: SentimentResult
    image_names: tuple[str, ...]
    audio_names: tuple[str, ...]


def _inputs() -> tuple[str, list, bool, bool]:
    """(text, uploaded files incl. recordings, use the pack, attribution) from the widgets."""
    text = st.text_area("Post text", key="sentiment_text", height=110,
                        placeholder="Type or paste the post (any language the model reads)")  # fmt: skip
    files = st.file_uploader("Images and voice notes (drop several)", type=ATTACHABLE, accept_multiple_files=True,
                             key="sentiment_files")  # fmt: skip
    left, right = st.columns(2)
    voice = left.audio_input("Record a voice note", key="sentiment_voice")
    camera = right.toggle("Camera", key="sentiment_camera")
    photo = right.camera_input("Photo", key="sentiment_photo") if camera else None
    pack = st.checkbox(f"Social-media pack ({PACK}): intensity, emotion, guideline passage", key="sentiment_pack")
    attribution = st.checkbox("Per-modality attribution (each modality alone, and the rest without it)", True,
                              key="sentiment_attribution")  # fmt: skip
    return text, [*(files or []), *(f for f in (voice, photo) if f is not None)], pack, attribution


def _analyse(text: str, files: list, pack: bool, attribution: bool) -> Shown:
    uploads = media_uploads(files, verb="upload")
    images, clips = decode_uploads(uploads)  # media.py's checks: size, format, lying extension, silence
    image_names = tuple(n for n, _ in uploads if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
    audio_names = tuple(n for n, _ in uploads if Path(n).suffix.lower() not in IMAGE_EXTENSIONS)
    item = SentimentInput(text=text, images=tuple(images), audio=tuple(clips), image_names=image_names,
                          audio_names=audio_names)  # fmt: skip
    platform = current_platform()
    with st.spinner("Reading the attachments and scoring the labels…"):
        result = analyse(platform, item, scenario=PACK if pack else None, attribution=attribution)
    return Shown(result, image_names, audio_names)


def _percent(p: float) -> str:
    return f"{100 * p:.1f} %"


def _label(shown: Shown) -> None:
    result = shown.result
    st.metric("Sentiment", result.label, f"{_percent(result.probabilities[result.label])} probability",
              delta_color="off", delta_arrow="off")  # fmt: skip
    labels = [label for label in LABELS if label in result.probabilities] or list(result.probabilities)
    st.bar_chart({"label": labels, "probability": [result.probabilities[label] for label in labels]},
                 x="label", y="probability", horizontal=True, height=170)  # fmt: skip
    st.caption(" · ".join(f"{label} {_percent(result.probabilities[label])}" for label in labels),
               help="calibrated probabilities")  # fmt: skip
    calibration = result.calibration
    if calibration.status == "fitted":
        st.caption(f"Calibrated: scores divided by temperature {calibration.temperature:.3g} ({calibration.source})")
    else:
        st.caption(f"Uncalibrated: {calibration.status}")
    st.caption(f"Scored by: {result.scorer}")
    if weights := result.weights_used():
        st.caption(f"Combined with weights {weights}")
    st.caption(f"Read from: {', '.join(MODALITY_NAMES.get(m, m) for m in result.modalities)}")
    for modality, why in result.empty.items():
        st.info(f"{MODALITY_NAMES.get(modality, modality).capitalize()} carried nothing: {why}", icon=":material/info:")
    for note in result.notes:
        st.caption(f":material/info: {note}")


def _attribution(result: SentimentResult) -> None:
    view = result.attribution
    if not view:
        return
    st.subheader("Per modality")
    for modality in result.modalities:
        name = MODALITY_NAMES.get(modality, modality).capitalize()
        if line := result.views_read(modality):
            st.caption(f"{name} read as: {line}")
        if seen := result.copies_read(modality):
            st.caption(f"{name}: {seen}")
    if len(result.modalities) < 2:
        st.caption(f"Only {MODALITY_NAMES.get(result.modalities[0], result.modalities[0])} carried something: "
                   "nothing to attribute.")  # fmt: skip
        return
    label = result.label
    rows = []
    for modality in result.modalities:
        alone = view["alone"][modality]
        without = view["without"].get(modality)
        rows.append({
            "modality": modality,
            "alone says": max(alone, key=alone.get),
            f"P({label}) alone": round(alone[label], 4),
            f"P({label}) without it": round(without[label], 4) if without else None,
            "change without it": round(view["change_without"].get(modality, 0.0), 4),
        })  # fmt: skip
    st.dataframe(rows, hide_index=True)
    st.caption(f"Together P({label}) = {view['together'][label]:.4f}. A negative change: leaving the modality out "
               "lowers the chosen label's probability, so it supported it.")  # fmt: skip


def _evidence(shown: Shown) -> None:
    result = shown.result
    names = {"ocr": shown.image_names, "transcripts": shown.audio_names, "syllables": shown.audio_names}
    for key, title, icon in (
        ("ocr", "Text in the images (OCR)", ":material/document_scanner:"),
        ("transcripts", "Transcripts of the voice notes", ":material/record_voice_over:"),
        ("syllables", "Syllables heard in the voice notes (pinyin, toneless)", ":material/graphic_eq:"),
    ):
        texts = result.evidence.get(key) or []
        if not texts:
            continue
        with st.expander(title, icon=icon, expanded=True):
            for number, text in enumerate(texts):
                name = names[key][number] if number < len(names[key]) else f"{key} {number + 1}"
                st.markdown(f"**{name}**")
                long = len(text) > LONG_EVIDENCE
                with st.container(height=220 if long else "content", border=long):  # a long transcript scrolls
                    st.text(text.strip() or "(nothing read)")
    guideline = result.evidence.get("guideline")
    if guideline:
        with st.expander(f"Guideline: {guideline['title']} [{guideline['citation']}]", icon=":material/menu_book:"):
            st.markdown(guideline["text"])


def _pack(result: SentimentResult) -> None:
    if not result.scenario:
        return
    st.subheader(f"Pack `{result.scenario}`")
    left, middle, right = st.columns(3)
    polarity = result.pack_labels.get("polarity", {}).get("label")
    left.metric("Polarity (pack)", polarity or "n/a")
    middle.metric("Intensity (1-5)", result.intensity or "n/a")
    right.metric("Emotion", result.emotion or "n/a")
    for name, scored in result.pack_labels.items():
        probs = scored.get("probabilities") or {}
        if probs:
            st.caption(f"{name}: " + " · ".join(f"{k} {_percent(v)}" for k, v in probs.items()))


def _show(shown: Shown) -> None:
    _label(shown)
    _pack(shown.result)
    _attribution(shown.result)
    _evidence(shown)


def render() -> None:
    st.title("Sentiment")
    st.caption("negative / neutral / positive for a post of text, images and voice notes in any mix; each label "
               "scored by the language model in one pass (no generated text to parse).")  # fmt: skip
    inputs, results = st.columns([1, 1], gap="large")
    with inputs:
        text, files, pack, attribution = _inputs()
        pressed = st.button("Analyse", type="primary", icon=":material/insights:", key="sentiment_run")
    with results:
        if pressed:
            st.session_state.pop(RESULT_KEY, None)  # a refused input never sits beside an older result
            try:
                st.session_state[RESULT_KEY] = _analyse(text, files, pack, attribution)
            except PolyglmError as exc:
                show_error(exc)
            except Exception as exc:  # shown with its traceback; the session and the server go on
                show_failure(exc)
        shown = st.session_state.get(RESULT_KEY)
        if shown is not None:
            _show(shown)
        elif not pressed:
            st.info("Type a post, add images or voice notes (or record one), then press Analyse.",
                    icon=":material/arrow_back:")  # fmt: skip


PAGE = PageSpec(title="Sentiment", icon=":material/sentiment_satisfied:", url_path="sentiment", order=20,
                render=render)  # fmt: skip
