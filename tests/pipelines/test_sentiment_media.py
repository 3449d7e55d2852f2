"""The social_sentiment pack's generated images must not give the label away through their background."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

PACK = Path(__file__).resolve().parents[2] / "polyglm" / "scenarios" / "packs" / "social_sentiment"


def background(path: Path) -> np.ndarray:
    """Mean RGB of the four corner patches (the gradient; the face sits in the middle)."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    corners = [pixels[:10, :10], pixels[:10, -10:], pixels[-10:, :10], pixels[-10:, -10:]]
    return np.concatenate([c.reshape(-1, 3).mean(0) for c in corners])


def test_background_colour_does_not_predict_the_label():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    posts = [json.loads(line) for line in (PACK / "data" / "posts.jsonl").read_text().splitlines() if line]
    with_images = [p for p in posts if p.get("image")]
    assert len(with_images) > 150
    colours = np.stack([background(PACK / p["image"]) for p in with_images])
    labels = np.array([p["polarity"] for p in with_images])
    majority = max(np.mean(labels == label) for label in set(labels))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = cross_val_score(model, colours, labels, cv=5).mean()
    # A label-coloured background (the old cards: warm positive, grey neutral, cool or dark negative) is read
    # at ~0.9; independent of the label, the colour does no better than always answering the majority label.
    assert accuracy < majority + 0.08, (accuracy, majority)


def test_background_colours_ignore_the_labels():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_media", PACK / "data" / "make_media.py")
    make_media = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_media)
    post = {"id": "post-0001", "polarity": "positive", "emotion": "joy", "intensity": 5, "image_hint": "a bowl"}
    sad = {**post, "polarity": "negative", "emotion": "sadness", "intensity": 1}
    picture = np.asarray(make_media.render_image(post), dtype=float)
    other = np.asarray(make_media.render_image(sad), dtype=float)
    assert np.array_equal(picture[:8, :8], other[:8, :8])  # same corner: only the face differs
    assert not np.array_equal(picture, other)
