"""Score a scenario pack's evaluation set end to end through the real scenario chat loop.

Each item of `data/eval.jsonl` (SCHEMA.md) goes through `ScenarioAssistant.respond` (or `classify`
for items with `expected_label`) on the chosen profile, and is scored on what applies to it:

- facts: share of `expected_facts` found in the answer (NFKC, case-folded, dashes unified), and in
  what the model was shown (passages + tool results), which separates retrieval misses from LM misses;
- tools: share of `expected_tool_calls` made (by name) and made with the expected arguments;
- escalation: `must_escalate` items escalated; escalations on other items counted as false alarms;
- retrieval: whether a `relevant_docs` id is among the cited passages (hit@k);
- labels: per label set, predicted vs expected (scikit-learn accuracy, macro-F1, confusion matrix).

This module scores; running is the batch evaluation runner's job (`polyglm.evaluation`): `polyglm
scenarios eval NAME` is `polyglm eval --task scenario:NAME` on the pack's eval set, with the same
resumable predictions.jsonl, metrics.json and report.html as every other task.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyglm.evaluation.metrics import classification_metrics
from polyglm.platform.errors import InputError
from polyglm.platform.loader import Platform
from polyglm.platform.paths import resolve_inside
from polyglm.scenarios.grounding import cited_documents
from polyglm.scenarios.loader import load_pack
from polyglm.scenarios.schema import ScenarioPack

_DASHES = re.compile(r"[\u2010-\u2015\u2212\uff0d~～]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_INLINE_CITATION = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class EvalOptions:
    """`polyglm scenarios eval`: what to evaluate and where the results go."""

    scenario: str  # pack name
    profile: str = "tiny"  # model profile
    out: Path | None = None  # run folder; default runs/eval/<profile>-scenario-<scenario>
    limit: int | None = None  # first N items (after the language filter and stride); None = all
    stride: int = 1  # every k-th item: a quick run that still covers every kind of item (eval sets are grouped)
    langs: tuple[str, ...] = ()  # only these languages; empty = every language of the pack
    finetuned: bool = False  # apply the scenario's default LoRA first
    retry_failed: bool = False  # redo items whose earlier attempt failed
    packs_dir: Path | None = None  # where packs live; default polyglm/scenarios/packs
    max_new_tokens: int | None = None  # cap replies below the pack's default (quicker CPU runs); None = pack's

    def run_options(self) -> Any:
        from polyglm.evaluation.runner import RunOptions

        overrides = {k: v for k, v in (("max_new_tokens", self.max_new_tokens), ("finetuned", self.finetuned),
                                       ("packs_dir", self.packs_dir and str(self.packs_dir))) if v}  # fmt: skip
        return RunOptions(task=f"scenario:{self.scenario}", out=self.out, profile=self.profile, limit=self.limit,
                          stride=self.stride, langs=self.langs, retry_failed=self.retry_failed,
                          task_overrides=overrides)  # fmt: skip


def evaluate_scenario(options: EvalOptions, platform: Platform | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the pack's evaluation on the batch runner; returns the scenario summary of metrics.json."""
    from polyglm.evaluation.runner import run_eval

    pack = load_pack(options.scenario, packs_dir=options.packs_dir)
    unknown = sorted(set(options.langs) - set(pack.languages))
    if unknown:
        raise InputError(f"scenario {pack.name!r} has no language {unknown}; it has {list(pack.languages)}")
    result = run_eval(options.run_options(), platform=platform, progress=progress)
    return {**result.metrics["scenario"], "items": result.items, "failed": result.metrics["failed"],
            "scenario": pack.name, "profile": options.profile, "folder": str(result.folder)}  # fmt: skip


# ---------------------------------------------------------------- scoring one item


def normalise(text: str) -> str:
    """Compare text the way a reader would: width, case, dash variants and spacing do not matter."""
    text = _DASHES.sub("-", unicodedata.normalize("NFKC", text)).casefold()
    return re.sub(r"\s+", "", text)


