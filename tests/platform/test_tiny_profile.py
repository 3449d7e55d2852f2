"""The tiny profile: real code paths on random weights, with exact expectations where they are stable."""

import torch

from polyglm.platform.chat_format import GLM_SPECIAL_TOKENS


def test_tokenizer_has_glm_special_tokens_as_single_ids(tiny_platform):
    tokenizer = tiny_platform.lm.tokenizer
    for token in GLM_SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert ids == [tokenizer.convert_tokens_to_ids(token)], token


def test_chat_template_renders_glm4_layout(tiny_platform):
    rendered = tiny_platform.lm.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert rendered == "[gMASK]<sop><|system|>\nBe brief.<|user|>\n你好<|assistant|>\n"


def test_tokenizer_round_trips_chinese_and_english(tiny_platform):
    tokenizer = tiny_platform.lm.tokenizer
    text = "退货需要在七天内申请. Refunds take 5 days!"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_language_model_is_native_glm_with_known_lora_targets(tiny_platform):
    lm = tiny_platform.lm
    assert lm.model_type == "glm"
    module_names = {name.rsplit(".", 1)[-1] for name, _ in lm.model.named_modules()}
    assert set(lm.lora_targets) <= module_names
    assert lm.stop_token_ids == lm.tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|user|>", "<|observation|>"])


def test_lora_attaches_to_the_tiny_glm(tiny_platform):
    import copy

    from peft import LoraConfig, get_peft_model

    lm = tiny_platform.lm
    peft_model = get_peft_model(copy.deepcopy(lm.model), LoraConfig(r=4, target_modules=list(lm.lora_targets)))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in peft_model.parameters()) / 5


def test_vision_encoder_gives_patch_tokens_and_labels(tiny_platform):
    from PIL import Image

    images = [Image.new("RGB", (300, 200), "red"), Image.new("L", (50, 50), 128)]
    features = tiny_platform.vision.encode(images)
    assert features.shape == (2, 17, 64)  # 16 patches of a 64x64 input + the class token
    top = tiny_platform.vision.classify(images, top_k=3)
    assert len(top) == 2 and all(len(row) == 3 for row in top)
    assert abs(sum(p for _, p in tiny_platform.vision.classify(images[:1], top_k=10)[0]) - 1) < 1e-5


def test_speech_encoder_gives_whisper_frames(tiny_platform):
    import numpy as np

    features = tiny_platform.speech.encode(np.zeros(16000, dtype=np.float32))
    assert features.shape == (1, 1500, 64)


def test_a_voice_notes_window_is_encoded_once_for_its_features_and_its_language(tiny_platform):
    import numpy as np

    speech = tiny_platform.speech
    clip = np.random.default_rng(1).normal(0, 0.1, 3 * 16_000).astype("float32")
    passes = []  # one entry per run of the Whisper encoder
    handle = speech.model.encoder.register_forward_hook(lambda *_: passes.append(1))
    try:
        features = speech.encode_clips([clip])[0]
        speech.likeliest_language(clip, ["en", "zh"])
    finally:
        handle.remove()
    assert len(passes) == 1
    # the kept states are the ones a pass of their own gives
    assert torch.allclose(features, speech.encode(clip)[0][: features.shape[0]], atol=1e-5)


def test_a_short_clip_is_transcribed_in_one_decoding_pass_over_the_whole_clip(tiny_platform):
    import numpy as np

    clip = np.random.default_rng(2).normal(0, 0.1, 2 * 16_000).astype("float32")
    segments = tiny_platform.speech.transcribe(clip, language="en")["segments"]
    # without timestamps whisper decodes the clip once, as one segment; with them it seeks back and forth
    assert [(s["start"], s["end"]) for s in segments] == [(0.0, 2.0)]


def test_embedder_returns_unit_vectors(tiny_platform):
    vectors = tiny_platform.embedder.embed(["退款", "a refund please", "weather"])
    assert vectors.shape == (3, 64)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_parts_load_once_and_record_stats(tiny_platform):
    assert tiny_platform.lm is tiny_platform.lm
    stats = tiny_platform.stats["language_model"]
    assert stats.device == "cpu" and stats.dtype == "float32" and stats.parameters > 0
    assert stats.source == "prepared:tiny-glm"
