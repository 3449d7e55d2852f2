"""Label scoring (engine + label_scoring.py) on the tiny profile: batches equal single items, the cache
gives what full forward passes give, and media reach the LM through the adapters and as evidence text."""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest
import torch

from polyglm.pipelines.label_scoring import (
    LabelInput,
    item_conversation,
    read_item,
    score_conversations,
    score_labels,
)
from polyglm.platform.errors import InputError

INSTRUCTION = "Is the author of this post happy, unhappy or indifferent?"
LABELS = ["unhappy", "indifferent", "happy"]  # multi-token words on the tiny tokenizer: the cached tail path runs


def sign(text: str, size: tuple[int, int] = (360, 120)):
    from PIL import Image, ImageDraw, ImageFont

    from polyglm.pipelines.adapter_data import font_path

    image = Image.new("RGB", size, "white")
    font = ImageFont.truetype(str(font_path("DejaVuSans.ttf")), 36)
    ImageDraw.Draw(image).text((20, 35), text, fill="black", font=font)
    return image


def spoken(tmp_path, text: str) -> np.ndarray:
    from polyglm.platform.media import load_audio

    path = tmp_path / "note.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return load_audio(path)


@pytest.fixture(scope="module")
def media_platform(tiny_platform):
    """The tiny profile with random image and audio adapters attached (the tiny profile ships none)."""
    from polyglm.platform.adapters import build_projector
    from polyglm.platform.loader import load_platform
    from polyglm.platform.multimodal import MultimodalModel

    platform = load_platform("tiny", device="cpu", settings=tiny_platform.settings)
    platform.profile = dataclasses.replace(platform.profile, adapters={"image": "unused", "audio": "unused"})
    torch.manual_seed(0)
    model = MultimodalModel(platform)
    d_llm = platform.lm.model.config.hidden_size
    model.attach("image", build_projector("mlp2x_gelu", 64, d_llm))
    model.attach("audio", build_projector("pool4_mlp2x_gelu", 64, d_llm))
    platform.cached("multimodal", lambda: model)
    return platform


def test_label_words_tokenise_to_several_tokens(tiny_platform):
    """Guards the other tests: with one-token labels the cached tail path would not run at all."""
    lengths = [len(tiny_platform.lm.tokenizer.encode(f'{label}"', add_special_tokens=False)) for label in LABELS]
    assert max(lengths) > 1, lengths


def test_batches_score_like_single_items(media_platform, tmp_path):
    clip = spoken(tmp_path, "what a lovely day")
    items = [
        LabelInput(text="Great food, rude staff."),
        LabelInput(text="ok"),
        LabelInput(text="A much longer post about the train that was late again this morning, and the rain."),
        LabelInput(text="see the sign", images=(sign("CLOSED"),)),
        LabelInput(audio=(clip,)),
        LabelInput(text="both", images=(sign("SALE", (200, 90)),), audio=(clip,)),
    ]
    batched = score_labels(media_platform, items, LABELS, INSTRUCTION, batch_size=4)
    single = [score_labels(media_platform, [item], LABELS, INSTRUCTION, batch_size=1)[0] for item in items]
    for one, many in zip(single, batched, strict=True):
        assert list(one) == LABELS and sum(one.values()) == pytest.approx(1.0, abs=1e-6)
        assert [many[label] for label in LABELS] == pytest.approx([one[label] for label in LABELS], abs=1e-4)
    # The tiny LM's probabilities are nearly one-hot, so compare the label log-probabilities too: they move
    # when padding shifts a row's positions or leaks into its attention.
    conversations = [item_conversation(INSTRUCTION, i.text, read_item(media_platform, i)) for i in items]
    together = score_conversations(media_platform, conversations, {"label": LABELS}, batch_size=4)
    alone = [score_conversations(media_platform, [c], {"label": LABELS}, batch_size=1)[0] for c in conversations]
    for one, many in zip(alone, together, strict=True):
        expected = list(one["label"]["scores"].values())
        assert list(many["label"]["scores"].values()) == pytest.approx(expected, abs=2e-4)
    assert len({round(a["label"]["scores"]["happy"], 3) for a in alone}) == len(items)  # the items differ


