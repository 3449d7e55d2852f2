"""Tasks are YAML files: built-in ones by name, users' by path or POLYGLM_TASKS, include: and parameter:."""

import pytest

from polyglm.evaluation.tasks import available_tasks, load_task
from polyglm.platform.errors import InputError


def test_built_in_tasks_cover_sentiment_labels_scores_and_scenarios():
    assert {"sentiment", "sentiment-binary", "sentiment-score", "labels", "scenario"} <= set(available_tasks())
    score = load_task("sentiment-score")  # include: sentiment.yaml, then its own keys win
    assert (score.predict, score.score_range, score.kind) == ("sentiment", 3.0, "regression")
    assert load_task("sentiment-binary").labels == ("negative", "positive")
    medical = load_task("scenario:medical")
    assert (medical.name, medical.pack, medical.kind, medical.columns.text) == (
        "scenario:medical",
        "medical",
        "scenario",
        "input",
    )


def test_a_users_task_file_by_path_and_by_folder(tmp_path, monkeypatch):
    (tmp_path / "topic.yaml").write_text(
        "name: topic\npredict: labels\nlabels: [sports, politics]\ninstruction: Which topic?\n"
        "columns: {text: headline, label: topic}\nbatch_size: 4\nshots: 3\n"
    )
    task = load_task(str(tmp_path / "topic.yaml"))
    assert task.labels == ("sports", "politics") and task.columns.text == "headline" and task.batch_size == 4
    assert task.extra == {"shots": 3}  # unknown keys reach predictors that want them
    monkeypatch.setenv("POLYGLM_TASKS", str(tmp_path))
    assert load_task("topic").digest == task.digest and "topic" in available_tasks()


@pytest.mark.parametrize(
    ("spec", "text", "message"),
    [
        ("sentimint", None, "unknown task 'sentimint'"),
        ("scenario", None, "needs an argument: --task scenario:<pack>"),
        ("labels:x", None, "takes no argument"),
        ("bad.yaml", "predict: labels\ncolumns: {txt: a}\n", "unknown columns"),
        ("bad.yaml", "name: x\n", "has no `predict:`"),
        ("bad.yaml", "predict: [unclosed\n", "not valid YAML"),
        ("bad.yaml", "include: bad.yaml\npredict: labels\n", "nests deeper"),
    ],
)
def test_a_broken_task_is_one_clear_error(tmp_path, spec, text, message):
    if text is not None:
        (tmp_path / spec).write_text(text)
        spec = str(tmp_path / spec)
    with pytest.raises(InputError, match=message):
        load_task(spec)


def test_a_language_filter_that_matches_nothing_is_bad_input(tmp_path):
    from polyglm.evaluation.manifest import read_manifest
    from polyglm.evaluation.runner import RunOptions, select_rows

    (tmp_path / "d.jsonl").write_text('{"text": "hi", "lang": "en"}\n{"text": "你好", "lang": "zh"}\n')
    manifest = read_manifest(tmp_path / "d.jsonl")
    assert [r.lang for r in select_rows(manifest, RunOptions(task="labels", langs=("zh",)))] == ["zh"]
    with pytest.raises(InputError, match=r"no row .* has lang \['fr'\]; its rows have \['en', 'zh'\]"):
        select_rows(manifest, RunOptions(task="labels", langs=("fr",)))
