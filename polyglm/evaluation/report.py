"""metrics.json and report.html of a run: the numbers, and the plots people would rather look at.

report.html is one self-contained file (plots embedded as PNG data URLs) to open or attach anywhere:
a metrics table, the confusion matrix, per-class precision / recall / F1 bars, the reliability diagram,
the latency histogram (a score-vs-truth scatter for regression tasks), and the failed items with reasons.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyglm.evaluation.metrics import classification_metrics, score_metrics
from polyglm.evaluation.tasks import Task, task_pack


def latency(records: Sequence[Mapping]) -> dict[str, float] | None:
    seconds = [r["seconds"] for r in records if "seconds" in r and "error" not in r]
    if not seconds:
        return None
    return {
        "mean_s": float(np.mean(seconds)),
        "median_s": float(np.median(seconds)),
        "p95_s": float(np.percentile(seconds, 95)),
        "items_per_s": float(len(seconds) / sum(seconds)) if sum(seconds) else None,
    }


def task_metrics(task: Task, records: Sequence[Mapping]) -> dict[str, Any]:
    """The task's metrics over its records (failed ones listed, not scored)."""
    ok = [r for r in records if "error" not in r]
    metrics: dict[str, Any] = {
        "task": task.name,
        "kind": task.kind,
        "items": len(records),
        "failed": [{"id": r["id"], "error": r["error"]} for r in records if "error" in r],
        "latency": latency(records),
    }
    if task.kind == "classification":
        scored = [r for r in ok if r.get("label") is not None]
        metrics["unlabelled"] = len(ok) - len(scored)
        if scored:
            metrics["classification"] = classification_metrics(
                [r["label"] for r in scored], [r["predicted"] for r in scored], task.labels,
                [r["probabilities"] for r in scored],
            )  # fmt: skip
    elif task.kind == "regression":
        scored = [r for r in ok if r.get("score") is not None]
        metrics["unlabelled"] = len(ok) - len(scored)
        if scored:
            metrics["regression"] = score_metrics(
                [r["score"] for r in scored], [r["predicted_score"] for r in scored], task.score_range
            )
    else:
        from polyglm.pipelines.scenario_eval import summarise

        metrics["scenario"] = summarise(ok, task_pack(task))
    return metrics


