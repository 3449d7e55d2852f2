"""Adapter training end to end on the tiny profile (seconds); a reduced real retrain is `slow`."""

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from polyglm.pipelines import adapter_data
from polyglm.pipelines.train_adapter import TrainOptions, examples, held_out_loss, prepare_model, train_adapter
from polyglm.platform.adapters import load_adapter
from polyglm.platform.multimodal import part_identity


def _options(tmp_path, modality, **kw) -> TrainOptions:
    base = TrainOptions(profile="tiny", modality=modality, items=20, epochs=1, batch_size=4, lm_dtype="float32",
                        eval_generate=4, checkpoint_every=2, out_dir=tmp_path / modality)  # fmt: skip
    return replace(base, **kw)


@pytest.mark.parametrize("modality", ["audio", "image"])
def test_training_writes_a_loadable_adapter_with_manifest_and_curve(tiny_platform, tmp_path, modality):
    metrics = train_adapter(_options(tmp_path, modality), platform=tiny_platform)
    out = tmp_path / modality
    assert (out / "loss.png").stat().st_size > 5_000
    manifest = json.loads((out / "manifest.json").read_text())
    # audio: one set of 20 (2 held out); image: five kinds of 4 items, index 0 of each held out
    held_out, steps = {"audio": (2, 5), "image": (5, 4)}[modality]
    assert manifest["metrics"]["held_out_items"] == held_out
    assert manifest["metrics"]["train_items"] == 20 - held_out
    assert manifest["data"]["split"] == "index % 10 == 0 held out"
    role = {"audio": "speech", "image": "vision"}[modality]
    projector, _ = load_adapter(
        out, *part_identity(tiny_platform, role), *part_identity(tiny_platform, "language_model")
    )
    assert metrics["steps"] == steps
    # the saved adapter is the trained projector: its held-out loss is the one measured after training
    options = _options(tmp_path, modality)
    mm = prepare_model(options, tiny_platform)
    _, test, _ = examples(mm, options)
    loaded = held_out_loss(mm, projector, modality, test, options.batch_size)
    assert loaded == pytest.approx(metrics["held_out_loss_after"], abs=1e-4)
    assert metrics["held_out_loss_after"] < metrics["held_out_loss_before"], metrics


# A real stage-1 run in its own process. With `pause`, the run stops after its third training step, one
# step past its checkpoint at step 2 (step 3 is trained but not saved), and waits there to be killed. The
# child counts the training steps it ran itself, so a rerun that started over would show.
TRAIN_CHILD = """
import json, sys, time
from pathlib import Path
import torch
from polyglm.pipelines import train_adapter as ta

out, pause = Path(sys.argv[1]), sys.argv[2] == "pause"
trained, real_loss = [], ta.batch_loss

def batch_loss(*args):
    if torch.is_grad_enabled():  # a training step; held-out losses run under no_grad
        if pause and len(trained) == 3:
            (out / "paused").touch()
            time.sleep(600)
        trained.append(args)
    return real_loss(*args)

ta.batch_loss = batch_loss
options = ta.TrainOptions(profile="tiny", modality="image", items=20, epochs=2, batch_size=4, lr=5e-3,
                          lm_dtype="float32", eval_generate=0, checkpoint_every=2, out_dir=out)
metrics = ta.train_adapter(options)
print(json.dumps({**metrics, "trained_here": len(trained)}))
"""


