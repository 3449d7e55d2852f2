"""Fusion with masked_scatter (as transformers' LLaVA): placeholder counts, order, batches, generation."""

import pytest
import torch

from polyglm.platform.adapters import build_projector
from polyglm.platform.engine import GenerationOptions
from polyglm.platform.fusion import FusionError, MediaFeatures, build_batch, fuse
from polyglm.platform.multimodal import MultimodalModel


@pytest.fixture(scope="module")
def mm(tiny_platform):
    model = MultimodalModel(tiny_platform)
    d_llm = tiny_platform.lm.model.config.hidden_size
    model.attach("image", build_projector("mlp2x_gelu", 64, d_llm))
    model.attach("audio", build_projector("pool4_mlp2x_gelu", 64, d_llm))
    return model


def _media(modality: str, slots: int, d: int = 64, fill: float = 1.0) -> MediaFeatures:
    return MediaFeatures(modality, torch.full((slots, d), fill), name=f"{modality}-{slots}")


def test_features_land_exactly_on_placeholder_rows(mm):
    image, audio = _media("image", 3, fill=7.0), _media("audio", 2, fill=-5.0)
    messages = [{"role": "user", "content": ["Look ", image, " and listen ", audio, " please"]}]
    batch = build_batch(mm.lm, [messages], mm.placeholder_ids)
    ids = batch.input_ids[0]
    image_rows = ids == mm.placeholder_ids["image"]
    audio_rows = ids == mm.placeholder_ids["audio"]
    assert int(image_rows.sum()) == 3 and int(audio_rows.sum()) == 2
    embeds = batch.inputs_embeds[0]
    assert torch.all(embeds[image_rows] == 7.0) and torch.all(embeds[audio_rows] == -5.0)
    text_rows = ~(image_rows | audio_rows) & batch.attention_mask[0].bool()
    plain = mm.lm.model.get_input_embeddings()(ids[text_rows])
    assert torch.equal(embeds[text_rows], plain)


def test_glm_markers_wrap_each_media_run(mm):
    messages = [{"role": "user", "content": [_media("image", 2), "?"]}]
    batch = build_batch(mm.lm, [messages], mm.placeholder_ids)
    text = mm.lm.tokenizer.decode(batch.input_ids[0])
    assert "<|begin_of_image|><|image|><|image|><|end_of_image|>?" in text


def test_wrong_placeholder_count_raises(mm):
    embedding = mm.lm.model.get_input_embeddings()
    ids = torch.tensor([[5, mm.placeholder_ids["image"], mm.placeholder_ids["image"], 6]])
    with pytest.raises(FusionError, match=r"2 media placeholder tokens but the media .* give 3 feature rows"):
        fuse(embedding, ids, [_media("image", 3)], mm.placeholder_ids)


def test_typed_placeholder_text_without_media_raises(mm):
    messages = [{"role": "user", "content": "sneaky <|image|> token"}]
    with pytest.raises(FusionError, match="1 media placeholder tokens but the media"):
        build_batch(mm.lm, [messages], mm.placeholder_ids)


def test_modality_mismatch_raises(mm):
    embedding = mm.lm.model.get_input_embeddings()
    ids = torch.tensor([[mm.placeholder_ids["image"], mm.placeholder_ids["audio"]]])
    with pytest.raises(FusionError, match="media order does not match"):
        fuse(embedding, ids, [_media("audio", 1), _media("image", 1)], mm.placeholder_ids)


def test_mixed_batch_pads_left_for_generation_and_right_for_training(mm):
    text_only = [{"role": "user", "content": "hi"}]
    with_media = [{"role": "user", "content": [_media("image", 4), _media("audio", 3), "describe both"]}]
    gen = build_batch(mm.lm, [text_only, with_media], mm.placeholder_ids)
    assert gen.attention_mask[0, 0] == 0 and gen.attention_mask[0, -1] == 1  # left padded
    train = build_batch(
        mm.lm,
        [
            [*text_only, {"role": "assistant", "content": "hello"}],
            [*with_media, {"role": "assistant", "content": "ok"}],
        ],
        mm.placeholder_ids,
        train=True,
    )
    assert train.attention_mask[0, 0] == 1 and train.attention_mask[0, -1] == 0  # right padded
    for row in range(2):
        labelled = train.labels[row][train.labels[row] != -100]
        answer = ["hello", "ok"][row]
        assert mm.lm.tokenizer.decode(labelled).startswith(answer)


def test_padded_row_matches_unpadded_logits(mm):
    short = [{"role": "user", "content": [_media("image", 2, fill=0.1), "hi"]}]
    long = [{"role": "user", "content": "a much longer question with many more tokens in it"}]
    alone = build_batch(mm.lm, [short], mm.placeholder_ids)
    both = build_batch(mm.lm, [short, long], mm.placeholder_ids)
    model = mm.lm.model
    with torch.inference_mode():
        a = model(inputs_embeds=alone.inputs_embeds, attention_mask=alone.attention_mask).logits[0, -1]
        b = model(inputs_embeds=both.inputs_embeds, attention_mask=both.attention_mask).logits[0, -1]
    assert torch.allclose(a, b, atol=1e-4)


def test_generation_from_real_encoders_and_projectors(mm):
    from PIL import Image

    image_feats = mm.encoder_features_images([Image.new("RGB", (80, 60), "blue")])
    audio_feats = mm.encoder_features_audio([torch.randn(16000 * 2).numpy() * 0.1])
    image = mm.project("image", image_feats)[0]
    audio = mm.project("audio", audio_feats)[0]
    assert image.slots == 17 and audio.slots == 25  # 2 s = 100 frames, pooled by 4
    messages = [{"role": "user", "content": [image, "and", audio, "?"]}]
    ids = list(mm.stream(messages, GenerationOptions(max_new_tokens=6, repetition_penalty=1.0)))
    assert len(ids) == 6


def test_a_bad_file_in_a_batch_is_reported_and_the_others_succeed(mm, tmp_path):
    import subprocess

    from PIL import Image

    good_png = tmp_path / "good.png"
    Image.new("RGB", (64, 64), "green").save(good_png)
    liar = tmp_path / "liar.png"
    Image.new("RGB", (64, 64), "red").save(liar, format="JPEG")
    results = mm.encode_files(
        "image", [good_png, liar, b"", good_png.read_bytes()], names=["good.png", "liar.png", "empty.png", "upload.png"]
    )
    assert [r.error is None for r in results] == [True, False, False, True]
    assert "liar.png holds JPEG data" in results[1].error and "empty" in results[2].error
    assert results[0].features.slots == 17

    clip = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(clip), "hello there"], check=True)
    silent = tmp_path / "silent.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1", str(silent)], check=True
    )
    audio = mm.encode_files("audio", [clip, silent])
    assert audio[0].features is not None and "only silence" in audio[1].error
