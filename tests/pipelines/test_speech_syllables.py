"""The syllable head: its targets are what espeak-ng says, the trimmed encoder pass is Whisper's own on a full
window, training on spoken lines writes a head that loads only over whole files and its own encoder, and the
syllable n-gram model reads syllables."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from polyglm.pipelines import speech_syllables
from polyglm.pipelines.sentiment_head import Example
from polyglm.pipelines.sentiment_ngram import NgramOptions, fit, load_ngram, save, spelt
from polyglm.pipelines.speech_syllables import (
    SyllableOptions,
    espeak_syllables,
    load_syllables,
    syllables_from_units,
    train_syllables,
    units_of,
)
from tests.pipelines.test_label_scoring import media_platform  # noqa: F401  (fixture)


def test_the_targets_are_the_syllables_espeak_says_without_tones():
    said = espeak_syllables("服务太差了")
    assert said == ["fu", "wu", "thai", "ts.hA", "l@"]  # fú wù tài chà le
    assert espeak_syllables("服务太差了！") == said  # punctuation says nothing
    assert espeak_syllables("房间很好") != espeak_syllables("房间很差")


@pytest.mark.parametrize("text", ["当时是因为要写读书报告", "服务员态度恶劣，再也不来了", "我们2019年去过"])
def test_units_split_each_syllable_into_onset_and_rhyme_and_join_back(text):
    syllables = espeak_syllables(text)
    units = [u for s in syllables for u in units_of(s)]
    assert len(units) > len(syllables)  # most syllables have an onset
    assert syllables_from_units(units) == syllables
    assert units_of("ts.hA") == ("ts.h", "A") and units_of("@r") == ("@r",)


def test_a_trimmed_pass_over_a_full_window_is_whispers_own_encoder(tiny_platform):
    encoder = tiny_platform.speech
    clip = np.random.default_rng(0).normal(0, 0.1, 30 * 16_000).astype("float32")
    trimmed = encoder.encode_trimmed(clip)
    assert torch.allclose(trimmed, encoder.encode(clip)[0], atol=1e-3)
    short = encoder.encode_trimmed(clip[: 4 * 16_000])
    assert short.shape[0] == 200  # 50 frames/s of the clip itself, not 1500 for a padded window
    assert encoder.encode_trimmed(clip[:3000]).shape[0] >= 1


@pytest.fixture(scope="module")
def tiny_head(tiny_platform, tmp_path_factory):
    folder = tmp_path_factory.mktemp("syllables")
    options = SyllableOptions(lines=8, validation_lines=2, epochs=40, batch_size=4, min_count=1, lr=1e-2,
                              work_dir=folder / "work", out_dir=folder / "head")  # fmt: skip
    return train_syllables(tiny_platform, options), folder


def test_training_speaks_encodes_and_writes_a_head_that_hears_syllables(tiny_platform, tiny_head):
    manifest, folder = tiny_head
    assert manifest["data"]["train_clips"] == 8 and manifest["data"]["validation_clips"] == 2
    assert manifest["history"][0]["loss"] > manifest["history"][-1]["loss"]
    assert set(manifest["validation"]) == {"items", "unit_error_rate", "syllable_error_rate"}
    kept = torch.load(next((folder / "work" / "train").glob("*.pt")), weights_only=True)
    assert kept["syllables"] == espeak_syllables(kept["text"]) and kept["frames"].shape[1] == 64  # tiny-whisper
    loaded = load_syllables(tiny_platform, folder / "head")
    assert loaded.reader is not None, loaded.status
    clip = speech_syllables.speak("服务太差了", speech_syllables.VOICE, 165, 50)
    heard = loaded.reader.hear(tiny_platform.speech, clip)
    assert 0 <= heard.confidence <= 1 and speech_syllables.Heard.from_stored(heard.stored()) == heard
    assert set(heard.syllables.split()) <= {s for u in loaded.reader.units for s in syllables_from_units([u])} | {
        a + b for a in loaded.reader.units for b in loaded.reader.units
    }
    # a second run finds every clip kept and speaks nothing again
    before = sorted(p.stat().st_mtime_ns for p in (folder / "work").rglob("*.pt"))
    lines = speech_syllables.spoken_lines(SyllableOptions(lines=8, validation_lines=2))
    speech_syllables.make_frames(tiny_platform, lines, folder / "work", 0)
    assert sorted(p.stat().st_mtime_ns for p in (folder / "work").rglob("*.pt")) == before
    # another run's lines under the same numbers are spoken again, never read back as these
    other = speech_syllables.spoken_lines(SyllableOptions(lines=6, validation_lines=2))
    kept = speech_syllables.make_frames(tiny_platform, other, folder / "work", 0)
    assert [row["text"] for row in kept["train"]] == other["train"] != lines["train"][:6]


def test_a_damaged_or_foreign_head_is_refused_with_the_fix(tiny_platform, tiny_head, tmp_path):
    _, folder = tiny_head
    damaged = tmp_path / "head"
    shutil.copytree(folder / "head", damaged)
    (damaged / "head.safetensors").write_bytes(b"not a head")
    status = load_syllables(tiny_platform, damaged).status
    assert load_syllables(tiny_platform, damaged).reader is None
    assert "head.safetensors do not match the sha256" in status and "polyglm train-syllables --profile tiny" in status
    shutil.copy(folder / "head" / "head.safetensors", damaged / "head.safetensors")
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["encoder"]["weights"] = "0" * 64
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    assert "trained on encoder weights 000000000000" in load_syllables(tiny_platform, damaged).status
    shutil.rmtree(damaged)
    assert "voice notes are read by their transcript" in load_syllables(tiny_platform, damaged).status


def test_the_syllable_model_learns_from_what_is_said_and_reads_only_its_own_kind(tmp_path):
    said_as = {"房间很好": "positive", "房间很差": "negative", "早上开门": "neutral"}
    rows = [Example(f"{text}{i}", label, "test") for i in range(12) for text, label in said_as.items()]
    said = spelt(rows, "syllables")
    assert said[0].text == " ".join(espeak_syllables(rows[0].text)) and said[0].label == "positive"
    model = fit(said, NgramOptions(features=30, min_df=2, analyzer="syllables"))
    assert all(" " not in gram or len(gram.split()) <= 3 for gram in model.vocabulary)
    heard = model.probabilities([" ".join(espeak_syllables("很好")), " ".join(espeak_syllables("很差"))])
    assert [max(p, key=p.get) for p in heard] == ["positive", "negative"]
    save(model, tmp_path / "syllables", {})
    assert load_ngram(tmp_path / "syllables", analyzer="syllables").model is not None
    assert "its n-grams are 'syllables', not 'char'" in load_ngram(tmp_path / "syllables").status


def test_a_voice_note_is_heard_as_syllables_and_read_by_the_syllable_model(media_platform, tiny_head, monkeypatch):  # noqa: F811
    """The pipeline's wiring on the tiny profile (a head trained above, the shipped syllable n-gram model):
    the view, its evidence, and without a head a note that says why and no view."""
    from polyglm.pipelines.sentiment import SYLLABLES, UNSURE_SYLLABLES, SentimentInput, analyse

    _, folder = tiny_head
    clip = speech_syllables.speak("服务太差了，再也不来了", speech_syllables.VOICE, 165, 50)
    reader = load_syllables(media_platform, folder / "head").reader
    keys = ("sentiment_syllables", "sentiment_fusion")

    def judged(head_folder, min_confidence=0.0):  # a head on tiny random-weight frames is never sure
        monkeypatch.setattr(speech_syllables, "syllables_dir", lambda profile: head_folder)
        monkeypatch.setattr(speech_syllables, "MIN_CONFIDENCE", min_confidence)
        for key in keys:
            media_platform.forget(key)
        try:
            return analyse(media_platform, SentimentInput(audio=(clip,)))
        finally:
            for key in keys:
                media_platform.forget(key)

    result = judged(folder / "head")
    heard = reader.hear(media_platform.speech, clip).syllables
    assert result.evidence["syllables"] == [heard]
    model = load_ngram(analyzer="syllables").model
    assert result.by_view["audio"][SYLLABLES] == pytest.approx(model.probabilities([heard])[0])
    assert not any("syllable" in note for note in result.notes)
    unsure = judged(folder / "head", min_confidence=1.01)
    assert SYLLABLES not in unsure.by_view["audio"] and UNSURE_SYLLABLES in unsure.notes
    without = judged(folder / "none")
    assert SYLLABLES not in without.by_view["audio"] and "syllables" not in without.evidence
    assert any("no syllable head for profile 'tiny'" in note for note in without.notes)
