"""Predictors: turn a batch of manifest rows into prediction records. One class per `predict:` key.

A predictor is built once per process (or per Ray actor) with the platform and the task, then called
batch after batch. It raises InputError for a problem of the batch's own items (an unreadable photo);
the runner then retries the batch one item at a time so that only the bad item fails. Any other error
(a missing model, a bug) stops the run: it is not the item's fault, and resuming redoes nothing.
Records carry the prediction, every label's probability, and the gold value for the metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from polyglm.evaluation.manifest import Row
from polyglm.evaluation.tasks import Task, task_pack
from polyglm.platform.loader import Platform


class Predictor(Protocol):
    def predict(self, rows: Sequence[Row]) -> list[dict[str, Any]]: ...


def gold(row: Row) -> dict[str, Any]:
    return {k: v for k, v in (("label", row.label), ("score", row.score)) if v is not None}


def decoded(rows: Sequence[Row], make: Callable[..., Any]) -> list[Any]:
    """`make(text=, images=, audio=)` per row with its files decoded; an unreadable file raises InputError
    naming it and the fix."""
    from polyglm.platform.media import load_audio, load_image

    return [make(text=row.text, images=tuple(load_image(p) for p in row.images),
                 audio=tuple(load_audio(p) for p in row.audio)) for row in rows]  # fmt: skip


def label_record(row: Row, probabilities: dict[str, float], task: Task) -> dict[str, Any]:
    """The record of a scored row: the top label (or a score for regression tasks) and every probability."""
    record: dict[str, Any] = {"id": row.id, **gold(row)}
    if task.kind == "regression":
        # sentiment intensity: how much more positive than negative, on the task's scale
        record["predicted_score"] = round(
            (probabilities.get("positive", 0.0) - probabilities.get("negative", 0.0)) * task.score_range, 4
        )
        record["probabilities"] = probabilities
        return record
    shown = {label: probabilities.get(label, 0.0) for label in task.labels}
    total = sum(shown.values()) or 1.0  # a task with fewer labels than the model scored: renormalise
    shown = {label: round(p / total, 6) for label, p in shown.items()}
    record["predicted"] = max(shown, key=shown.get)
    record["probabilities"] = shown
    return record


class LabelsPredictor:
    """Any label set by label scoring, after the task's instruction."""

    def __init__(self, platform: Platform, task: Task) -> None:
        if not task.labels:
            raise ValueError(f"task {task.name!r} predicts labels but lists none under `labels:`")
        self.platform, self.task = platform, task

    def predict(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        from polyglm.pipelines.label_scoring import LabelInput, score_labels

        items = decoded(rows, LabelInput)
        scored = score_labels(self.platform, items, self.task.labels, self.task.instruction, self.task.batch_size)
        return [label_record(row, probs, self.task) for row, probs in zip(rows, scored, strict=True)]


def rounded(probabilities: dict[str, float]) -> dict[str, float]:
    return {label: round(p, 6) for label, p in probabilities.items()}


class SentimentPredictor:
    """The sentiment pipeline (calibrated negative / neutral / positive probabilities)."""

    def __init__(self, platform: Platform, task: Task) -> None:
        self.platform, self.task = platform, task

    def predict(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        from polyglm.pipelines.sentiment import SentimentInput, analyse_batch

        inputs = decoded(rows, SentimentInput)
        results = analyse_batch(self.platform, inputs, attribution=False, batch_size=self.task.batch_size)
        records = []
        for row, result in zip(rows, results, strict=True):
            record = label_record(row, dict(result.probabilities), self.task)
            # Each modality's own calibrated scores, and each view of a modality read two ways: what the fusion
            # is fitted on (bench/sentiment_fusion.py).
            if len(result.by_modality) > 1:
                record["modalities"] = {m: rounded(p) for m, p in result.by_modality.items()}
            if any(len(views) > 1 for views in result.by_view.values()):
                record["views"] = {m: {v: rounded(p) for v, p in views.items()} for m, views in result.by_view.items()}
            if copies := result.evidence["labelled_copies"]:  # labelled posts the words repeat (sentiment_memory.py)
                record["copies"] = copies
            records.append(record)
        return records


class ScenarioPredictor:
    """A pack's eval items through the real scenario chat loop, scored as `polyglm scenarios eval` always did."""

    def __init__(self, platform: Platform, task: Task, max_new_tokens: int | None = None) -> None:
        self.platform, self.task = platform, task
        self.pack = task_pack(task)
        self.max_new_tokens = task.extra.get("max_new_tokens", max_new_tokens)
        self.assistants: dict[str, Any] = {}

    def assistant(self, lang: str) -> Any:
        from polyglm.pipelines.scenario_chat import ScenarioAssistant

        if lang not in self.assistants:
            self.assistants[lang] = ScenarioAssistant(
                platform=self.platform, pack=self.pack, lang=lang, max_new_tokens=self.max_new_tokens
            )
        return self.assistants[lang]

    def predict(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        from polyglm.pipelines.scenario_eval import run_item

        return [run_item(self.assistant(row.raw["lang"]), self.pack, row.raw) for row in rows]


PREDICTORS: dict[str, Callable[[Platform, Task], Predictor]] = {
    "labels": LabelsPredictor,
    "sentiment": SentimentPredictor,
    "scenario": ScenarioPredictor,
}