def test_batched_engine_scores_match_full_forward_passes(tiny_platform):
    """Each label's score is its tokens' summed log-probability after the prompt and the labels chosen
    before it, exactly as a fresh forward pass over the whole sequence gives it, in a left-padded batch."""
    from polyglm.platform.engine import choose_labels_batch
    from polyglm.platform.fusion import build_batch

    lm = tiny_platform.lm
    conversations = [[{"role": "user", "content": text}] for text in ("short", "a rather longer message here")]
    sets = {"mood": LABELS, "level": ["1", "2", "3"]}
    batch = build_batch(lm, conversations, {})
    chosen = choose_labels_batch(lm.model, lm.tokenizer, batch.inputs_embeds, batch.attention_mask, sets)

    def encode(text: str) -> list[int]:
        return lm.tokenizer.encode(text, add_special_tokens=False)

    def from_scratch(prompt: list[int], prefix: str, label: str) -> float:
        head, tail = prompt + encode(prefix), encode(f'{label}"')
        with torch.inference_mode():
            logp = lm.model(input_ids=torch.tensor([head + tail])).logits[0].float().log_softmax(-1)
        return sum(logp[len(head) - 1 + i, t].item() for i, t in enumerate(tail))

    for conversation, result in zip(conversations, chosen, strict=True):
        prompt = lm.chat_ids(conversation)
        mood = [from_scratch(prompt, '{"mood": "', label) for label in LABELS]
        assert list(result["mood"]["scores"].values()) == pytest.approx(mood, abs=1e-3)
        best = result["mood"]["label"]
        assert best == LABELS[int(np.argmax(mood))]
        level = [from_scratch(prompt, f'{{"mood": "{best}", "level": "', label) for label in ["1", "2", "3"]]
        assert list(result["level"]["scores"].values()) == pytest.approx(level, abs=1e-3)


def test_a_head_scores_its_set_from_the_hidden_state_where_the_label_begins(tiny_platform):
    """A trained head reads what the output head reads at the label's first position (the same logits as a
    fresh forward pass over prompt + '{"mood": "'), its scores choose the label, and the next set is
    scored by its words after the label the head chose."""
    from polyglm.platform.engine import choose_labels_batch
    from polyglm.platform.fusion import build_batch

    lm = tiny_platform.lm
    conversations = [[{"role": "user", "content": text}] for text in ("short", "a rather longer message here")]
    weights = torch.randn(
        lm.model.config.get_text_config().hidden_size, len(LABELS), generator=torch.Generator().manual_seed(0)
    )
    seen = []

    def head(hidden):
        seen.append(hidden)
        return hidden @ weights

    batch = build_batch(lm, conversations, {})
    sets = {"mood": LABELS, "level": ["1", "2", "3"]}
    chosen = choose_labels_batch(lm.model, lm.tokenizer, batch.inputs_embeds, batch.attention_mask, sets,
                                 heads={"mood": head})  # fmt: skip
    (hidden,) = seen
    unheaded = choose_labels_batch(lm.model, lm.tokenizer, batch.inputs_embeds, batch.attention_mask, sets)
    for row, (conversation, result) in enumerate(zip(conversations, chosen, strict=True)):
        ids = lm.chat_ids(conversation) + lm.tokenizer.encode('{"mood": "', add_special_tokens=False)
        with torch.inference_mode():
            fresh = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            read = lm.model.get_output_embeddings()(hidden[row : row + 1].to(lm.model.dtype))[0].float()
        assert read.log_softmax(-1) == pytest.approx(fresh.log_softmax(-1), abs=1e-3)
        expected = (hidden[row] @ weights).tolist()
        assert list(result["mood"]["scores"].values()) == pytest.approx(expected, abs=1e-5)
        assert result["mood"]["label"] == LABELS[int(np.argmax(expected))]
        if result["mood"]["label"] == unheaded[row]["mood"]["label"]:
            # the same words after the same label; the two forwards may batch their matmuls differently (~1e-6)
            level, alone = result["level"], unheaded[row]["level"]
            assert level["label"] == alone["label"] and level["scores"] == pytest.approx(alone["scores"], abs=1e-4)


def test_a_set_scored_by_a_head_costs_one_forward_that_never_runs_the_output_head(tiny_platform):
    """The prompts and the answer's opening run in one forward pass, and where every set has a head it never
    projects onto the vocabulary (the largest matmul of a small LM, and a log-softmax over it)."""
    from polyglm.platform.engine import choose_labels_batch
    from polyglm.platform.fusion import build_batch

    lm = tiny_platform.lm
    batch = build_batch(lm, [[{"role": "user", "content": t}] for t in ("short", "a longer message")], {})
    forwards, projections = [], []
    hooks = [lm.model.register_forward_pre_hook(lambda *args: forwards.append(1)),
             lm.model.get_output_embeddings().register_forward_hook(lambda *args: projections.append(1))]  # fmt: skip
    try:
        choose_labels_batch(lm.model, lm.tokenizer, batch.inputs_embeds, batch.attention_mask, {"mood": LABELS},
                            heads={"mood": lambda hidden: hidden[:, : len(LABELS)]})  # fmt: skip
        assert len(forwards) == 1 and projections == []
        choose_labels_batch(lm.model, lm.tokenizer, batch.inputs_embeds, batch.attention_mask, {"mood": LABELS})
        assert projections  # label words are read from the logits
    finally:
        for hook in hooks:
            hook.remove()


