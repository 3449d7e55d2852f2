"""Bad input through the real console script: one clear `error:` line and a non-zero exit, never a
traceback and never a silent answer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def polyglm(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "polyglm", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


def one_error_line(out: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line the CLI printed, after checking the exit code and the absence of a traceback."""
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, out.stderr[-3000:]
    return lines[0]


def test_a_cache_that_is_a_file_names_the_file_and_the_fix(tmp_path):
    cache = tmp_path / "not-a-folder"
    cache.write_text("I am a file")
    out = polyglm("models", "prepare", "--profile", "tiny", env={"POLYGLM_CACHE": str(cache)})
    line = one_error_line(out)
    assert line == (
        f"error: the polyglm cache {cache} is a file, not a folder: set POLYGLM_CACHE to a folder "
        f"(or move the file away), then rerun `polyglm models prepare`"
    )
    assert out.stderr.strip() == line  # nothing else: no progress bar before it
    assert cache.read_text() == "I am a file"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--modality", "image", "--items", "0"],
         "--items 0 gives 0 training and 0 held-out image examples (index % 10 == 0 is held out in each of the "
         "five image kinds); use --items 6 or more"),
        (["--modality", "audio", "--items", "1"], "--items 1 gives 0 training and 1 held-out audio examples"),
        (["--modality", "audio", "--items", "20", "--epochs", "0", "--batch-size", "0"],
         "--epochs must be at least 1, got 0; --batch-size must be at least 1, got 0"),
        (["--modality", "image", "--spec", "mlp9x_relu"], "--spec: unknown projector spec 'mlp9x_relu'"),
        (["--stage", "2", "--items", "3"], "stage 2 starts from stage-1 adapters: add --adapters DIR"),
    ],
)  # fmt: skip
def test_train_adapter_options_are_checked_before_any_work(tmp_path, args, expected):
    out = polyglm("train-adapter", "--profile", "tiny", "--out", str(tmp_path / "run"), *args, timeout=120)
    line = one_error_line(out)
    assert line.startswith("error: train-adapter") and expected in line
    assert not (tmp_path / "run").exists()  # refused before the output folder or any data was made


@pytest.mark.parametrize("message", ["", "   \n\t"])
def test_labels_for_an_empty_post_are_refused(tiny_platform, message):
    out = polyglm("chat", "--profile", "tiny", "--scenario", "social_sentiment", "--message", message, "--labels")
    line = one_error_line(out)
    assert line == "error: the message is empty: write some text (or attach an image or a voice note)"
    assert out.stdout == ""


def test_a_100_kb_message_is_refused_with_the_limit_and_the_fix(tiny_platform):
    message = ("Where is my parcel? " * 5_120)[:102_400]
    out = polyglm("chat", "--profile", "tiny", "--scenario", "customer_service", "--message", message, "--json")
    line = one_error_line(out)
    assert line.startswith("error: the message is 102,400 characters; scenario chat takes at most 8,000 ")
    assert "(ScenarioAssistant.max_message_chars)" in line and "shorten it or send it in parts" in line
    assert out.stdout == ""
