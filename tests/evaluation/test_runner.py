"""`polyglm eval`: outputs, per-item failures, resuming after SIGKILL, run identity, comparison, Ray."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from polyglm.evaluation.runner import PREDICTIONS, RunOptions, read_records, run_eval
from polyglm.platform.errors import InputError
from tests.evaluation.conftest import write_dataset

BAD_LINES = (
    "bad-label,Nice,,,ecstatic\n"
    "escape,Nice,../../etc/passwd,,positive\n"
    "corrupt,Nice,media/broken.png,,positive\n"
    "empty,,,,neutral\n"
)


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyglm", "eval", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip


def test_a_run_scores_good_items_records_bad_ones_and_writes_every_output(tiny_platform, tmp_path):
    data = write_dataset(tmp_path / "d", rows=6, extra_lines=BAD_LINES)
    (tmp_path / "d" / "media" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    result = run_eval(RunOptions(task="labels", manifest=data, out=tmp_path / "run", profile="tiny", batch_size=4),
                      platform=tiny_platform, progress=False)  # fmt: skip
    records = {r["id"]: r for r in read_records(tmp_path / "run" / PREDICTIONS)}
    assert len(records) == 10 and result.items == 10 and result.failed == 4
    errors = {i: r["error"] for i, r in records.items() if "error" in r}
    assert set(errors) == {"bad-label", "escape", "corrupt", "empty"}
    assert "unknown label 'ecstatic'" in errors["bad-label"] and "outside the manifest's folder" in errors["escape"]
    assert "broken.png" in errors["corrupt"] and "no usable input" in errors["empty"]
    scored = [r for r in records.values() if "error" not in r]
    for record in scored:
        assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert record["predicted"] == max(record["probabilities"], key=record["probabilities"].get)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["classification"]["items"] == 6
    assert sum(map(sum, metrics["classification"]["confusion"])) == 6
    report = (tmp_path / "run" / "report.html").read_text()
    for caption in ("confusion matrix", "per-class bars", "reliability diagram", "latency histogram"):
        assert f'alt="{caption}"' in report
    assert "unknown label" in report
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["dataset_digest"] and run["task"] == "labels" and run["profile"] == "tiny"
    assert run["versions"]["torch"] and run["failed"] == 4


def test_the_cli_exit_code_says_whether_items_failed(tmp_path):
    data = write_dataset(tmp_path / "d", rows=2)
    ok = _cli(str(data), "--task", "labels", "--profile", "tiny", "--out", str(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr
    assert "accuracy" in ok.stdout and "report.html" in ok.stdout
    (tmp_path / "d" / "data.csv").open("a").write("x,,,,positive\n")
    failed = _cli(str(data), "--task", "labels", "--profile", "tiny", "--out", str(tmp_path / "failed"))
    assert failed.returncode == 3 and "failed x: no usable input" in failed.stdout
    bad = _cli(str(tmp_path / "nope.csv"), "--task", "labels", "--profile", "tiny")
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_a_run_killed_with_sigkill_resumes_without_losing_or_redoing_items(tiny_platform, tmp_path):
    rows = 40
    data = write_dataset(tmp_path / "d", rows=rows)
    data.write_text("\n".join(line for i, line in enumerate(data.read_text().splitlines()))  # text only: fast items
                    .replace("media/photo.png", "").replace("media/note.wav", "") + "\n")  # fmt: skip
    out = tmp_path / "run"
    command = [sys.executable, "-m", "polyglm", "eval", str(data), "--task", "labels", "--profile", "tiny",
               "--batch-size", "1", "--out", str(out)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        path = out / PREDICTIONS
        if path.is_file() and path.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = read_records(out / PREDICTIONS)
    assert 3 <= len(before) < rows, "the run must be killed mid-way"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert rerun.returncode == 0, rerun.stderr
    after = read_records(out / PREDICTIONS)
    ids = [r["id"] for r in after]
    assert len(ids) == len(set(ids)) == rows  # none lost, none twice
    assert after[: len(before)] == before  # finished items were kept as they were, not redone
    assert f"({rows - len(before)} new)" in rerun.stdout
    assert len(json.loads((out / "run.json").read_text())["attempts"]) == 2


def test_a_rerun_into_a_folder_of_another_dataset_is_refused(tiny_platform, tmp_path):
    first = write_dataset(tmp_path / "a", rows=2)
    options = RunOptions(task="labels", manifest=first, out=tmp_path / "run", profile="tiny")
    run_eval(options, platform=tiny_platform, progress=False)
    other = write_dataset(tmp_path / "b", rows=3)
    with pytest.raises(InputError, match="holds a run of another dataset_digest"):
        run_eval(RunOptions(task="labels", manifest=other, out=tmp_path / "run", profile="tiny"),
                 platform=tiny_platform, progress=False)  # fmt: skip
    again = run_eval(options, platform=tiny_platform, progress=False)  # the same run resumes: nothing new
    assert again.new == 0 and again.items == 2


def test_failed_items_are_retried_only_when_asked(tiny_platform, tmp_path):
    data = write_dataset(tmp_path / "d", rows=2, extra_lines="late,Nice,media/later.png,,positive\n")
    options = RunOptions(task="labels", manifest=data, out=tmp_path / "run", profile="tiny")
    # a missing file is a bad row; once it exists the manifest (and so its digest) changes: a new run folder
    first = run_eval(options, platform=tiny_platform, progress=False)
    assert first.failed == 1
    again = run_eval(options, platform=tiny_platform, progress=False)
    assert again.new == 0 and again.failed == 1


def test_a_retried_item_keeps_one_record_and_the_others_are_not_redone(tiny_platform, tmp_path, monkeypatch):
    """An item that failed at prediction time (a transient model error, not a bad row) is predicted again by
    --retry-failed; predictions.jsonl then holds one record per id, the new one."""
    from polyglm.evaluation.predictors import LabelsPredictor

    data = write_dataset(tmp_path / "d", rows=4)
    options = RunOptions(task="labels", manifest=data, out=tmp_path / "run", profile="tiny", batch_size=2)
    real = LabelsPredictor.predict

    def flaky(self, rows):
        if any(row.id == "item-002" for row in rows):
            raise InputError("the model server went away")
        return real(self, rows)

    monkeypatch.setattr(LabelsPredictor, "predict", flaky)
    assert run_eval(options, platform=tiny_platform, progress=False).failed == 1
    before = {r["id"]: r for r in read_records(tmp_path / "run" / PREDICTIONS)}
    monkeypatch.setattr(LabelsPredictor, "predict", real)
    again = run_eval(dataclasses.replace(options, retry_failed=True), platform=tiny_platform, progress=False)
    assert again.new == 1 and again.failed == 0
    lines = read_records(tmp_path / "run" / PREDICTIONS)
    assert sorted(r["id"] for r in lines) == [f"item-{i:03d}" for i in range(4)]
    after = {r["id"]: r for r in lines}
    assert "error" not in after["item-002"] and all(after[i] == before[i] for i in before if i != "item-002")


def test_compare_gives_paired_deltas_with_intervals(tiny_platform, tmp_path):
    data = write_dataset(tmp_path / "d", rows=12)
    for folder in ("a", "b"):
        run_eval(RunOptions(task="labels", manifest=data, out=tmp_path / folder, profile="tiny"),
                 platform=tiny_platform, progress=False)  # fmt: skip
    # B: every prediction right
    path = tmp_path / "b" / PREDICTIONS
    records = read_records(path)
    for r in records:
        r["predicted"] = r["label"]
        r["probabilities"] = {k: float(k == r["label"]) for k in r["probabilities"]}
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    same = _cli("--compare", str(tmp_path / "a"), str(tmp_path / "a"), "--json", "--resamples", "100")
    assert same.returncode == 0, same.stderr
    assert all(d["delta"] == 0 and d["low"] == d["high"] == 0 for d in json.loads(same.stdout)["deltas"])
    better = _cli("--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--resamples", "100")
    assert better.returncode == 0, better.stderr
    accuracy = next(line for line in better.stdout.splitlines() if line.startswith("accuracy "))
    assert accuracy.rstrip().endswith("*") and "1.0000" in accuracy  # B is perfect and the interval excludes 0


def test_ray_runner_gives_exactly_the_local_predictions(tiny_platform, tmp_path):
    pytest.importorskip("ray")
    data = write_dataset(tmp_path / "d", rows=8, extra_lines="bad,,,,positive\n")
    local = run_eval(RunOptions(task="labels", manifest=data, out=tmp_path / "local", profile="tiny", batch_size=4),
                     platform=tiny_platform, progress=False)  # fmt: skip
    ray = run_eval(RunOptions(task="labels", manifest=data, out=tmp_path / "ray", profile="tiny", batch_size=4,
                              runner="ray", ray_workers=2), progress=False)  # fmt: skip

    def predictions(folder):
        return {r["id"]: (r.get("predicted"), r.get("error")) for r in read_records(folder / PREDICTIONS)}

    def probabilities(folder):
        return [p for r in sorted(read_records(folder / PREDICTIONS), key=lambda r: r["id"])
                for p in r.get("probabilities", {}).values()]  # fmt: skip

    assert predictions(tmp_path / "ray") == predictions(tmp_path / "local")
    # one torch thread per actor sums in another order than the local run: equal to float rounding
    assert probabilities(tmp_path / "ray") == pytest.approx(probabilities(tmp_path / "local"), abs=1e-4)
    assert ray.metrics["classification"]["confusion"] == local.metrics["classification"]["confusion"]
