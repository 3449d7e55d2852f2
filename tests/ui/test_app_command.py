"""`polyglm app`: safe defaults (this machine only, an upload cap) and the shared-deployment switches."""

from __future__ import annotations

import pytest

from polyglm import cli


@pytest.fixture
def started(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: calls.append(argv))
    return calls


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_app_listens_on_this_machine_only_by_default(started):
    cli.main(["app", "--profile", "tiny"])
    [argv] = started
    assert _option(argv, "--server.address") == "127.0.0.1"
    assert _option(argv, "--server.maxUploadSize") == "50"
    assert argv[argv.index("--") + 1 :] == ["--profile", "tiny"]  # no switch is off unless asked


def test_a_shared_deployment_passes_its_switches_to_the_script(started):
    from polyglm.ui.state import app_settings

    cli.main(["app", "--profile", "tiny", "--address", "0.0.0.0", "--max-upload-mb", "5", "--no-training",
              "--no-load-all", "--no-batch"])  # fmt: skip
    [argv] = started
    assert _option(argv, "--server.address") == "0.0.0.0" and _option(argv, "--server.maxUploadSize") == "5"
    script_args = argv[argv.index("--") + 1 :]
    settings = app_settings(script_args)
    assert (settings.profile, settings.training, settings.load_all, settings.batch) == ("tiny", False, False, False)
    assert app_settings(["--profile", "tiny"]).training  # on by default


def test_a_zero_upload_cap_is_bad_input(started, capsys):
    assert cli.main(["app", "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb must be at least 1" in capsys.readouterr().err and not started
