"""A user's dataset as rows: CSV, JSONL, or a folder in Hugging Face `datasets` imagefolder/audiofolder layout.

Every row is checked on its own. A row that cannot be used (a malformed CSV line, bad JSON, a missing or
escaping file path, no usable input, an unknown label, a score out of range, a duplicate id) becomes a
`BadRow` with the reason, and the others are still scored. Paths are relative to the manifest's folder
and must stay inside it (`resolve_inside`): a copied dataset cannot make polyglm read files elsewhere.
Files are not decoded here; an unreadable image or clip fails its own item when it is predicted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyglm.platform.errors import InputError
from polyglm.platform.paths import resolve_inside

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".flac", ".ogg"}
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
MEDIA_SEPARATOR = ";"  # several files in one CSV cell: "a.png;b.png"


@dataclass(frozen=True)
class Columns:
    """Which manifest column holds what; each may be renamed in a task file's `columns:`."""

    id: str = "id"  # optional: rows without it are named by their position (row-1, row-2, ...)
    text: str = "text"
    image: str = "image"  # one path, a list (JSONL) or paths joined by ';' (CSV)
    audio: str = "audio"
    label: str = "label"  # a class label (classification tasks)
    score: str = "score"  # a number (regression tasks)
    lang: str = "lang"


@dataclass(frozen=True)
class Row:
    """One usable item: inputs with resolved paths, and the gold label or score when the manifest has one."""

    id: str
    text: str = ""
    images: tuple[str, ...] = ()
    audio: tuple[str, ...] = ()
    label: str | None = None
    score: float | None = None
    lang: str | None = None
    line: int = 0  # where it came from, for messages
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)  # the whole row as read (scenario tasks)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "images": list(self.images), "audio": list(self.audio),
                "label": self.label, "score": self.score, "lang": self.lang, "line": self.line,
                "raw": dict(self.raw)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Row:
        return cls(**{**data, "images": tuple(data["images"]), "audio": tuple(data["audio"])})


@dataclass(frozen=True)
class BadRow:
    id: str
    line: int
    reason: str


@dataclass(frozen=True)
class Manifest:
    path: Path
    root: Path  # media paths resolve inside this folder
    layout: str  # csv | jsonl | imagefolder | audiofolder
    rows: tuple[Row, ...]
    bad: tuple[BadRow, ...]
    digest: str  # sha256 of the manifest text and of every file its rows name


@dataclass(frozen=True)
class Target:
    """What a row must carry to be scored: a label from `labels`, or a score within +-score_range."""

    labels: tuple[str, ...] = ()
    score_range: float | None = None
    needs_input: bool = True  # at least one of text, image, audio


# ---------------------------------------------------------------- raw records per layout


def _csv_records(text: str) -> Iterator[tuple[int, dict | None, str]]:
    """(line number, record or None, reason) per data line; a line with the wrong field count is a bad row."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, f"malformed CSV line: {exc}"
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield (
                reader.line_num,
                None,
                (
                    f"malformed CSV line: {len(values)} fields where the header has {len(header)} "
                    "(quote fields that contain commas)"
                ),
            )
            continue
        yield reader.line_num, dict(zip(header, values, strict=True)), ""


def _jsonl_records(text: str) -> Iterator[tuple[int, dict | None, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON: {exc.msg} at column {exc.colno}"
            continue
        if not isinstance(record, dict):
            yield number, None, f"a JSON line must be an object, got {type(record).__name__}"
            continue
        yield number, record, ""


def _folder_records(folder: Path) -> tuple[str, Iterator[tuple[int, dict | None, str]], str]:
    """imagefolder/audiofolder through `datasets` (labels from sub-folder names when there is no metadata file).
    Returns (layout, records, text hashed for the digest)."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    audio = sum(p.suffix.lower() in AUDIO_SUFFIXES for p in files)
    images = sum(p.suffix.lower() in IMAGE_SUFFIXES for p in files)
    if not audio and not images:
        raise InputError(
            f"{folder} has no image ({', '.join(sorted(IMAGE_SUFFIXES))}) or audio "
            f"({', '.join(sorted(AUDIO_SUFFIXES))}) files: give a folder in imagefolder/audiofolder layout "
            "or a CSV/JSONL manifest"
        )
    layout, column = ("audiofolder", "audio") if audio > images else ("imagefolder", "image")
    metadata = next((folder / m for m in METADATA_FILES if (folder / m).is_file()), None)
    try:
        records = list(_datasets_folder(folder, layout, column))
    except Exception as exc:  # datasets refuses the whole folder (a malformed metadata line): read it row by row
        if metadata is None:
            raise InputError(f"{folder} could not be read as a {layout}: {exc}") from exc
        text = metadata.read_text(encoding="utf-8")
        rows = _csv_records(text) if metadata.suffix == ".csv" else _jsonl_records(text)
        renamed = ((n, None if r is None else _file_name_as(r, column), why) for n, r, why in rows)
        return layout, renamed, text
    listing = "\n".join(str(p.relative_to(folder)) for p in files)
    return layout, iter(records), listing + (metadata.read_text(encoding="utf-8") if metadata else "")


def _file_name_as(record: dict, column: str) -> dict:
    record = dict(record)
    if "file_name" in record:
        record[column] = record.pop("file_name")
    return record


