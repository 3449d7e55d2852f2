"""Stage 2 at inference on the tiny profile: its projectors are used, its LoRA is on for media turns only."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from polyglm.platform.adapters import AdapterError
from polyglm.platform.loader import load_platform
from polyglm.platform.multimodal import drop_media_lora, load_multimodal, multimodal_for


@pytest.fixture(scope="module")
def stage2_run(tiny_platform, tmp_path_factory):
    from polyglm.pipelines.train_adapter import Stage2Options, TrainOptions, train_adapter, train_stage2

    root = tmp_path_factory.mktemp("stage2")
    for modality in ("audio", "image"):
        train_adapter(TrainOptions(profile="tiny", modality=modality, items=20, epochs=1, batch_size=4, lr=5e-3,
                                   lm_dtype="float32", eval_generate=0, out_dir=root / modality),
                      platform=tiny_platform)  # fmt: skip
    options = Stage2Options(profile="tiny", adapters=(root / "audio", root / "image"), items=20, batch_size=4,
                            lr=5e-3, lm_dtype="float32", out_dir=root / "stage2")  # fmt: skip
    train_stage2(options, platform=tiny_platform)
    return root


def _platform_with(tiny_platform, root, stage2: str):
    platform = load_platform("tiny", device="cpu", settings=tiny_platform.settings)
    # absolute folders: ADAPTER_ROOT / "/abs/path" is the absolute path
    adapters = {"audio": str(root / "audio"), "image": str(root / "image")}
    platform.profile = dataclasses.replace(platform.profile, adapters=adapters, stage2=stage2)
    return platform


def _logits(platform) -> torch.Tensor:
    with torch.no_grad():
        return platform.lm.model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits


def test_stage2_lora_is_on_for_media_turns_and_off_for_text(tiny_platform, stage2_run):
    platform = _platform_with(tiny_platform, stage2_run, str(stage2_run / "stage2"))
    base = _logits(platform)
    mm = multimodal_for(platform)
    assert mm.media_lora is not None
    from safetensors.torch import load_file

    # the stage-2 projector is the one in use, not stage 1's
    stage2_weights = load_file(stage2_run / "stage2" / "image" / "adapter.safetensors")
    used = mm.projectors["image"].state_dict()
    assert all(torch.equal(used[k], stage2_weights[k]) for k in stage2_weights)
    assert torch.equal(_logits(platform), base)  # text-only turns: the base LM's answers
    with mm.media_lora_on():
        assert not torch.allclose(_logits(platform), base)
    assert torch.equal(_logits(platform), base)
    drop_media_lora(platform)  # before a scenario LoRA goes on
    assert torch.equal(_logits(platform), base) and not any("lora" in n for n, _ in platform.lm.model.named_modules())


def test_stage2_for_another_lm_is_refused(tiny_platform, stage2_run, tmp_path):
    import shutil

    other = tmp_path / "stage2"
    shutil.copytree(stage2_run / "stage2", other)
    manifest = json.loads((other / "stage2.json").read_text())
    (other / "stage2.json").write_text(json.dumps({**manifest, "lm_hash": "0123456789abcdef"}))
    platform = _platform_with(tiny_platform, stage2_run, str(other))
    with pytest.raises(AdapterError, match=r"trained on prepared:tiny-glm \(weights 0123456789abcdef\)"):
        load_multimodal(platform)


def test_loading_the_multimodal_model_twice_injects_the_lora_once(tiny_platform, stage2_run):
    platform = _platform_with(tiny_platform, stage2_run, str(stage2_run / "stage2"))
    first, second = load_multimodal(platform), load_multimodal(platform)
    assert first.media_lora is second.media_lora
    lora_layers = [n for n, _ in platform.lm.model.named_modules() if n.endswith("lora_A")]
    assert lora_layers and all(len(dict(m.named_children())) == 1 for n, m in platform.lm.model.named_modules()
                               if n.endswith("lora_A"))  # fmt: skip


def test_a_text_turn_waits_while_a_media_turn_has_the_lora_on(tiny_platform, stage2_run):
    """Two sessions share one LM: a text-only reply must not run under another turn's stage-2 LoRA."""
    import threading

    from polyglm.pipelines.chat import reply
    from polyglm.platform.engine import GenerationOptions

    platform = _platform_with(tiny_platform, stage2_run, str(stage2_run / "stage2"))
    expected = reply(platform, [{"role": "user", "content": "hello"}], GenerationOptions(max_new_tokens=4))
    mm = multimodal_for(platform)
    answers: list[str] = []
    text_turn = threading.Thread(target=lambda: answers.append(
        reply(platform, [{"role": "user", "content": "hello"}], GenerationOptions(max_new_tokens=4))))  # fmt: skip
    with mm.media_lora_on():  # a media turn is generating
        text_turn.start()
        text_turn.join(timeout=1.0)
        assert text_turn.is_alive() and not answers  # it waits instead of reading LoRA-changed weights
    text_turn.join(timeout=60)
    assert answers == [expected]


def test_two_first_media_turns_at_once_inject_the_lora_once(tiny_platform, stage2_run, monkeypatch):
    """Two app sessions' first media turns race to build the multimodal model: one build, one LoRA."""
    import threading
    import time

    import polyglm.platform.multimodal as multimodal

    platform = _platform_with(tiny_platform, stage2_run, str(stage2_run / "stage2"))
    real, builds = multimodal.apply_media_lora, []

    def slow_apply(*args):  # widen the window in which a second thread could start its own build
        builds.append(1)
        time.sleep(0.3)
        return real(*args)

    monkeypatch.setattr(multimodal, "apply_media_lora", slow_apply)
    models: list = []
    threads = [threading.Thread(target=lambda: models.append(multimodal_for(platform))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(builds) == 1 and models[0] is models[1]