def headline(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The single-number metrics of a run, flat (what the CLI prints and --compare compares)."""
    if "classification" in metrics:
        c = metrics["classification"]
        keys = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc", "ece", "majority_baseline")
        return {k: c.get(k) for k in keys}
    if "regression" in metrics:
        return {k: v for k, v in metrics["regression"].items() if k != "items"}
    if "scenario" in metrics:
        return dict(metrics["scenario"]["metrics"])
    return {}


# ---------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_plot(report: Mapping[str, Any], title: str) -> str:
    plt = _pyplot()
    labels = report["labels"]
    fig, ax = plt.subplots(figsize=(1.0 * len(labels) + 2.5, 0.8 * len(labels) + 1.8))
    ax.imshow(report["confusion"], cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i, row in enumerate(report["confusion"]):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center")
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    ax.set_title(f"{title}: accuracy {report['accuracy']:.3f}")
    return _png(fig)


def per_class_plot(report: Mapping[str, Any]) -> str:
    plt = _pyplot()
    labels = report["labels"]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(labels)), 3.2))
    width = 0.27
    for k, (key, colour) in enumerate((("precision", "#3b7dd8"), ("recall", "#e0a030"), ("f1", "#4caf50"))):
        values = [report["per_class"][label][key] for label in labels]
        ax.bar(np.arange(len(labels)) + (k - 1) * width, values, width, label=key, color=colour)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    ax.set_title("per class")
    return _png(fig)


def reliability_plot(report: Mapping[str, Any]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    bins = report["reliability"]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["accuracy"] for b in bins],
           width=[b["high"] - b["low"] for b in bins], alpha=0.7, edgecolor="black", label="accuracy")  # fmt: skip
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="#d33", label="bins")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the top label")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {report['ece']:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def latency_plot(records: Sequence[Mapping]) -> str:
    plt = _pyplot()
    seconds = [r["seconds"] for r in records if "seconds" in r and "error" not in r]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(seconds, bins=min(30, max(5, len(seconds) // 3)), color="#3b7dd8")
    ax.set_xlabel("seconds per item")
    ax.set_ylabel("items")
    ax.set_title("latency")
    return _png(fig)


def scatter_plot(records: Sequence[Mapping], score_range: float) -> str:
    plt = _pyplot()
    pairs = [(r["score"], r["predicted_score"]) for r in records if r.get("score") is not None and "error" not in r]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], s=12, alpha=0.6)
    ax.plot([-score_range, score_range], [-score_range, score_range], "--", color="grey")
    ax.set_xlabel("gold score")
    ax.set_ylabel("predicted score")
    ax.set_title("scores")
    return _png(fig)


def metric_bars(values: Mapping[str, float | None], title: str) -> str:
    plt = _pyplot()
    shown = {k: v for k, v in values.items() if isinstance(v, int | float)}
    fig, ax = plt.subplots(figsize=(7, 0.42 * len(shown) + 1.2))
    ax.barh(list(shown), list(shown.values()), color="#3b7dd8")
    ax.set_xlim(0, 1)
    for y, value in enumerate(shown.values()):
        ax.text(min(value + 0.01, 0.88), y, f"{value:.3f}", va="center")
    ax.invert_yaxis()
    ax.set_title(title)
    return _png(fig)


def plots(task: Task, metrics: Mapping[str, Any], records: Sequence[Mapping]) -> list[tuple[str, str]]:
    """(caption, data URL) of every plot that applies to this run."""
    out: list[tuple[str, str]] = []
    if "classification" in metrics:
        report = metrics["classification"]
        out += [("confusion matrix", confusion_plot(report, task.name)), ("per-class bars", per_class_plot(report))]
        if report.get("reliability"):
            out.append(("reliability diagram", reliability_plot(report)))
    if "regression" in metrics:
        out.append(("predicted vs gold score", scatter_plot(records, task.score_range)))
    if "scenario" in metrics:
        summary = metrics["scenario"]
        out.append(("metrics", metric_bars(summary["metrics"], f"{task.name} ({summary['items']} items)")))
        for name, report in summary["labels"].items():
            out.append((f"confusion: {name}", confusion_plot(report, name)))
    if metrics.get("latency"):
        out.append(("latency histogram", latency_plot(records)))
    return out


def write_report(path: Path, task: Task, metrics: Mapping[str, Any], records: Sequence[Mapping]) -> None:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_shown(v)}</td></tr>" for k, v in headline(metrics).items())
    figures = "".join(
        f'<figure><img src="{url}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for c, url in plots(task, metrics, records)
    )
    failed = "".join(
        f"<tr><td>{html.escape(str(f['id']))}</td><td>{html.escape(f['error'])}</td></tr>" for f in metrics["failed"]
    )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>polyglm eval: {html.escape(task.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}} figure{{display:inline-block;margin:1em}}</style>
</head><body>
<h1>{html.escape(task.name)}</h1>
<p>{html.escape(task.description)}</p>
<p>{metrics["items"]} items, {len(metrics["failed"])} failed{_latency_line(metrics)}.</p>
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>
<h2>Plots</h2>{figures}
<h2>Failed items</h2>{f"<table><tr><th>id</th><th>reason</th></tr>{failed}</table>" if failed else "<p>none</p>"}
<h2>All metrics</h2><pre>{html.escape(json.dumps(_without_bins(metrics), ensure_ascii=False, indent=2))}</pre>
</body></html>
"""
    path.write_text(body, encoding="utf-8")


def _shown(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))


def _latency_line(metrics: Mapping[str, Any]) -> str:
    lat = metrics.get("latency")
    return f", {lat['mean_s']:.3f} s per item on average" if lat else ""


def _without_bins(metrics: Mapping[str, Any]) -> dict:
    out = dict(metrics)
    if "classification" in out:
        out["classification"] = {k: v for k, v in out["classification"].items() if k != "reliability"}
    return out