def _datasets_folder(folder: Path, layout: str, column: str) -> Iterator[tuple[int, dict, str]]:
    import datasets

    dataset = datasets.load_dataset(layout, data_dir=str(folder), split="train", cache_dir=None)
    feature = datasets.Audio(decode=False) if layout == "audiofolder" else datasets.Image(decode=False)
    dataset = dataset.cast_column(column, feature)
    names = dataset.features["label"].names if "label" in dataset.features and hasattr(
        dataset.features["label"], "names") else None  # fmt: skip
    for number, record in enumerate(dataset, start=1):
        record = dict(record)
        record[column] = str(Path(record[column]["path"]).resolve().relative_to(folder.resolve()))
        if names is not None and record.get("label") is not None:
            record["label"] = names[record["label"]]
        yield number, record, ""


# ---------------------------------------------------------------- one row


def _paths(value: Any, root: Path, what: str) -> tuple[str, ...]:
    """Resolved files named by a cell; raises ValueError with the reason for an escaping or missing path."""
    if value is None or value == "":
        return ()
    names = value if isinstance(value, list) else [v for v in str(value).split(MEDIA_SEPARATOR) if v.strip()]
    resolved = []
    for name in names:
        path = resolve_inside(root, str(name).strip())
        if path is None:
            raise ValueError(f"{what} path {name!r} points outside the manifest's folder {root}; keep media inside it")
        if not path.is_file():
            raise ValueError(f"{what} file {name!r} does not exist under {root}")
        resolved.append(str(path))
    return tuple(resolved)


def _row(record: Mapping, number: int, root: Path, columns: Columns, target: Target) -> Row:
    """A usable row, or ValueError naming why not."""
    text = record.get(columns.text)
    text = "" if text is None else str(text)
    images = _paths(record.get(columns.image), root, "image")
    audio = _paths(record.get(columns.audio), root, "audio")
    if target.needs_input and not (text.strip() or images or audio):
        raise ValueError(
            f"no usable input: the row has no {columns.text!r} text, {columns.image!r} or {columns.audio!r}"
        )
    label = record.get(columns.label)
    label = None if label is None or str(label).strip() == "" else str(label).strip()
    if label is not None and target.labels and label not in target.labels:
        raise ValueError(f"unknown label {label!r}; this task's labels are {', '.join(target.labels)}")
    score = record.get(columns.score)
    if score is not None and str(score).strip() != "":
        try:
            score = float(score)
        except ValueError:
            raise ValueError(f"score {score!r} is not a number") from None
        if target.score_range is not None and abs(score) > target.score_range:
            raise ValueError(f"score {score} is outside [-{target.score_range:g}, {target.score_range:g}]")
    else:
        score = None
    lang = record.get(columns.lang)
    return Row(id="", text=text, images=images, audio=audio, label=label, score=score,
               lang=None if lang in (None, "") else str(lang), line=number, raw=dict(record))  # fmt: skip


def read_manifest(path: Path | str, columns: Columns = Columns(), target: Target = Target()) -> Manifest:
    """Rows and bad rows of a manifest; raises InputError only when the manifest as a whole is unusable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"manifest {path} does not exist: give a CSV, a JSONL file or an imagefolder/audiofolder")
    if path.is_dir():
        layout, records, text = _folder_records(path)
        root = path
    elif path.suffix.lower() in (".csv", ".jsonl"):
        text = path.read_text(encoding="utf-8", errors="replace")
        layout = path.suffix.lower().lstrip(".")
        records = _csv_records(text) if layout == "csv" else _jsonl_records(text)
        root = path.parent
    else:
        raise InputError(
            f"manifest {path} is a {path.suffix or 'suffix-less'} file; polyglm reads .csv, .jsonl, or a folder in "
            "imagefolder/audiofolder layout (with an optional metadata.csv / metadata.jsonl)"
        )
    rows, bad, seen = [], [], {}
    for number, record, reason in records:
        given = record.get(columns.id) if record else None
        name = str(given).strip() if given not in (None, "") else f"row-{number}"
        if record is None:
            bad.append(BadRow(name, number, reason))
            continue
        if name in seen:
            bad.append(BadRow(f"{name}@line{number}", number, f"duplicate id {name!r} (first on line {seen[name]})"))
            continue
        seen[name] = number
        try:
            rows.append(_with_id(_row(record, number, root, columns, target), name))
        except ValueError as exc:
            bad.append(BadRow(name, number, str(exc)))
    if not rows and not bad:
        raise InputError(f"manifest {path} has no rows: add one row per item (a header line alone is not enough)")
    return Manifest(path=path, root=root, layout=layout, rows=tuple(rows), bad=tuple(bad),
                    digest=_digest(text, rows, root))  # fmt: skip


def _with_id(row: Row, name: str) -> Row:
    return Row(**{**row.__dict__, "id": name})


def _digest(text: str, rows: Sequence[Row], root: Path) -> str:
    """The manifest's text and every file its usable rows name (by content), so an edited photo changes it;
    paths enter relative to the manifest's folder, so a copied dataset keeps its digest."""
    digest = hashlib.sha256(text.encode("utf-8"))
    for file in sorted({p for row in rows for p in (*row.images, *row.audio)}):
        digest.update(str(Path(file).relative_to(root.resolve())).encode("utf-8"))
        digest.update(_file_sha256(Path(file)).encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
