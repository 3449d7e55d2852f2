"""A tool's time limit really stops it: after a timeout nothing the tool started goes on running."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from polyglm.scenarios.loader import load_pack
from polyglm.scenarios.schema import ScenarioError
from polyglm.scenarios.tooling import call_tool, load_tools, tool
from tests.scenarios.conftest import TOOLS_PY, write_pack

LIMIT_S = 0.3
TIMED_OUT = f"timed out after {LIMIT_S:g} s"


@tool(timeout_s=LIMIT_S)
def sleeps_then_writes(marker: str, seconds: float) -> dict:
    """Sleep, then write a marker file.

    Args:
        marker: File to write.
        seconds: How long to sleep first.
    """
    time.sleep(seconds)
    Path(marker).write_text("the tool ran on after its limit", encoding="utf-8")
    return {"slept": seconds}


@tool(timeout_s=LIMIT_S)
def spins_then_writes(marker: str, seconds: float) -> dict:
    """Busy-loop in pure Python (never releases the GIL for long), then write a marker file.

    Args:
        marker: File to write.
        seconds: How long to spin first.
    """
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    Path(marker).write_text("the tool ran on after its limit", encoding="utf-8")
    return {"spun": seconds}


@tool(timeout_s=LIMIT_S)
def starts_a_child(marker: str, seconds: float) -> dict:
    """Start a child process that writes a marker later, then wait for it.

    Args:
        marker: File the child writes.
        seconds: When the child writes it.
    """
    child = subprocess.Popen(["sh", "-c", f"sleep {seconds}; echo late > '{marker}'"])
    child.wait()
    return {"child": child.returncode}


@tool
def talks_and_echoes(text: str) -> dict:
    """Print to stdout (which must not disturb the call), then echo.

    Args:
        text: What to echo.
    """
    print("noise on stdout " * 100)
    return {"text": text, "cache": os.environ.get("POLYGLM_CACHE"), "cwd": os.getcwd()}


def _never_appears(marker: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        assert not marker.exists(), "the tool kept running after its time limit"
        time.sleep(0.05)


@pytest.mark.parametrize("overrunning", [sleeps_then_writes, spins_then_writes, starts_a_child])
def test_a_timed_out_tool_is_stopped_with_everything_it_started(tmp_path, overrunning):
    marker = tmp_path / "marker.txt"
    started = time.monotonic()
    call = call_tool(overrunning, {"marker": str(marker), "seconds": 1.0})
    assert call.error is not None and TIMED_OUT in call.error and call.result is None
    assert time.monotonic() - started < 1.0  # the caller did not wait for the tool
    _never_appears(marker, wait_s=2.0)  # 1 s after the limit the tool would have written it


def test_the_call_after_a_timeout_runs_normally(tmp_path):
    marker = tmp_path / "marker.txt"
    assert TIMED_OUT in call_tool(sleeps_then_writes, {"marker": str(marker), "seconds": 2.0}).error
    call = call_tool(sleeps_then_writes, {"marker": str(tmp_path / "quick.txt"), "seconds": 0.0})
    assert call.ok and call.result == {"slept": 0.0} and (tmp_path / "quick.txt").is_file()


def test_a_pack_tool_from_tools_py_is_stopped_too(packs_dir, tmp_path):
    slow = (
        "\n\nimport time as _time\nfrom pathlib import Path as _Path\n\n\n"
        "@tool(timeout_s=0.3)\n"
        "def slow(marker: str) -> dict:\n"
        '    """Sleep, then write.\n\n    Args:\n        marker: File to write.\n    """\n'
        "    _time.sleep(1.0)\n"
        '    _Path(marker).write_text("late")\n'
        "    return {}\n"
    )
    write_pack(packs_dir, overrides={"tools": ["echo", "slow"]}, tools_py=TOOLS_PY + slow)
    echo, slow_tool = load_tools(load_pack("demo", packs_dir))
    marker = tmp_path / "pack-marker.txt"
    assert TIMED_OUT in call_tool(slow_tool, {"marker": str(marker)}).error
    _never_appears(marker, wait_s=2.0)
    assert call_tool(echo, {"text": "ab", "times": 2}).result == {"text": "abab"}


def test_the_worker_sees_the_callers_environment_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYGLM_CACHE", str(tmp_path / "cache-a"))
    monkeypatch.chdir(tmp_path)
    first = call_tool(talks_and_echoes, {"text": "hi"})
    assert first.result == {"text": "hi", "cache": str(tmp_path / "cache-a"), "cwd": str(tmp_path)}
    monkeypatch.setenv("POLYGLM_CACHE", str(tmp_path / "cache-b"))  # a later change reaches the next call
    assert call_tool(talks_and_echoes, {"text": "again"}).result["cache"] == str(tmp_path / "cache-b")


def test_a_tool_defined_inside_a_function_is_refused_with_the_fix():
    @tool
    def local(text: str) -> dict:
        """Echo.

        Args:
            text: What to echo.
        """
        return {"text": text}

    with pytest.raises(ScenarioError, match=r"is defined inside a function; .* define it at the top level"):
        call_tool(local, {"text": "x"})


def test_warm_calls_are_cheap():
    call_tool(talks_and_echoes, {"text": "warm up"})
    started = time.monotonic()
    for index in range(50):
        assert call_tool(talks_and_echoes, {"text": str(index)}).ok
    assert (time.monotonic() - started) / 50 < 0.05  # measured ~1 ms per call on 2 busy cores


@tool
def reads_stdin(text: str) -> dict:
    """Try to read standard input (the worker's request channel must not be reachable).

    Args:
        text: What to echo.
    """
    import sys

    return {"text": text, "stdin": sys.stdin.read()}


def test_a_tool_cannot_read_or_write_the_workers_channels():
    assert call_tool(reads_stdin, {"text": "a"}).result == {"text": "a", "stdin": ""}
    assert call_tool(talks_and_echoes, {"text": "b"}).result["text"] == "b"  # the worker still answers
