"""The console script as a user runs it: a real subprocess, real exit codes and output."""

import json
import subprocess
import sys

import pytest


def polyglm(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyglm", *args], capture_output=True, text=True, timeout=timeout)


def test_models_list_json_shows_every_profile_with_parts_sizes_licences(tiny_platform):
    out = polyglm("models", "list", "--json")
    assert out.returncode == 0, out.stderr
    profiles = {p["name"]: p for p in json.loads(out.stdout)}
    assert {"tiny", "offline", "glm4-9b", "glm-edge"} <= set(profiles)
    tiny = profiles["tiny"]
    assert tiny["ready"] is True
    assert {p["role"] for p in tiny["parts"]} == {"language_model", "vision", "speech", "embedding", "ocr"}
    assert all(p["bytes"] > 0 and p["licence"] for p in tiny["parts"])
    stage2 = profiles["offline"]["stage2"]  # shipped in the repo, listed without loading anything
    assert (
        stage2["present"]
        and stage2["metrics"]["held_out_loss_image_after"] < stage2["metrics"]["held_out_loss_image_before"]
    )
    missing = [p for p in profiles["glm4-9b"]["parts"] if not p["present"]]
    assert all("glm4-9b" in p["problem"] for p in missing)


def test_unknown_profile_is_one_clear_line_and_exit_2():
    out = polyglm("models", "verify", "--profile", "gpt-17")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: unknown profile 'gpt-17'; available:")
    assert "Traceback" not in out.stderr


def test_verify_of_a_profile_without_weights_names_the_fix(tmp_path):
    out = polyglm("models", "verify", "--profile", "glm-edge")
    assert out.returncode == 2
    assert "hf download THUDM/glm-edge-1.5b-chat" in out.stderr


def test_chat_message_json_on_tiny(tiny_platform):
    out = polyglm("chat", "--profile", "tiny", "--message", "hello", "--max-new-tokens", "8", "--json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["profile"] == "tiny" and isinstance(payload["answer"], str) and payload["answer"]


def test_empty_chat_message_is_refused():
    out = polyglm("chat", "--profile", "tiny", "--message", "  ")
    assert out.returncode == 2 and "empty" in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["models", "--help"],
        ["chat", "--help"],
        ["app", "--help"],
        ["train-adapter", "--help"],
        ["finetune", "--help"],
    ],
)
def test_help_works(args):
    assert polyglm(*args).returncode == 0


def test_scenarios_list_json_comes_from_the_pack_folders():
    from polyglm.scenarios.loader import list_packs

    out = polyglm("scenarios", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == list_packs()
    assert all(r["train_items"] >= 200 and r["eval_items"] >= 50 for r in rows)


def test_every_command_shows_an_example_in_its_help():
    import argparse

    from polyglm.cli import build_parser

    def leaves(parser: argparse.ArgumentParser, path: str):
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            yield path, parser
        for action in actions:
            for name, child in action.choices.items():
                yield from leaves(child, f"{path} {name}".strip())

    commands = dict(leaves(build_parser(), ""))
    assert {"models prepare", "chat", "eval", "sentiment", "serve", "app"} <= set(commands)
    missing = [name for name, parser in commands.items() if "example" not in parser.format_help()]
    assert not missing, f"no example in --help of: {missing}"


def test_verify_prints_its_checks_as_json_and_fails_on_random_weights():
    out = polyglm("models", "verify", "--profile", "tiny", "--json")
    checks = json.loads(out.stdout)
    assert out.returncode == 1  # the tiny profile's random LM cannot say Paris
    assert {c["role"] for c in checks} >= {"language_model", "speech"} and not all(c["passed"] for c in checks)
