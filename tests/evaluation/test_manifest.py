"""Manifests: CSV, JSONL and imagefolder layouts; every bad row recorded with its reason, the rest kept."""

import json
from pathlib import Path

import pytest
from PIL import Image

from polyglm.evaluation.manifest import Columns, Target, read_manifest
from polyglm.platform.errors import InputError

SENTIMENT = Target(labels=("negative", "neutral", "positive"))


def _png(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)
    return path


def test_a_csv_with_every_kind_of_bad_row_keeps_the_good_ones(tmp_path):
    _png(tmp_path / "photos" / "cake.png")
    (tmp_path / "voice.wav").write_bytes(b"RIFF")  # exists: decoding problems are the predictor's
    (tmp_path.parent / "secret.png").write_bytes(b"x")
    (tmp_path / "data.csv").write_text(
        "id,text,image,audio,label\n"
        "a,Loved it,photos/cake.png,,positive\n"
        "b,,photos/cake.png;photos/cake.png,voice.wav,negative\n"
        "c,Meh,,,so-so\n"  # unknown label
        "d,Hi,../secret.png,,neutral\n"  # escapes the folder
        "e,Hi,photos/missing.png,,neutral\n"  # missing file
        "f,,,,neutral\n"  # no input at all
        "a,again,,,positive\n"  # duplicate id
        'g,"unclosed, quote,positive\n',  # malformed: runs to the end of the file
        encoding="utf-8",
    )
    manifest = read_manifest(tmp_path / "data.csv", Columns(), SENTIMENT)
    assert [r.id for r in manifest.rows] == ["a", "b"]
    assert manifest.rows[1].images == (str(tmp_path / "photos/cake.png"),) * 2
    assert manifest.rows[1].audio == (str(tmp_path / "voice.wav"),) and manifest.rows[1].label == "negative"
    reasons = {b.id: b.reason for b in manifest.bad}
    assert "unknown label 'so-so'" in reasons["c"]
    assert "outside the manifest's folder" in reasons["d"]
    assert "does not exist" in reasons["e"]
    assert "no usable input" in reasons["f"]
    assert "duplicate id 'a' (first on line 2)" in reasons["a@line8"]
    assert "malformed CSV line" in reasons["row-9"]


def test_a_csv_line_with_too_many_fields_is_a_bad_row_not_a_failed_file(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\nfine,positive\ntoo,many,fields\nalso fine,negative\n")
    manifest = read_manifest(tmp_path / "d.csv", Columns(), SENTIMENT)
    assert [r.text for r in manifest.rows] == ["fine", "also fine"]
    assert [r.id for r in manifest.rows] == ["row-2", "row-4"]  # named by line when there is no id column
    assert "3 fields where the header has 2" in manifest.bad[0].reason


def test_jsonl_rows_take_lists_of_media_and_scores_in_range(tmp_path):
    _png(tmp_path / "a.png")
    lines = [
        {"id": 1, "text": "ok", "image": ["a.png", "a.png"], "score": 2.5},
        {"id": 2, "text": "too high", "score": 4},
        {"id": 3, "text": "not a number", "score": "high"},
        [1, 2],
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    manifest = read_manifest(tmp_path / "d.jsonl", Columns(), Target(score_range=3))
    assert [(r.id, r.score, len(r.images)) for r in manifest.rows] == [("1", 2.5, 2)]
    reasons = [b.reason for b in manifest.bad]
    assert "outside [-3, 3]" in reasons[0] and "not a number" in reasons[1]
    assert "must be an object" in reasons[2] and "not valid JSON" in reasons[3]


def test_task_columns_rename_what_is_read(tmp_path):
    (tmp_path / "d.csv").write_text("review,stars\nGreat,positive\n")
    manifest = read_manifest(tmp_path / "d.csv", Columns(text="review", label="stars"), SENTIMENT)
    assert (manifest.rows[0].text, manifest.rows[0].label) == ("Great", "positive")


def test_imagefolder_labels_come_from_sub_folders_through_datasets(tmp_path):
    for label in ("negative", "positive"):
        for i in range(2):
            _png(tmp_path / "imgs" / label / f"{i}.png")
    manifest = read_manifest(tmp_path / "imgs", Columns(), SENTIMENT)
    assert manifest.layout == "imagefolder" and len(manifest.rows) == 4 and not manifest.bad
    assert sorted(r.label for r in manifest.rows) == ["negative", "negative", "positive", "positive"]
    assert all(r.images[0].startswith(str((tmp_path / "imgs").resolve())) for r in manifest.rows)


def test_imagefolder_metadata_with_a_bad_line_is_read_row_by_row(tmp_path):
    folder = tmp_path / "imgs"
    _png(folder / "a.png")
    _png(folder / "b.png")
    (folder / "metadata.jsonl").write_text(
        '{"file_name": "a.png", "text": "caption a", "label": "positive"}\n{oops\n'
        '{"file_name": "b.png", "label": "negative"}\n'
    )
    manifest = read_manifest(folder, Columns(), SENTIMENT)
    assert [(r.text, r.label) for r in manifest.rows] == [("caption a", "positive"), ("", "negative")]
    assert len(manifest.bad) == 1 and "not valid JSON" in manifest.bad[0].reason


def test_the_digest_changes_when_a_photo_changes_and_not_when_the_folder_moves(tmp_path):
    photo = _png(tmp_path / "one" / "p.png")
    (tmp_path / "one" / "d.csv").write_text("text,image\nhi,p.png\n")
    first = read_manifest(tmp_path / "one" / "d.csv").digest
    (tmp_path / "one").rename(tmp_path / "two")
    assert read_manifest(tmp_path / "two" / "d.csv").digest == first
    _png(tmp_path / "two" / "p.png", colour=(0, 0, 255))
    assert read_manifest(tmp_path / "two" / "d.csv").digest != first
    assert photo.name == "p.png"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "text,label\n", "has no rows"),
        ("data.xlsx", "x", "polyglm reads .csv, .jsonl"),
        ("nothing", None, "does not exist"),
    ],
)
def test_an_unusable_manifest_is_one_clear_error(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        read_manifest(tmp_path / name)


def test_audiofolder_with_metadata_csv_reads_clips_and_text(tmp_path):
    import numpy as np
    import soundfile as sf

    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.wav", "b.flac"):
        sf.write(folder / name, np.zeros(1600, dtype=np.float32), 16000)
    (folder / "metadata.csv").write_text("file_name,text,label\na.wav,hello,neutral\nb.flac,,positive\n")
    manifest = read_manifest(folder, Columns(), SENTIMENT)
    assert manifest.layout == "audiofolder" and not manifest.bad
    assert sorted((Path(r.audio[0]).name, r.text, r.label) for r in manifest.rows) == [
        ("a.wav", "hello", "neutral"), ("b.flac", "", "positive")]  # fmt: skip
