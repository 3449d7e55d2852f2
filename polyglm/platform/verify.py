"""`polyglm models verify`: prove each part of a profile with a real output, not just a load.

- language model: answers "What is the capital of France?" with Paris, in the profile's first language
- speech: transcribes an espeak-ng clip of a known sentence with WER <= 0.25
- vision: top-5 for scikit-image's `coffee` photo holds a coffee-related ImageNet class
- embedding: ranks a paraphrase above an unrelated sentence
- ocr: reads back a line of text rendered with PIL
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from polyglm.platform.engine import GenerationOptions
from polyglm.platform.errors import VerifyError
from polyglm.platform.loader import Platform

SPEECH_SENTENCE = "The weather is lovely today and we are going to the park."
MAX_WER = 0.25
COFFEE_CLASSES = ("espresso", "cup", "coffee mug", "coffeepot", "espresso maker", "eggnog")
OCR_TEXT = "POLYGLM 2026"


@dataclass(frozen=True)
class CheckResult:
    role: str  # which part was checked
    passed: bool
    detail: str  # what it produced, for humans
    seconds: float  # load + check time


CAPITAL_OF_FRANCE = {"en": ("What is the capital of France?", "paris"), "zh": ("法国的首都是哪里？", "巴黎")}


def check_language_model(platform: Platform) -> tuple[bool, str]:
    from polyglm.pipelines.chat import reply

    question, expected = CAPITAL_OF_FRANCE.get(platform.profile.languages[0], CAPITAL_OF_FRANCE["en"])
    answer = reply(platform, [{"role": "user", "content": question}], GenerationOptions(max_new_tokens=24))
    return expected in answer.lower(), f"answer: {answer.strip()!r}"


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    def normalise(text: str) -> str:
        return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).strip()

    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


def speak(text: str, out_wav: Path, voice: str = "en-us") -> Path:
    """A real speech clip from espeak-ng (Debian package); clear error when it is missing."""
    if shutil.which("espeak-ng") is None:
        raise VerifyError("espeak-ng is not installed; run `apt-get install espeak-ng` (make install does it)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(out_wav), text], check=True, capture_output=True)
    return out_wav


def check_speech(platform: Platform) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        clip = speak(SPEECH_SENTENCE, Path(tmp) / "clip.wav")
        result = platform.speech.transcribe(str(clip), language="en")
    wer = word_error_rate(SPEECH_SENTENCE, result["text"])
    return wer <= MAX_WER, f"WER {wer:.2f} (max {MAX_WER}): {result['text'].strip()!r}"


def check_vision(platform: Platform) -> tuple[bool, str]:
    from PIL import Image
    from skimage import data

    top5 = platform.vision.classify([Image.fromarray(data.coffee())], top_k=5)[0]
    names = ", ".join(f"{label} {prob:.2f}" for label, prob in top5)
    hit = any(any(c in label.lower() for c in COFFEE_CLASSES) for label, _ in top5)
    return hit, f"coffee photo top-5: {names}"


def check_embedding(platform: Platform) -> tuple[bool, str]:
    anchor = "How do I get my money back for a broken kettle?"
    paraphrase = "I want a refund because the kettle I bought does not work."
    unrelated = "The football match was postponed because of heavy snow."
    vectors = platform.embedder.embed([anchor, paraphrase, unrelated])
    near, far = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    return near > far, f"cosine paraphrase {near:.3f} vs unrelated {far:.3f}"


def render_text_image(text: str):
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (max(640, 40 * len(text) + 60), 160), "white")  # wide enough for the whole line
    ImageDraw.Draw(image).text((30, 40), text, fill="black", font=ImageFont.load_default(size=64))
    return image


def check_ocr(platform: Platform) -> tuple[bool, str]:
    lines = platform.ocr.read(render_text_image(OCR_TEXT))
    found = " ".join(text for text, _ in lines)
    return found.replace(" ", "") == OCR_TEXT.replace(" ", ""), f"read: {found!r}"


CHECKS: dict[str, Callable[[Platform], tuple[bool, str]]] = {
    "language_model": check_language_model,
    "speech": check_speech,
    "vision": check_vision,
    "embedding": check_embedding,
    "ocr": check_ocr,
}


def verify_platform(platform: Platform, on_result: Callable[[CheckResult], None] = lambda r: None) -> list[CheckResult]:
    results = []
    for role in (r for r in CHECKS if r in platform.profile.parts):
        started = time.perf_counter()
        passed, detail = CHECKS[role](platform)
        results.append(CheckResult(role, passed, detail, time.perf_counter() - started))
        on_result(results[-1])
    return results