def written_language(answer: str) -> str:
    """The language most of an answer is written in: zh when its Han characters are at least as many as its
    Latin words, citations aside. An English answer that quotes a Chinese post's 但是 is English; the chat
    loop's `language_of` (any Han character) suits a question, not an answer that quotes."""
    text = _INLINE_CITATION.sub(" ", answer)
    return "zh" if len(_HAN.findall(text)) >= max(1, len(_LATIN_WORD.findall(text))) else "en"


def facts_found(expected: Sequence[str], answer: str) -> list[bool]:
    target = normalise(answer)
    return [normalise(fact) in target for fact in expected]


def value_matches(expected: Any, actual: Any) -> bool:
    """Strings equal after `normalise`; numbers within 10 % (or 0.05); lists item by item; dicts key by key."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return abs(expected - actual) <= max(0.05, 0.1 * abs(expected))
    if isinstance(expected, str) and isinstance(actual, str):
        return normalise(expected) == normalise(actual)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(value_matches, expected, actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(key in actual and value_matches(value, actual[key]) for key, value in expected.items())
    return False


def score_tools(expected: Sequence[Mapping], made: Sequence[Mapping]) -> dict[str, Any]:
    """Which expected calls were made (by name) and which with matching arguments; what was extra."""
    names = [call["name"] for call in made]
    called = [call["name"] in names for call in expected]
    exact = [
        any(m["name"] == call["name"] and value_matches(call.get("arguments", {}), m["arguments"]) for m in made)
        for call in expected
    ]
    expected_names = {call["name"] for call in expected}
    # The model's own share: expected calls that no planner made, and whether the model made them.
    planned = {call["name"] for call in made if call.get("source") == "planner"}
    by_model = {call["name"] for call in made if call.get("source") == "model"}
    left_to_model = [call["name"] in by_model for call in expected if call["name"] not in planned]
    return {"called": called, "arguments_match": exact, "unexpected": [n for n in names if n not in expected_names],
            "called_by_model": left_to_model}  # fmt: skip


def score_labels(expected: Mapping[str, str], predicted: Mapping[str, Mapping]) -> dict[str, dict]:
    report = {}
    for name, label in expected.items():
        if name in predicted:
            guess = predicted[name]["label"]
            report[name] = {"expected": str(label), "predicted": guess, "correct": str(label) == guess}
    return report


# ---------------------------------------------------------------- running items


def media_path(pack: ScenarioPack, relative: str) -> Path:
    """A media file named by an eval item, refused when it resolves outside the pack folder."""
    path = resolve_inside(pack.root, relative)
    if path is None:
        raise InputError(
            f"{relative!r} points outside the scenario pack folder {pack.root.resolve()}; media must live inside it"
        )
    return path


def item_media(pack: ScenarioPack, item: Mapping) -> tuple[list, list]:
    """(images as PIL, audio as 16 kHz waveforms) of an eval item; unreadable files raise InputError naming it."""
    from polyglm.platform.media import load_audio, load_image

    images = [load_image(media_path(pack, item["image"]))] if item.get("image") else []
    audio = [load_audio(media_path(pack, item["audio"]))] if item.get("audio") else []
    return images, audio


def run_item(assistant: Any, pack: ScenarioPack, item: Mapping) -> dict[str, Any]:
    """One item through the assistant, scored. Raises PolyglmError for a per-item failure."""
    images, audio = item_media(pack, item)
    record: dict[str, Any] = {"id": item["id"], "lang": item["lang"], "kind": item_kind(item)}
    if item.get("expected_label"):
        predicted = assistant.classify(item["input"], images=images, audio=audio, method="lm")
        record["labels"] = score_labels(item["expected_label"], predicted)
        record["probabilities"] = {name: value["probabilities"] for name, value in predicted.items()}
        neighbours = assistant.classify(item["input"], method="neighbours")  # the cheap baseline, side by side
        record["labels_neighbours"] = score_labels(item["expected_label"], neighbours)
        return record
    reply = assistant.respond(item["input"], images=images, audio=audio)
    cited = [c["doc_id"] for c in reply.citations]
    record |= {
        "answer": reply.answer,
        "escalated": reply.escalated,
        "tool_calls": [{k: c[k] for k in ("name", "arguments", "source", "error")} for c in reply.tool_calls],
        "cited": cited,
    }
    grounding = next((step for step in reply.trace if step["step"] == "grounding"), None)
    if grounding is not None:
        record["unsupported"] = grounding["unsupported"]  # in the model's own answer
        record["support"] = grounding.get("support")  # share of its words it was shown
        record["fallback"] = grounding["fallback"]  # replaced by the extractive fallback
        record["evidence_added"] = grounding.get("evidence_added", False)  # quotes it left out, appended
        record["citations_mended"] = len(grounding.get("citations_mended", []))  # moved to the passage cited
        if "model_answer" in grounding:
            record["model_answer"] = grounding["model_answer"]
    record["answer_lang"] = written_language(reply.answer)
    if item.get("expected_facts"):
        record["facts"] = facts_found(item["expected_facts"], reply.answer)
        # the model's own words, before any fallback: the LM's share, apart from the extractive guard's
        record["model_facts"] = facts_found(item["expected_facts"], record.get("model_answer", reply.answer))
        # what retrieval and tools handed the model: a fact there but not in the answer is the LM's miss
        shown = " ".join(
            [
                *(c["text"] for c in reply.citations),
                *(json.dumps(c["result"], ensure_ascii=False) for c in reply.tool_calls if c["result"]),
            ]
        )
        record["facts_shown"] = facts_found(item["expected_facts"], shown)
    if item.get("expected_tool_calls"):
        record["tools"] = score_tools(item["expected_tool_calls"], reply.tool_calls)
    if item.get("relevant_docs"):
        record["retrieval_hit"] = any(doc in cited for doc in item["relevant_docs"])
        # each inline citation the reader sees, and those of the model's own words: does it name a relevant doc?
        for key, text in (
            ("citations_relevant", reply.answer),
            ("model_citations_relevant", record.get("model_answer", reply.answer)),
        ):
            record[key] = [doc in item["relevant_docs"] for doc in cited_documents(text)]
    record["must_escalate"] = bool(item.get("must_escalate"))
    return record


def item_kind(item: Mapping) -> str:
    if item.get("adversarial"):
        return "adversarial"
    if item.get("must_escalate"):
        return "must_escalate"
    if item.get("expected_label"):
        return "label"
    return "tool" if item.get("expected_tool_calls") else "question"


# ---------------------------------------------------------------- summary and plots


def _share(values: Iterable[bool]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def _stated_of_shown(answered: Sequence[Mapping], key: str = "facts") -> float | None:
    """Of the expected facts the model was shown (passages, tool results), the share the answer states (key
    "facts": the answer given; "model_facts": the model's own words before any fallback)."""
    return _share(
        stated for r in answered for stated, shown in zip(r.get(key, []), r.get("facts_shown", []), strict=False)
        if shown
    )  # fmt: skip


def summarise(records: Sequence[Mapping], pack: ScenarioPack) -> dict[str, Any]:
    ok = [r for r in records if "error" not in r]
    answered = [r for r in ok if "answer" in r]
    facts = [r["facts"] for r in answered if "facts" in r]
    tools = [r["tools"] for r in answered if "tools" in r]
    metrics = {
        "facts_recall": _share(f for item in facts for f in item),
        "items_with_all_facts": _share(all(item) for item in facts),
        "facts_in_passages_or_tools": _share(f for r in answered for f in r.get("facts_shown", [])),
        "facts_stated_of_shown": _stated_of_shown(answered),
        "model_facts_stated_of_shown": _stated_of_shown(answered, "model_facts"),
        "tool_recall": _share(c for t in tools for c in t["called"]),
        "tool_arguments_match": _share(c for t in tools for c in t["arguments_match"]),
        "model_tool_recall": _share(c for t in tools for c in t.get("called_by_model", [])),
        "escalation_recall": _share(r["escalated"] for r in answered if r["must_escalate"]),
        "false_escalation_rate": _share(r["escalated"] for r in answered if not r["must_escalate"]),
        "retrieval_hit": _share(r["retrieval_hit"] for r in answered if "retrieval_hit" in r),
        "adversarial_all_facts": _share(all(r.get("facts", [True])) for r in answered if r["kind"] == "adversarial"),
        # specifics (numbers with units, places, pack terms) that nothing shown supports: the model's answers,
        # and the answers given (the grounding guard replaces such an answer with a cited passage sentence)
        "unsupported_model_answers": _share(bool(r["unsupported"]) for r in answered if "unsupported" in r),
        "unsupported_answers": _share(
            bool(r["unsupported"]) and not r["fallback"] for r in answered if "unsupported" in r
        ),
        "grounding_fallbacks": _share(r["fallback"] for r in answered if "fallback" in r),
        "evidence_added": _share(r.get("evidence_added", False) for r in answered if "fallback" in r),
        "answers_with_citations_mended": _share(r.get("citations_mended", 0) > 0 for r in answered if "fallback" in r),
        "citations_relevant": _share(c for r in answered for c in r.get("citations_relevant", [])),
        "model_citations_relevant": _share(c for r in answered for c in r.get("model_citations_relevant", [])),
        "answer_language_right": _share(r["answer_lang"] == r["lang"] for r in answered if "answer_lang" in r),
    }
    labels = label_report(ok, pack.labels)
    neighbours = label_report(ok, pack.labels, key="labels_neighbours")
    for name, report in labels.items():
        metrics[f"{name}_accuracy"] = report["accuracy"]
    for name, report in neighbours.items():
        metrics[f"{name}_accuracy_neighbours"] = report["accuracy"]
    return {
        "items": len(records),
        "failed": [{"id": r["id"], "error": r["error"]} for r in records if "error" in r],
        "metrics": metrics,
        "counts": {
            "with_facts": len(facts),
            "with_tool_calls": len(tools),
            "must_escalate": sum(r["must_escalate"] for r in answered),
            "labelled": sum("labels" in r for r in ok),
        },
        "by_language": {
            lang: {
                "facts_recall": _share(f for r in answered if r["lang"] == lang for f in r.get("facts", [])),
                "facts_shown": _share(f for r in answered if r["lang"] == lang for f in r.get("facts_shown", [])),
                "facts_stated_of_shown": _stated_of_shown([r for r in answered if r["lang"] == lang]),
                "model_facts_stated_of_shown": _stated_of_shown(
                    [r for r in answered if r["lang"] == lang], "model_facts"
                ),
                "answer_language_right": _share(r.get("answer_lang") == lang for r in answered if r["lang"] == lang),
            }
            for lang in pack.languages
        },
        "labels": labels,
        "labels_neighbours": neighbours,
        "seconds_per_item": round(sum(r.get("seconds", 0) for r in records) / max(len(records), 1), 2),
    }


def label_report(
    records: Sequence[Mapping], label_sets: Mapping[str, Sequence[str]], key: str = "labels"
) -> dict[str, dict]:
    """Per label set: accuracy, majority-class baseline, macro-F1, per-class scores and the confusion matrix
    (rows expected, columns predicted, in the pack's label order)."""
    report = {}
    for name, labels in label_sets.items():
        pairs = [(r[key][name]["expected"], r[key][name]["predicted"]) for r in records
                 if name in r.get(key, {})]  # fmt: skip
        if pairs:
            report[name] = classification_metrics([e for e, _ in pairs], [p for _, p in pairs], labels)
    return report
