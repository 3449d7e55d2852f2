"""Scenario LoRA fine-tuning on the tiny profile: labels, guard, defaults, resume (each test a few seconds).

Every run gets its own freshly loaded tiny platform: fine-tuning casts and wraps the LM, and the
session-wide `tiny_platform` must stay untouched for other tests.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from polyglm.pipelines import finetune
from polyglm.pipelines.finetune import (
    GENERAL_QA,
    FinetuneError,
    FinetuneOptions,
    chat_messages,
    conversation_rows,
    default_adapter,
    finetune_cli_summary,
    finetune_scenario,
    load_finetuned,
    observation_role,
    set_default,
)
from polyglm.platform.fusion import IGNORE_INDEX
from polyglm.platform.loader import load_platform

SCENARIO = "customer_service"
CONVERSATION = [
    {"role": "system", "content": "You help with orders."},
    {"role": "user", "content": "Where is my order A10050?", "image": "media/parcel.png"},
    {"role": "assistant", "content": "Checking now.",
     "tool_calls": [{"name": "order_lookup", "arguments": {"order_id": "A10050"}}]},
    {"role": "observation", "content": '{"status": "delivered"}'},
    {"role": "assistant", "content": "It was delivered on Monday."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You are welcome."},
]  # fmt: skip


def _fresh(tiny_platform):
    """A platform of its own (the tiny profile is prepared by the session fixture)."""
    return load_platform("tiny", device="cpu", settings=tiny_platform.settings)


def _options(tmp_path, **changes) -> FinetuneOptions:
    base = FinetuneOptions(scenario=SCENARIO, profile="tiny", max_items=12, max_tokens=256, batch_size=4,
                           lm_dtype="float32", checkpoint_every=2, out_dir=tmp_path / "run",
                           finetune_root=tmp_path / "root")  # fmt: skip
    return replace(base, **changes)


def _labelled_runs(row) -> list[list[int]]:
    runs, current = [], []
    for label in row.labels:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            runs, current = [*runs, current], []
    return [*runs, current] if current else runs


@pytest.fixture(scope="module")
def trained(tiny_platform, tmp_path_factory):
    """One small run shared by the read-only tests below."""
    tmp_path = tmp_path_factory.mktemp("finetune")
    return tmp_path, finetune_scenario(_options(tmp_path), platform=_fresh(tiny_platform))


def test_run_writes_lora_manifest_and_curve_and_becomes_default(trained):
    tmp_path, result = trained
    out = tmp_path / "run"
    assert (out / "lora" / "adapter_model.safetensors").is_file() and (out / "lora" / "adapter_config.json").is_file()
    assert (out / "loss.png").stat().st_size > 5_000
    manifest = json.loads((out / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert manifest["scenario"] == SCENARIO and manifest["profile"] == "tiny" and manifest["pack_version"] >= 1
    assert manifest["lm_id"] == "prepared:tiny-glm" and len(manifest["lm_hash"]) == 16
    assert len(manifest["data"]["sha256"]) == 64 and manifest["data"]["split"] == "index % 10 == 0 held out"
    assert metrics["train_conversations"] == 10 and metrics["held_out_conversations"] == 2  # items 0 and 10 held out
    assert metrics["steps"] == metrics["steps_this_run"] > 0
    assert metrics["assistant_turns_trained"] > metrics["train_conversations"]  # every turn, not only the last
    for key in ("scenario_loss_before", "scenario_loss_after", "general_loss_before", "general_loss_after"):
        assert 0 < metrics[key] < 20, key
    assert manifest["made_default"] and "within the forgetting threshold" in manifest["reason"]
    assert default_adapter("tiny", SCENARIO, tmp_path / "root") == out.resolve()
    summary = finetune_cli_summary(result)
    assert "held-out scenario loss" in summary and "default: yes" in summary and str(out / "lora") in summary


def test_labels_cover_every_assistant_turn_and_nothing_else(tiny_platform):
    tokenizer, stops = tiny_platform.lm.tokenizer, tiny_platform.lm.stop_token_ids
    messages, media = chat_messages({"id": "t", "messages": CONVERSATION}, observation_role(tokenizer))
    assert media == 1 and all(set(m) == {"role", "content"} for m in messages)
    rows, stats = conversation_rows(tokenizer, messages, 512, stops)
    assert len(rows) == 1 and stats.assistant_turns == 3 and not rows[0].truncated
    texts = [tokenizer.decode(run) for run in _labelled_runs(rows[0])]
    call = '<tool_call>{"name": "order_lookup", "arguments": {"order_id": "A10050"}}</tool_call>'
    # GLM closes a turn with the next role token: the model learns to hand over to the tool / the user.
    assert texts == [
        f"Checking now.\n{call}<|observation|>",
        "It was delivered on Monday.<|user|>",
        "You are welcome.<|endoftext|>",
    ]


def test_long_conversations_become_windows_that_never_cut_an_answer(tiny_platform):
    tokenizer, stops = tiny_platform.lm.tokenizer, tiny_platform.lm.stop_token_ids
    messages, _ = chat_messages({"messages": CONVERSATION}, observation_role(tokenizer))
    full, _ = conversation_rows(tokenizer, messages, 512, stops)
    whole = [tokenizer.decode(run) for run in _labelled_runs(full[0])]
    # 80 tokens hold every answer but not the whole conversation: two left-truncated windows.
    rows, stats = conversation_rows(tokenizer, messages, 80, stops)
    assert len(rows) == 2 and all(len(r.ids) <= 80 and r.truncated for r in rows)
    assert sorted(tokenizer.decode(run) for row in rows for run in _labelled_runs(row)) == sorted(whole)
    # 24 tokens cannot hold the tool-call answer: it is skipped and counted, never cut.
    rows, stats = conversation_rows(tokenizer, messages, 24, stops)
    windowed = [tokenizer.decode(run) for row in rows for run in _labelled_runs(row)]
    assert stats.answers_too_long == 1 and sorted(windowed) == sorted(whole[1:])


def test_tool_calls_are_rendered_as_scenario_chat_parses_them():
    from polyglm.pipelines.scenario_chat import parse_tool_call

    messages, _ = chat_messages({"messages": CONVERSATION}, "user")
    assert parse_tool_call(messages[2]["content"]) == ("order_lookup", {"order_id": "A10050"})
    assert messages[3] == {"role": "user", "content": 'Tool result: {"status": "delivered"}'}


def test_general_set_is_fixed_and_bilingual():
    langs = [lang for lang, _, _ in GENERAL_QA]
    assert langs.count("en") == 40 and langs.count("zh") == 20
    assert len({q for _, q, _ in GENERAL_QA}) == len(GENERAL_QA)


def test_selective_head_loss_matches_the_full_model_loss(tiny_platform):
    lm = tiny_platform.lm
    messages, _ = chat_messages({"messages": CONVERSATION}, observation_role(lm.tokenizer))
    rows, _ = conversation_rows(lm.tokenizer, messages, 512, lm.stop_token_ids)
    with torch.no_grad():
        ours = finetune.token_losses(lm.model, rows, 0, "cpu").mean()
        reference = lm.model(input_ids=torch.tensor([rows[0].ids]), labels=torch.tensor([rows[0].labels])).loss
    assert torch.allclose(ours, reference, atol=1e-5)


def test_guard_blocks_the_default_until_forced_and_keeps_the_previous_one(tiny_platform, tmp_path, monkeypatch):
    real = finetune.score_general

    def forgetful(model, *args, **kwargs):  # the tuned model (a PeftModel) scores 1 nat/token worse
        scores = real(model, *args, **kwargs)
        return {**scores, "general": scores["general"] + (1.0 if hasattr(model, "peft_config") else 0.0)}

    monkeypatch.setattr(finetune, "score_general", forgetful)
    options, root = _options(tmp_path, max_items=10), tmp_path / "root"
    platform = _fresh(tiny_platform)
    blocked = finetune_scenario(options, platform=platform)
    assert not blocked["made_default"] and blocked["metrics"]["relative_forgetting"] > 0.1
    assert blocked["reason"].startswith("forgetting guard") and default_adapter("tiny", SCENARIO, root) is None
    assert (tmp_path / "run" / "lora").is_dir()  # saved all the same
    assert "default: NO" in finetune_cli_summary(blocked)

    forced = finetune_scenario(replace(options, force=True), platform=platform)  # resumes: nothing retrained
    assert forced["made_default"] and forced["reason"].startswith("forced")
    assert forced["metrics"]["steps_this_run"] == 0
    assert default_adapter("tiny", SCENARIO, root) == (tmp_path / "run").resolve()

    # A rejected rerun in the same folder must not replace the adapter that is the default.
    again = finetune_scenario(options, platform=platform)
    assert not again["made_default"] and "stays the default" in again["reason"]
    kept = default_adapter("tiny", SCENARIO, root)
    assert kept == (tmp_path / "run" / "previous_default").resolve()
    assert json.loads((kept / "manifest.json").read_text())["made_default"]


def test_default_adapter_round_trip_through_load_finetuned(trained, tiny_platform):
    tmp_path, _ = trained
    platform = _fresh(tiny_platform)
    ids = torch.tensor([platform.lm.chat_ids([{"role": "user", "content": "Where is my order?"}])])
    with torch.no_grad():
        plain = platform.lm.model(input_ids=ids).logits
        manifest = load_finetuned(platform, SCENARIO, root=tmp_path / "root")
        tuned = platform.lm.model(input_ids=ids).logits
        load_finetuned(platform, SCENARIO, root=tmp_path / "root")  # again: replaces, never stacks
        again = platform.lm.model(input_ids=ids).logits
    assert manifest["scenario"] == SCENARIO and hasattr(platform.lm.model, "peft_config")
    assert not torch.equal(plain, tuned) and torch.equal(tuned, again)
    with pytest.raises(FinetuneError, match="no default fine-tuned adapter"):
        load_finetuned(platform, "education", root=tmp_path / "root")


def test_adapter_from_another_language_model_is_refused(trained, tiny_platform, tmp_path):
    source, _ = trained
    other = tmp_path / "other"
    shutil.copytree(source / "run", other, ignore=shutil.ignore_patterns("checkpoint.pt"))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest.update(lm_id="hub:THUDM/glm-4-9b-chat-hf", lm_hash="0123456789abcdef")
    (other / "manifest.json").write_text(json.dumps(manifest))
    set_default("tiny", SCENARIO, other, tmp_path / "root")
    platform = _fresh(tiny_platform)
    with pytest.raises(FinetuneError, match=r"glm-4-9b-chat-hf.*0123456789abcdef.*prepared:tiny-glm"):
        load_finetuned(platform, SCENARIO, root=tmp_path / "root")
    assert not hasattr(platform.lm.model, "peft_config")


def test_killed_run_resumes_from_its_checkpoint_without_redoing_steps(tiny_platform, tmp_path, monkeypatch):
    from polyglm.platform import trainer

    options = _options(tmp_path, max_items=10, batch_size=2)
    save = trainer.save_checkpoint

    def killed_after_step_2(path, trainable, optimizer, state, fingerprint):
        save(path, trainable, optimizer, state, fingerprint)
        if state.step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", killed_after_step_2)
    with pytest.raises(KeyboardInterrupt):
        finetune_scenario(options, platform=_fresh(tiny_platform))
    assert not (tmp_path / "run" / "manifest.json").exists()
    monkeypatch.setattr(trainer, "save_checkpoint", save)
    resumed = finetune_scenario(options, platform=_fresh(tiny_platform))
    metrics = resumed["metrics"]
    assert metrics["checkpoint"] == "resumed at step 2"
    assert metrics["steps_this_run"] == metrics["steps"] - 2 > 0
    # Other options do not resume someone else's trajectory.
    other = finetune_scenario(replace(options, lr=1e-3), platform=_fresh(tiny_platform))
    assert (
        other["metrics"]["checkpoint"].startswith("ignored") and other["metrics"]["steps_this_run"] == metrics["steps"]
    )


def test_bad_options_and_foreign_platform_are_refused(tiny_platform, tmp_path):
    with pytest.raises(FinetuneError, match="max_items must be at least 2"):
        finetune_scenario(_options(tmp_path, max_items=1), platform=tiny_platform)
    with pytest.raises(FinetuneError, match="profile 'tiny', options say 'offline'"):
        finetune_scenario(_options(tmp_path, profile="offline"), platform=tiny_platform)