def test_media_reach_the_lm_through_the_adapter_and_as_evidence(media_platform, tmp_path):
    item = LabelInput(text="look", images=(sign("CLOSED MONDAY"),), audio=(spoken(tmp_path, "hello there"),))
    read = read_item(media_platform, item)
    assert [f.modality for f in read.features] == ["image", "audio"] and all(f.slots > 0 for f in read.features)
    assert read.ocr == ["CLOSED MONDAY"] and read.transcripts and read.transcripts[0].strip()
    [user] = [m for m in item_conversation(INSTRUCTION, item.text, read) if m["role"] == "user"]
    assert user["content"][:2] == read.features  # features first, then the text with the fenced evidence
    assert "<<<IMAGE TEXT 1>>>\nCLOSED MONDAY\n<<<END IMAGE TEXT 1>>>" in user["content"][-1]
    assert "<<<VOICE NOTE 1>>>" in user["content"][-1]

    # the scores depend on the adapter's output: another projector gives other label log-probabilities
    def scores() -> dict[str, float]:
        [result] = score_conversations(
            media_platform,
            [item_conversation(INSTRUCTION, item.text, read_item(media_platform, item))],
            {"label": LABELS},
        )
        return result["label"]["scores"]

    before = scores()
    projector = media_platform.derived("multimodal").projectors["image"]
    saved = {k: v.clone() for k, v in projector.state_dict().items()}
    try:
        with torch.no_grad():
            for parameter in projector.parameters():
                parameter.mul_(3.0)
        after = scores()
    finally:
        projector.load_state_dict(saved)
    assert max(abs(before[k] - after[k]) for k in LABELS) > 1e-3


def test_an_item_with_nothing_to_label_is_refused(tiny_platform):
    with pytest.raises(InputError, match="item 2 has no text, image or audio"):
        score_labels(tiny_platform, [LabelInput(text="fine"), LabelInput(text="  ")], LABELS, INSTRUCTION)
    with pytest.raises(InputError, match="labels must be distinct"):
        score_labels(tiny_platform, [LabelInput(text="fine")], ["a", "a"], INSTRUCTION)


def test_the_shared_instruction_runs_once_for_all_batches(media_platform, monkeypatch):
    """The instruction every prompt of a group begins with runs once, whatever the number of batches; media
    prompts (another group: the stage-2 LoRA is on) get their own; batches hold prompts of similar length."""
    from polyglm.pipelines import label_scoring

    prefills, batches = [], []
    real_prefill, real_choose = label_scoring.prefill_prefix, label_scoring.choose_labels_batch

    def prefill(model, embeds):
        prefills.append(embeds.shape[1])
        return real_prefill(model, embeds)

    def choose(*args, prefix=None, **kwargs):
        batches.append((args[3].sum(1).tolist(), prefix.length if prefix else 0))
        return real_choose(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(label_scoring, "prefill_prefix", prefill)
    monkeypatch.setattr(label_scoring, "choose_labels_batch", choose)
    items = [LabelInput(text="Great food."), LabelInput(text="Late again, and the soup was cold when it came."),
             LabelInput(text="Fine."), LabelInput(text="The waiter was kind but the bill was wrong twice."),
             LabelInput(text="see", images=(sign("X"),)), LabelInput(text="look", images=(sign("Y"),))]  # fmt: skip
    score_labels(media_platform, items, LABELS, INSTRUCTION, batch_size=2)
    assert len(prefills) == 2 and min(prefills) >= label_scoring.MIN_SHARED_PREFIX  # text group, media group
    text_batches = batches[:2]
    assert [length for _, length in text_batches] == [prefills[0]] * 2  # one prefix for both text batches
    longest, shortest = (sorted(lengths) for lengths, _ in text_batches)
    assert min(longest) >= max(shortest)  # the two long posts share a batch, the two short ones the other


def test_the_shared_prefix_stops_before_media_and_leaves_each_row_a_token():
    from polyglm.pipelines import label_scoring

    assert label_scoring.shared_prefix([[5, 6, 7, 99, 8], [5, 6, 7, 99, 9]], {99}) == 0  # 3 tokens: not worth it
    long = [*range(1, 21), 99]
    assert label_scoring.shared_prefix([[*long, 1], [*long, 2]], {99}) == 20  # features differ per row
    assert label_scoring.shared_prefix([[*range(1, 31)], [*range(1, 31)]], set()) == 29  # one token each
    assert label_scoring.shared_prefix([[*range(1, 31)]], set()) == 0  # one prompt: nothing to share


@pytest.mark.slow
def test_a_short_post_scores_the_same_beside_one_longer_than_the_sliding_window(offline_platform):
    """Gemma's sliding-window layers measure distance in columns. A batch starting from the shared prefix
    pads between the prefix and each row's own tokens, so beside a post that takes the batch past the
    window a short post would lose prefix tokens it sees alone; such a batch runs its prompts whole."""
    from polyglm.pipelines.attachments import ReadAttachments
    from polyglm.pipelines.sentiment import score_sentiment, sentiment_conversation

    long = " ".join(["The waiter was kind but the bill was wrong again and again."] * 29)  # ~340 tokens
    conversations = [sentiment_conversation(t, ReadAttachments(), "en") for t in ("Great food.", long, "Fine.")]
    together = score_sentiment(offline_platform, conversations, 8)
    for result, conversation in zip(together, conversations, strict=True):
        [alone] = score_sentiment(offline_platform, [conversation], 8)
        assert result["sentiment"]["scores"] == pytest.approx(alone["sentiment"]["scores"], abs=1e-3)
