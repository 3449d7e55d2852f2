"""The Batch evaluation page through AppTest on the tiny profile: an uploaded CSV with bad rows run to the end
in the background (progress, metrics, plots, failed rows, downloads), a resume that predicts nothing again,
manifests on the server only from the allowed roots, and the switches and refusals."""

from __future__ import annotations

import json
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.ui.test_app import _app, _png_with_text

CSV = (
    "id,text,image,label\n"
    "love,I love this phone,media/sign.png,positive\n"
    "awful,Terrible service and nobody came,,negative\n"
    "notice,Store opens at 9 am tomorrow,,neutral\n"
    "bad-label,Nice,,ecstatic\n"
    "escape,Nice,../../outside.png,positive\n"
)


@pytest.fixture
def batch_root(tmp_path, monkeypatch):
    """Uploads and run folders in a temporary folder; the server's batch slot idle before and after."""
    import polyglm.ui.batch_page as batch_page

    root = tmp_path / "batch"
    monkeypatch.setattr(batch_page, "BATCH_ROOT", root)
    runs = batch_page.batch_runs()
    yield root
    deadline = time.monotonic() + 120
    while runs.running() is not None and time.monotonic() < deadline:
        time.sleep(0.2)


def _wait(at: AppTest, timeout: float = 180) -> list[str]:
    """Rerun the page (as its fragment does every second) until the run ends; the progress texts seen."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        seen += [p.proto.text for p in at.get("progress")]
        if at.success or at.error:
            return seen
        assert seen, "no run started: no progress bar"
        time.sleep(0.3)
    raise TimeoutError(f"the batch run did not end in {timeout} s; progress seen: {seen[-3:]}")


def _upload(at: AppTest, files: list[tuple[str, bytes, str]], task: str = "labels") -> AppTest:
    at.selectbox(key="batch_task").set_value(task)
    at.file_uploader(key="batch_files").set_value(files)
    at.button(key="batch_start").click().run()
    assert not at.exception, at.exception
    return at


def test_an_uploaded_manifest_runs_to_the_end_with_metrics_plots_failed_rows_and_downloads(tiny_platform,
                                                                                          batch_root):  # fmt: skip
    from polyglm.evaluation.report import headline

    at = _app("batch")
    assert at.title[0].value == "Batch evaluation"
    assert "labels" in at.selectbox(key="batch_task").options
    assert "scenario:medical" in at.selectbox(key="batch_task").options  # the parameterised task, once per pack
    files = [("data.csv", CSV.encode(), "text/csv"), ("sign.png", _png_with_text("GREAT"), "image/png")]
    _upload(at, files)
    assert not at.error, at.error[0].value
    assert at.button(key="batch_start").disabled  # one run at a time while it goes
    seen = _wait(at)
    assert not at.error, at.error[0].value
    assert any(text.endswith(" s") and "items" in text for text in seen), seen  # the live progress bar
    [folder] = (batch_root).glob("*/runs/tiny-labels-*")
    assert at.success[0].value.startswith("5 items, 2 failed, 3 new in ")
    assert str(folder) in at.success[0].value
    # the uploaded image was placed where the manifest names it, inside the session's upload folder only
    [upload] = batch_root.glob("*/uploads/*")
    assert (upload / "media" / "sign.png").is_file() and not (batch_root.parent / "outside.png").exists()
    metrics = json.loads((folder / "metrics.json").read_text())
    table = at.dataframe[0].value
    assert dict(zip(table["metric"], table["value"], strict=True)) == pytest.approx(
        {k: round(v, 4) for k, v in headline(metrics).items()}
    )
    assert metrics["classification"]["items"] == 3  # the row with the image was scored, not failed
    captions = sorted(c for image in at.image for c in image.captions)  # two columns: drawn column by column
    assert captions == ["confusion matrix", "latency histogram", "per-class bars", "reliability diagram"]
    failed = at.dataframe[1].value
    reasons = dict(zip(failed["id"], failed["reason"], strict=True))
    assert set(reasons) == {"bad-label", "escape"}
    assert "unknown label 'ecstatic'" in reasons["bad-label"] and "outside the manifest's folder" in reasons["escape"]
    downloads = {b.proto.label: b for b in at.get("download_button")}
    assert set(downloads) == {"Download report.html", "Download predictions.jsonl"}
    # the same upload again resumes: nothing is predicted twice
    _upload(at, files)
    _wait(at)
    assert at.success[0].value.startswith("5 items, 2 failed, 0 new in ")
    assert "Resumed: 5 items were already in predictions.jsonl and were not predicted again." in [
        c.value for c in at.caption
    ]
    assert len((folder / "predictions.jsonl").read_text().splitlines()) == 5


def test_a_server_manifest_is_picked_only_from_the_allowed_roots(tiny_platform, batch_root, tmp_path, monkeypatch):
    import polyglm.ui.batch_page as batch_page

    runs = tmp_path / "runs"
    (runs / "data").mkdir(parents=True)
    (runs / "data" / "small.csv").write_text("id,text,label\na,I love it,positive\nb,Awful,negative\n")
    (runs / "old").mkdir()
    (runs / "old" / "predictions.jsonl").write_text("{}\n")  # the runner's output, not a manifest
    (tmp_path / "secret.csv").write_text("id,text,label\nx,secret,neutral\n")
    (runs / "data" / "link.csv").symlink_to(tmp_path / "secret.csv")  # points out of the root
    monkeypatch.setattr(batch_page, "ALLOWED_ROOTS", {"runs": runs})
    at = _app("batch")
    at.radio(key="batch_source").set_value("A manifest on this server").run()
    picker = at.selectbox(key="batch_server_manifest")
    assert picker.options == ["runs/data/small.csv"]
    at.button(key="batch_start").click().run()
    assert at.error[0].value == "choose a manifest from the list first"
    at.selectbox(key="batch_server_manifest").set_value("runs/data/small.csv")
    at.number_input(key="batch_limit").set_value(1)
    at.button(key="batch_start").click().run()
    _wait(at)
    assert not at.error, at.error[0].value
    assert at.success[0].value.startswith("1 items, 0 failed, 1 new in ")
    assert not at.dataframe[0].value.empty


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([], "nothing uploaded: add a CSV or JSONL manifest"),
        ([("sign.png", _png_with_text("HI"), "image/png")], "upload exactly one manifest (a .csv or .jsonl file)"),
        ([("a.csv", b"id,text\n", "text/csv"), ("b.jsonl", b"{}\n", "application/jsonl")], "got 2: a.csv, b.jsonl"),
    ],
)
def test_a_wrong_upload_is_refused_before_anything_runs(tiny_platform, batch_root, files, expected):
    at = _app("batch")
    _upload(at, files)
    assert expected in at.error[0].value, at.error[0].value
    assert not at.get("progress") and not list(batch_root.glob("*/runs/*"))


def test_a_shared_deployment_switches_batch_runs_off(tiny_platform, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["streamlit_app.py", "--profile", "tiny", "--no-batch"])
    at = _app("batch")
    assert not at.button and not at.file_uploader
    assert at.info[0].value == "Batch runs are switched off on this server (`polyglm app --no-batch`)."


def test_a_second_run_waits_for_the_one_going(tiny_platform, batch_root, tmp_path):
    from polyglm.evaluation.runner import RunOptions
    from polyglm.platform.errors import InputError
    from polyglm.ui.batch_page import BatchJob, batch_runs

    runs = batch_runs()
    other = BatchJob("labels on theirs.csv (tiny)", RunOptions(task="labels", out=tmp_path / "x"))
    runs.jobs["another-session"] = other  # another user's run, still going
    try:
        at = _app("batch")
        assert at.button(key="batch_start").disabled
        assert any("A batch run is going on this server (labels on theirs.csv (tiny))" in c.value for c in at.caption)
        with pytest.raises(InputError, match="a batch run is already going on this server"):
            runs.start("mine", BatchJob("mine", RunOptions(task="labels")), platform=None)
    finally:
        other.finished = time.time()
        runs.jobs.pop("another-session", None)
