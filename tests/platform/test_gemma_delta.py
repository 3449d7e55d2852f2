"""The offline LM's shipped delta: chat layout, merging, and refusing a delta that is not the pinned one."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from polyglm.pipelines.finetune import answer_spans
from polyglm.platform import recipes
from polyglm.platform.convert.gemma import GEMMA_CHAT_TEMPLATE, base_fingerprint, merge_delta
from polyglm.platform.errors import PrepareError
from polyglm.platform.recipes import RECIPES, RepoFile, sha256_file
from polyglm.platform.tiny import build_tiny_glm


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-glm")
    build_tiny_glm(out)
    return out


def _delta(tmp_path: Path, lm_dir: Path, base: str) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """A LoRA with non-zero B saved as a delta folder, and the logits it gives on fixed ids."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    ids = torch.arange(5, 25).unsqueeze(0)
    with torch.no_grad():
        expected = peft(input_ids=ids).logits
    delta = tmp_path / "delta"
    peft.save_pretrained(delta / "lora")
    (delta / "manifest.json").write_text(json.dumps({"name": "test", "base_fingerprint": base, "lora": {"r": 4}}))
    return delta, ids, expected


def test_merged_model_gives_the_logits_of_base_plus_lora(tiny_lm_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_lm_dir, model_dir)
    delta, ids, expected = _delta(tmp_path, tiny_lm_dir, "base-1")
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(model_dir).eval()(input_ids=ids).logits
    info = merge_delta(model_dir, delta, "base-1")
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(model_dir).eval()(input_ids=ids).logits
    assert info["delta"].startswith("test")
    assert (merged - plain).abs().max() > 1e-2  # the delta changes the model ...
    torch.testing.assert_close(merged, expected, atol=1e-4, rtol=1e-4)  # ... into exactly base + LoRA


def test_delta_for_another_base_is_refused_before_anything_is_written(tiny_lm_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_lm_dir, model_dir)
    before = sha256_file(model_dir / "model.safetensors")
    delta, _, _ = _delta(tmp_path, tiny_lm_dir, "another-base")
    with pytest.raises(PrepareError, match=r"trained on base 'another-base'.*retrain it: polyglm lm-sft"):
        merge_delta(model_dir, delta, "base-1")
    assert sha256_file(model_dir / "model.safetensors") == before


def test_unreadable_delta_manifest_names_the_fix(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(PrepareError, match=r"unreadable.*git checkout"):
        merge_delta(tmp_path, tmp_path, "base-1")


def test_repo_file_checks_its_pinned_hash(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "PACKAGE_ROOT", tmp_path)
    (tmp_path / "delta.bin").write_bytes(b"trained weights")
    pinned = RepoFile("delta.bin", sha256_file(tmp_path / "delta.bin"))
    assert pinned.locate() == tmp_path / "delta.bin"
    (tmp_path / "delta.bin").write_bytes(b"trained weights, flipped")
    with pytest.raises(PrepareError, match=r"corrupt or truncated.*git checkout"):
        pinned.locate()
    (tmp_path / "delta.bin").unlink()
    with pytest.raises(PrepareError, match="is missing"):
        pinned.locate()


def test_every_shipped_delta_file_matches_its_pin():
    """A retrained delta committed without its new sha256 in recipes.py would fail every fresh `make run`."""
    pinned = [f for recipe in RECIPES.values() for f in recipe.inputs if isinstance(f, RepoFile)]
    assert pinned, "the offline LM recipe pins its delta files"
    for repo_file in pinned:
        assert repo_file.locate().is_file()


def test_base_fingerprint_changes_with_the_gguf_or_the_layout():
    assert base_fingerprint(["a", "b"]) != base_fingerprint(["a", "c"])
    assert base_fingerprint(["a", "b"]) == base_fingerprint(["a", "b"])


def test_chat_layout_labels_only_the_model_turns(tiny_lm_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    messages = [
        {"role": "system", "content": "Answer from the references."},
        {"role": "user", "content": "How long is the warranty?"},
        {"role": "assistant", "content": "One year. "},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text.endswith("<start_of_turn>system\nAnswer from the references.<end_of_turn>\n"
                         "<start_of_turn>user\nHow long is the warranty?<end_of_turn>\n"
                         "<start_of_turn>model\nOne year.<end_of_turn>\n")  # fmt: skip
    ids, spans = answer_spans(tokenizer, messages, [tokenizer.eos_token_id])
    ((start, end),) = spans
    assert "One year." in tokenizer.decode(ids[start:end]) and "warranty" not in tokenizer.decode(ids[start:end])
