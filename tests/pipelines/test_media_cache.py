"""Encoder features, OCR text and transcripts are cached by content: a rerun over the same media does none of it."""

import numpy as np
import torch
from PIL import Image, ImageDraw

from polyglm.pipelines.attachments import cached_encoder_features, read_attachments


def _fresh_media():
    rng = np.random.default_rng()  # unseeded: content no earlier run has cached
    image = Image.fromarray(rng.integers(0, 255, (48, 96, 3), dtype=np.uint8))
    ImageDraw.Draw(image).text((4, 16), "SALE 50", fill=(0, 0, 0))
    clip = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    return image, clip


def test_the_second_read_of_the_same_media_computes_nothing_and_gives_the_same(tiny_platform, monkeypatch):
    image, clip = _fresh_media()
    calls = {"encode": 0, "ocr": 0, "transcribe": 0}
    for part, method, name in ((tiny_platform.vision, "encode", "encode"), (tiny_platform.ocr, "read", "ocr"),
                               (tiny_platform.speech, "transcribe", "transcribe")):  # fmt: skip
        real = getattr(part, method)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(part, method, counted)
    # (the tiny profile has no adapters, so read_attachments reads text only; features are asked directly)
    first = read_attachments(tiny_platform, [image], [clip])
    features = cached_encoder_features(tiny_platform, "image", [image])
    assert calls == {"encode": 1, "ocr": 1, "transcribe": 1}
    second = read_attachments(tiny_platform, [image.copy()], [clip.copy()])
    again = cached_encoder_features(tiny_platform, "image", [image.copy()])
    assert calls == {"encode": 1, "ocr": 1, "transcribe": 1}  # all three came from the cache
    assert (first.ocr, first.transcripts) == (second.ocr, second.transcripts)
    assert torch.equal(features[0], again[0]) and features[0].dtype == torch.float32
    other = image.copy()
    other.putpixel((0, 0), (1, 2, 3))  # one pixel differs: a miss
    read_attachments(tiny_platform, [other], [])
    cached_encoder_features(tiny_platform, "image", [other])
    assert calls["encode"] == 2 and calls["ocr"] == 2
