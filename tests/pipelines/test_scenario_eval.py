"""`polyglm scenarios eval` (the `scenario:<pack>` task of the batch runner): scoring rules, per-item
failures, resuming after a crash, metrics and report."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from polyglm.evaluation.runner import PREDICTIONS, read_records
from polyglm.pipelines.scenario_eval import (
    EvalOptions,
    evaluate_scenario,
    facts_found,
    label_report,
    normalise,
    score_tools,
    value_matches,
    written_language,
)
from polyglm.platform.errors import InputError
from polyglm.scenarios.loader import load_pack

PACKS = Path(__file__).resolve().parents[2] / "polyglm" / "scenarios" / "packs"


def test_facts_are_found_whatever_the_width_case_or_dash():
    assert normalise("１–３ Working  Days") == "1-3workingdays"
    answer = "Refunds take 1–3 WORKING days. 7 天内"
    assert facts_found(["1-3 working days", "¥99", "7天"], answer) == [True, False, True]


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        ({"order_id": "A10023"}, {"order_id": "a10023 "}, True),
        ({"age_years": 58, "duration_hours": 0.25}, {"age_years": 58, "duration_hours": 0.26, "x": 1}, True),
        ({"duration_hours": 0.25}, {"duration_hours": 0.0}, False),
        ({"answers": ["5 cm", "125 cm"]}, {"answers": ["5cm", "125 CM"]}, True),
        ({"answers": ["5 cm", "125 cm"]}, {"answers": ["5 cm"]}, False),
        ({"count": 4}, {"count": True}, False),
    ],
)  # fmt: skip
def test_tool_arguments_are_compared_leniently_but_not_loosely(expected, actual, same):
    assert value_matches(expected, actual) is same


@pytest.mark.parametrize(
    ("answer", "lang"),
    [
        ("The post is negative: it says 但是 the service was slow [posts-en].", "en"),
        ("退货期限是 7 天 [returns-policy-zh] [warranty-zh] [payment-methods-zh]。", "zh"),
        ("不对。工具 check_answer 的结果：expected: x = 4; correct: False。", "zh"),
        ("x = 4", "en"),
        ("", "en"),
    ],
)
def test_an_answer_is_in_the_language_most_of_it_is_written_in(answer, lang):
    assert written_language(answer) == lang


def test_tool_scores_separate_names_arguments_and_extras():
    expected = [{"name": "refund_eligibility", "arguments": {"order_id": "A10023", "reason": "changed_mind"}}]
    made = [{"name": "refund_eligibility", "arguments": {"order_id": "A10023", "reason": "defective"}},
            {"name": "order_lookup", "arguments": {"order_id": "A10023"}}]  # fmt: skip
    assert score_tools(expected, made) == {
        "called": [True], "arguments_match": [False], "unexpected": ["order_lookup"], "called_by_model": [False]
    }  # fmt: skip


def test_model_tool_recall_counts_only_calls_no_planner_made():
    expected = [{"name": "triage", "arguments": {}}, {"name": "drug_interactions", "arguments": {}},
                {"name": "handoff_to_human", "arguments": {}}]  # fmt: skip
    made = [{"name": "triage", "arguments": {}, "source": "planner"},
            {"name": "drug_interactions", "arguments": {}, "source": "model"}]  # fmt: skip
    # triage was the planner's; of the two left to the model it made one
    assert score_tools(expected, made)["called_by_model"] == [True, False]


def test_facts_stated_are_counted_only_among_the_facts_shown():
    records = [
        {"answer": "a", "lang": "en", "kind": "question", "must_escalate": False,
         "facts": [True, False, True], "facts_shown": [True, True, False]},
        {"answer": "b", "lang": "zh", "kind": "question", "must_escalate": False,
         "facts": [False], "facts_shown": [False]},
    ]  # fmt: skip
    from polyglm.pipelines.scenario_eval import _stated_of_shown

    assert _stated_of_shown(records) == 0.5  # two facts shown, one of them stated; unshown ones do not count


def test_label_report_has_confusion_matrix_baseline_and_macro_f1():
    records = [{"labels": {"polarity": {"expected": e, "predicted": p}}}
               for e, p in [("negative", "negative"), ("negative", "positive"), ("positive", "positive"),
                            ("neutral", "positive")]]  # fmt: skip
    report = label_report(records, {"polarity": ("positive", "neutral", "negative")})["polarity"]
    assert report["confusion"] == [[1, 0, 0], [1, 0, 0], [1, 0, 1]]
    assert report["accuracy"] == 0.5 and report["majority_baseline"] == 0.5
    assert report["macro_f1"] == pytest.approx((1 / 2 + 0 + 2 / 3) / 3, abs=1e-4)  # F1 per class, then mean


def _pack_copy(tmp_path: Path, name: str, items: list[dict]) -> Path:
    root = tmp_path / "packs"
    for folder in ("_base", name):
        shutil.copytree(PACKS / folder, root / folder)
    (root / name / "data" / "eval.jsonl").write_text(
        "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8"
    )
    return root


@pytest.mark.usefixtures("isolated_cache")
def test_bad_media_fails_its_item_only_and_the_rest_is_scored(tiny_platform, tmp_path):
    good = {"id": "ok-1", "lang": "en", "input": "Loved the concert!!", "expected_label": {"polarity": "positive"}}
    outside = {**good, "id": "outside", "image": "../../../../../etc/passwd"}
    corrupt = {**good, "id": "corrupt", "image": "media/broken.png"}
    packs = _pack_copy(tmp_path, "social_sentiment", [good, outside, corrupt])
    (packs / "social_sentiment" / "media" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    options = EvalOptions(scenario="social_sentiment", profile="tiny", out=tmp_path / "run", packs_dir=packs)
    summary = evaluate_scenario(options, platform=tiny_platform, progress=False)
    failed = {f["id"]: f["error"] for f in summary["failed"]}
    assert set(failed) == {"outside", "corrupt"}
    assert "outside the scenario pack folder" in failed["outside"] and "broken.png" in failed["corrupt"]
    assert summary["counts"]["labelled"] == 1 and summary["metrics"]["polarity_accuracy"] is not None
    report = (tmp_path / "run" / "report.html").read_text()
    assert 'alt="metrics"' in report and 'alt="confusion: polarity"' in report and "outside the scenario pack" in report


@pytest.mark.usefixtures("isolated_cache")
def test_a_crashed_run_resumes_without_redoing_finished_items(tiny_platform, tmp_path, monkeypatch):
    from polyglm.evaluation.predictors import ScenarioPredictor

    options = EvalOptions(scenario="customer_service", profile="tiny", out=tmp_path / "run", limit=3)
    answered: list[str] = []
    real = ScenarioPredictor.predict

    def crashing_after(count: int):
        def predict(self, rows):
            if len(answered) == count:
                raise KeyboardInterrupt  # the process dies mid-run
            answered.extend(row.id for row in rows)
            return real(self, rows)

        return predict

    monkeypatch.setattr(ScenarioPredictor, "predict", crashing_after(2))
    with pytest.raises(KeyboardInterrupt):
        evaluate_scenario(options, platform=tiny_platform, progress=False)
    results = tmp_path / "run" / PREDICTIONS
    with results.open("a", encoding="utf-8") as out:
        out.write('{"id": "cs-eval-003", "lang": "en", "ans')  # a line cut off by the crash
    assert [r["id"] for r in read_records(results)] == ["cs-eval-001", "cs-eval-002"]
    monkeypatch.setattr(ScenarioPredictor, "predict", crashing_after(99))
    summary = evaluate_scenario(options, platform=tiny_platform, progress=False)
    assert answered == ["cs-eval-001", "cs-eval-002", "cs-eval-003"]  # only the missing one after the crash
    assert summary["items"] == 3 and not summary["failed"]
    assert [r["id"] for r in read_records(results)] == ["cs-eval-001", "cs-eval-002", "cs-eval-003"]


@pytest.mark.usefixtures("isolated_cache")
def test_a_run_does_not_resume_over_a_changed_pack(tiny_platform, tmp_path):
    """Labels depend on the pack's scenario.yaml, knowledge base and labelled posts, not only on eval.jsonl:
    resuming into a folder after the pack changed would mix answers of two packs."""
    item = {"id": "ok-1", "lang": "en", "input": "Loved the concert!!", "expected_label": {"polarity": "positive"}}
    packs = _pack_copy(tmp_path, "social_sentiment", [item])
    options = EvalOptions(scenario="social_sentiment", profile="tiny", out=tmp_path / "run", packs_dir=packs)
    evaluate_scenario(options, platform=tiny_platform, progress=False)
    readme = packs / "social_sentiment" / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nA note for readers.\n", encoding="utf-8")
    assert evaluate_scenario(options, platform=tiny_platform, progress=False)["items"] == 1  # prose: resumes
    guideline = sorted((packs / "social_sentiment" / "kb").glob("*.md"))[0]
    guideline.write_text(guideline.read_text(encoding="utf-8") + "\nSarcasm counts as negative.\n", encoding="utf-8")
    with pytest.raises(InputError, match="holds a run of another pack"):
        evaluate_scenario(options, platform=tiny_platform, progress=False)


def test_cli_eval_prints_metrics_and_writes_the_summary(tiny_platform, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "polyglm", "scenarios", "eval", "medical", "--profile", "tiny", "--limit", "2",
         "--lang", "en", "--out", str(tmp_path / "run"), "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["items"] == 2 and summary["metrics"]["escalation_recall"] == 1.0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["scenario"]["metrics"] == summary["metrics"] and metrics["task"] == "scenario:medical"


def test_stride_and_language_pick_a_spread_of_items():
    from polyglm.evaluation.manifest import read_manifest
    from polyglm.evaluation.runner import RunOptions, resolve_task, select_rows
    from polyglm.platform.errors import InputError

    task = resolve_task(RunOptions(task="scenario:medical"))
    manifest = read_manifest(load_pack("medical").eval_set, task.columns, task.target)
    every = select_rows(manifest, RunOptions(task="scenario:medical"))
    strided = select_rows(manifest, RunOptions(task="scenario:medical", stride=3))
    assert [r.id for r in strided] == [r.id for r in every[::3]] and len(every) > 30
    chinese = select_rows(manifest, RunOptions(task="scenario:medical", langs=("zh",), limit=4))
    assert len(chinese) == 4 and {r.lang for r in chinese} == {"zh"}
    with pytest.raises(InputError, match="no language"):
        evaluate_scenario(EvalOptions(scenario="medical", langs=("fr",)))


@pytest.mark.usefixtures("isolated_cache")
def test_an_answered_item_is_scored_against_answer_and_what_the_model_was_shown(tiny_platform):
    from polyglm.pipelines.scenario_chat import ScenarioAssistant
    from polyglm.pipelines.scenario_eval import run_item

    pack = load_pack("medical")
    item = {
        "id": "t", "lang": "en", "input": "My 70-year-old father has crushing chest pain.",
        "expected_facts": ["emergency", "ambulance-never-mentioned"], "relevant_docs": ["when-to-see-a-doctor-en"],
        "expected_tool_calls": [{"name": "triage", "arguments": {"age_years": 70}}], "must_escalate": True,
    }  # fmt: skip
    record = run_item(ScenarioAssistant(tiny_platform, pack, "en"), pack, item)
    assert record["facts"] == [True, False] and record["facts_shown"][1] is False
    assert record["tools"] == {"called": [True], "arguments_match": [True], "unexpected": [], "called_by_model": []}
    assert record["escalated"] and record["must_escalate"] and isinstance(record["retrieval_hit"], bool)


@pytest.mark.usefixtures("isolated_cache")
def test_inline_citations_are_scored_as_written_and_as_given(tiny_platform, monkeypatch):
    from polyglm.pipelines.scenario_chat import ScenarioAssistant
    from polyglm.pipelines.scenario_eval import run_item, summarise

    pack = load_pack("customer_service")
    assistant = ScenarioAssistant(tiny_platform, pack, "en")
    written = "Change-of-mind returns are accepted within 7 days of delivery [payment-methods-en]."
    monkeypatch.setattr(assistant, "_generate", lambda messages: written)
    item = {"id": "t", "lang": "en", "input": "How many days do I have to return an item I changed my mind about?",
            "relevant_docs": ["returns-policy-en"]}  # fmt: skip
    record = run_item(assistant, pack, item)
    assert record["model_citations_relevant"] == [False] and record["citations_mended"] == 1
    assert record["citations_relevant"][0] is True  # the mended citation; quoted evidence may follow
    metrics = summarise([record], pack)["metrics"]
    assert metrics["model_citations_relevant"] == 0.0 and metrics["answers_with_citations_mended"] == 1.0