def _train_child(out, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, str(out), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _finished(child: subprocess.Popen) -> dict:
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr[-3000:]
    return json.loads(stdout.splitlines()[-1])


def test_killed_run_resumes_from_its_checkpoint_to_the_same_adapter(tiny_platform, tmp_path):
    """SIGKILL a real run after its first checkpoint, rerun it: the adapter is the one an unbroken run makes.

    Equal to the bit, not merely close: the resumed run restores the projector, the AdamW moments and
    step counts and the RNG from the checkpoint, replays the seeded batch schedule from the saved step,
    and reads the same cached encoder features, so every later step does the same float operations
    in the same order on the same values (same CPU, same thread count)."""
    import torch
    from safetensors.torch import load_file

    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    broken.mkdir()
    reference, victim = _train_child(unbroken, "run"), _train_child(broken, "pause")
    deadline = time.monotonic() + 120
    while not (broken / "paused").exists():
        assert victim.poll() is None, victim.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never reached its third step"
        time.sleep(0.2)
    assert torch.load(broken / "checkpoint.pt", weights_only=True)["step"] == 2  # step 3 ran but is not saved
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL and not (broken / "adapter.safetensors").exists()
    resumed, whole = _finished(_train_child(broken, "run")), _finished(reference)

    # 15 training images in batches of 4, two epochs: 8 steps; the rerun did 3-8, not 1-8.
    assert whole["steps"] == resumed["steps"] == 8
    assert (whole["trained_here"], resumed["trained_here"]) == (8, 6)
    expected, got = load_file(unbroken / "adapter.safetensors"), load_file(broken / "adapter.safetensors")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed["held_out_loss_after"] == whole["held_out_loss_after"]
    # ...and the run learned something: the held-out caption loss fell
    assert whole["held_out_loss_after"] < whole["held_out_loss_before"] - 0.01, whole  # measured 7.245 -> 7.202


def test_split_rule_holds_out_every_tenth_item():
    items = [adapter_data.Item(i, f"f{i}", "t", {}) for i in range(30)]
    assert [i.index for i in items if i.is_test] == [0, 10, 20]


def test_data_is_varied_and_deterministic():
    first = adapter_data.unique_sentences(200, seed=0)
    assert first == adapter_data.unique_sentences(200, seed=0)
    assert len(set(first)) == 200 and len({s.split()[1] for s in first}) > 10
    assert adapter_data.shape_caption("red", "cross", 2) == "Two red crosses."


def test_image_items_are_split_evenly_over_the_five_kinds():
    assert adapter_data.image_split(400) == dict.fromkeys(adapter_data.IMAGE_KINDS, 80)
    assert list(adapter_data.image_split(12).values()) == [3, 3, 2, 2, 2]


@pytest.mark.parametrize(
    "make", [adapter_data.make_shape_items, adapter_data.make_text_items, adapter_data.make_symbol_items,
             adapter_data.make_chart_items],
)  # fmt: skip
def test_drawn_image_sets_are_reproducible_to_the_byte(tmp_path, make):
    """Same seed -> same captions and the same PNG bytes, so the set hash in a manifest reproduces."""
    from PIL import Image

    first, second = tmp_path / "a", tmp_path / "b"
    assert adapter_data.set_hash(adapter_data.write_set(first, make(first, 30, 0))) == adapter_data.set_hash(
        adapter_data.write_set(second, make(second, 30, 0))
    )
    items = adapter_data.read_set(first)
    assert len({item.target for item in items}) >= 15  # varied
    for item in items:
        image = Image.open(first / item.file)
        assert image.size == (224, 224) and image.mode == "RGB" and image.format == "PNG"


def test_new_image_kinds_have_captions_that_say_what_is_drawn(tmp_path):
    text = adapter_data.read_set(adapter_data.write_set(tmp_path, adapter_data.make_text_items(tmp_path, 40, 0)))
    assert all(f'"{item.meta["words"]}" written in {item.meta["colour"]}.' in item.target for item in text)
    assert {len(item.meta["words"].split()) for item in text} == {1, 2}
    assert len(adapter_data.WORDS) == len(set(adapter_data.WORDS)) >= 60
    assert adapter_data.text_caption("river", "blue") == 'The word "river" written in blue.'
    assert adapter_data.symbol_caption("heart", "red", 1) == "A red heart symbol."
    assert adapter_data.symbol_caption("star", "orange", 1) == "An orange star symbol."
    assert adapter_data.symbol_caption("star", "yellow", 3) == "Three yellow star symbols."
    assert adapter_data.chart_caption("bar", 4, "green") == "A bar chart with four bars; the tallest bar is green."
    assert adapter_data.chart_caption("pie", 3, "red") == "A pie chart with three slices; the largest slice is red."
    assert adapter_data.chart_caption("line", trend="rises") == "A line chart that rises."
    charts = list(adapter_data.make_chart_items(tmp_path, 60, 0))
    assert {item.meta["chart"] for item in charts} == {"bar", "pie", "line"}


def test_symbol_glyphs_come_from_the_bundled_dejavu_font():
    """No colour-emoji font is needed: every symbol is a glyph of the DejaVu Sans that matplotlib ships."""
    from fontTools.ttLib import TTFont

    cmap = TTFont(adapter_data.font_path(adapter_data.SYMBOL_FONT)).getBestCmap()
    assert all(ord(glyph) in cmap for glyph in adapter_data.SYMBOLS.values())
    for name in adapter_data.WORD_FONTS:
        assert adapter_data.font_path(name).is_file()


def test_image_metrics_score_each_kind_and_the_ocr_path_for_text(monkeypatch, tmp_path):
    import torch

    from polyglm.pipelines import train_adapter as ta

    kinds = {"shape": "One red square.", "photo": "A photo of a cat.", "text": 'The word "river" written in blue.',
             "symbol": "A red heart symbol.", "chart": "A line chart that rises."}  # fmt: skip
    meta = {"text": {"words": "river", "colour": "blue"}}
    test = [ta.Example(torch.zeros(1), target, adapter_data.Item(0, f"{k}-00000.png", target, meta.get(k, {})))
            for k, target in kinds.items()]  # fmt: skip
    answers = ["One red square.", "A photo of a dog.", 'The word "river" written in red.', "A red heart symbol.",
               "A line chart that falls."]  # fmt: skip
    monkeypatch.setattr(ta, "generate_targets", lambda *a: answers)

    class Ocr:
        def read(self, image):
            return [("River", 0.99)]

    mm = type("MM", (), {"platform": type("P", (), {"ocr": Ocr()})()})()
    from PIL import Image

    Image.new("RGB", (224, 224)).save(tmp_path / "x.png")
    metrics = ta.image_metrics(mm, None, test, lambda item: tmp_path / "x.png")
    assert metrics["shape_caption_accuracy"] == 1.0 and metrics["photo_caption_accuracy"] == 0.0
    assert metrics["text_caption_accuracy"] == 0.0 and metrics["text_word_accuracy"] == 1.0
    assert metrics["text_ocr_path_word_accuracy"] == 1.0 and metrics["text_ocr_path_accuracy"] == 0.0
    assert metrics["symbol_caption_accuracy"] == 1.0 and metrics["chart_caption_accuracy"] == 0.0
    assert metrics["chart_chance_accuracy"] == round(1 / 12, 4) and metrics["photo_chance_accuracy"] == 1.0
    assert all(metrics[f"{k}_held_out_items"] == 1 for k in kinds)


@pytest.mark.slow
def test_reduced_real_image_adapter_retrain_halves_held_out_loss(offline_platform, tmp_path):
    """A small from-scratch retrain of the offline image adapter: held-out loss must at least halve.

    36 steps in the dtype the hardware runs natively (bf16 with AMX/AVX512-BF16, else fp32). At lr 2e-3
    fp32 reached only 0.53 of the starting loss in 36 steps, so the rate is 4e-3 (measured fp32 4.23 ->
    1.35, ratio 0.32, 3.4 s a step on 2 cores held to AVX2: see README, Precision)."""
    options = TrainOptions(profile="offline", modality="image", items=100, epochs=3, batch_size=8, lr=4e-3,
                           eval_generate=8, out_dir=tmp_path / "image")  # fmt: skip
    metrics = train_adapter(options)  # its own platform, dtype from precision.choose_dtype("training")
    assert metrics["held_out_loss_after"] <= 0.5 * metrics["held_out_loss_before"], metrics


def test_stage2_trains_projectors_and_lora_on_mixed_data(tiny_platform, tmp_path):
    from polyglm.pipelines.train_adapter import Stage2Options, train_stage2

    for modality in ("audio", "image"):
        train_adapter(_options(tmp_path, modality), platform=tiny_platform)
    metrics = train_stage2(
        Stage2Options(profile="tiny", adapters=(tmp_path / "audio", tmp_path / "image"), items=20, batch_size=4,
                      lm_dtype="float32", out_dir=tmp_path / "stage2"),
        platform=tiny_platform,
    )  # fmt: skip
    assert {"held_out_loss_text_before", "held_out_loss_audio_after", "held_out_loss_image_after"} <= set(metrics)
    assert (tmp_path / "stage2" / "lora" / "adapter_model.safetensors").is_file()
    manifest = json.loads((tmp_path / "stage2" / "image" / "manifest.json").read_text())
    assert manifest["metrics"]["stage2"]["train_samples"] == metrics["train_samples"]


def test_stage2_text_only_held_out_pairs_never_reach_training():
    from polyglm.pipelines.train_adapter import TEXT_ONLY, Stage2Options, stage2_samples

    samples = stage2_samples(None, Stage2Options(), modalities=[])
    held_out = {(s.question, s.answer) for s in samples if s.is_test}
    trained = {(s.question, s.answer) for s in samples if not s.is_test}
    assert held_out and not held_out & trained
    assert held_out | trained == set(TEXT_ONLY)
