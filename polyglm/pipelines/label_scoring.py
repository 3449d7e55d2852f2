"""Label scoring: a probability for every label from one forward pass, for anything that classifies.

An item (text, images, voice notes) becomes a chat prompt the way a chat turn does (attachments.py):
images and clips go through the profile's encoders and trained adapters and are fused into the LM's
input embeddings, and their OCR text and transcripts go beside the text as fenced evidence. The
engine (`choose_labels_batch`) then scores every allowed label word after the prompt, sharing the
prompt's key/value cache across the candidates: no generated text to parse, and the answer is
always a valid label.

Prompts with media features and text-only prompts are scored in separate groups: media turns run
with the stage-2 LoRA switched on (as chat does), text turns with it off. Within a group, the tokens
every prompt begins with (the instruction and worked examples) run once, and the prompts, longest
first, are left-padded into batches of `batch_size`; a row scores the same in any batch as alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyglm.pipelines.attachments import ReadAttachments, has_media, read_attachments, user_content
from polyglm.pipelines.chat import language_of
from polyglm.platform.config import MediaPolicy
from polyglm.platform.engine import choose_labels_batch, prefill_prefix
from polyglm.platform.fusion import fuse_prompts, generation_prompt
from polyglm.platform.loader import Platform
from polyglm.platform.multimodal import multimodal_for, text_turn

ANSWER_NAME = "label"  # the JSON key the scored answer opens with: {"label": "<label>"}


@dataclass(frozen=True)
class LabelInput:
    """One item to label; any combination of the three (scoring an item with none is refused)."""

    text: str = ""  # the item's own text; may be empty when its media carry it
    images: tuple = ()  # decoded images (PIL), as polyglm.platform.media.load_image returns them
    audio: tuple = ()  # 16 kHz mono float32 clips, as polyglm.platform.media.load_audio returns them


def answer_format(name: str, labels: Sequence[str]) -> str:
    """The line that tells the model the answer's shape (the shape the engine scores)."""
    choices = ", ".join(labels)
    return f'Answer with one JSON object on one line: {{"{name}": "<{choices.replace(", ", " | ")}>"}} ({choices}).'


def read_item(platform: Platform, item: Any, policy: MediaPolicy | None = None) -> ReadAttachments:
    """The item's media read three ways (adapter features, OCR text, transcripts); nothing for text only."""
    if not (item.images or item.audio):
        return ReadAttachments()
    return read_attachments(platform, item.images, item.audio, policy)


def item_conversation(
    instruction: str, text: str, read: ReadAttachments, lang: str | None = None, demonstrations: Sequence[dict] = ()
) -> list[dict]:
    """System instruction, worked examples, then the user turn: media features, the text, fenced evidence."""
    lang = lang or language_of(f"{text}\n{read.text}")
    content = user_content(text, read, lang)
    return [{"role": "system", "content": instruction}, *demonstrations, {"role": "user", "content": content}]


def score_conversations(
    platform: Platform,
    conversations: Sequence[Sequence[dict]],
    label_sets: Mapping[str, Sequence[str]],
    batch_size: int = 8,
    heads: Mapping[str, Callable[[Any], Any]] | None = None,
    media_heads: Mapping[str, Callable[[Any], Any]] | None = None,
) -> list[dict[str, dict[str, Any]]]:
    """Label scores after each conversation (ending with the user's turn, whose content may hold media
    features): per conversation, set -> {"label", "probabilities", "scores"} (see choose_labels_batch;
    `heads`: trained classifiers that score a set from the LM's hidden state instead of its label words;
    `media_heads`: the same for prompts with media features, when they differ)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    results: list[dict | None] = [None] * len(conversations)
    with_media = [i for i, c in enumerate(conversations) if has_media(c)]
    text_only = [i for i, c in enumerate(conversations) if not has_media(c)]
    for group, media in ((text_only, False), (with_media, True)):
        if not group:
            continue
        chosen = (media_heads or heads) if media else heads
        scored = _score_group(platform, [conversations[i] for i in group], label_sets, media, chosen, batch_size)
        for index, result in zip(group, scored, strict=True):
            results[index] = result
    return results  # type: ignore[return-value]


def _score_group(
    platform: Platform,
    conversations: Sequence[Sequence[dict]],
    label_sets: Mapping[str, Sequence[str]],
    media: bool,
    heads: Mapping[str, Callable[[Any], Any]] | None,
    batch_size: int,
) -> list[dict[str, dict[str, Any]]]:
    """Conversations of one kind (all text-only, or all with media) in batches of prompts of similar length
    (less padding to run), after their common first tokens have run once for all the batches."""
    import torch

    lm = platform.lm
    # Text-only prompts fuse nothing: no placeholder ids, so a typed "<|image|>" is just text, as in chat.
    model = multimodal_for(platform) if media else None
    placeholders = model.placeholder_ids if model else {}
    prompts = [generation_prompt(lm.tokenizer, c) for c in conversations]
    length = shared_prefix([ids for ids, _ in prompts], set(placeholders.values()))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i][0]), reverse=True)
    results: list[dict | None] = [None] * len(prompts)
    with model.media_lora_on() if model else text_turn(platform):
        prefix = None
        if length:
            with torch.inference_mode():  # the prefix is text: its embeddings are the tokens' own
                embeds = lm.model.get_input_embeddings()(torch.tensor([prompts[0][0][:length]], device=lm.model.device))
            prefix = prefill_prefix(lm.model, embeds)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            with torch.inference_mode():
                batch = fuse_prompts(lm, [prompts[i] for i in chunk], placeholders)
            scored = choose_labels_batch(lm.model, lm.tokenizer, batch.inputs_embeds, batch.attention_mask,
                                         label_sets, prefix=prefix, heads=heads)  # fmt: skip
            for index, result in zip(chunk, scored, strict=True):
                results[index] = result
    return results  # type: ignore[return-value]


MIN_SHARED_PREFIX = 16  # tokens; below this, running the prefix separately costs more than it saves


def shared_prefix(rows: Sequence[Sequence[int]], placeholders: set[int]) -> int:
    """How many first tokens every prompt (token ids) has in common (the instruction and worked examples),
    stopping before the first media placeholder (each row's features differ) and leaving every row at least
    one token of its own; 0 when that is too short to be worth sharing or there is one prompt."""
    if len(rows) < 2:
        return 0
    length = 0
    for column in zip(*rows, strict=False):
        if len(set(column)) > 1 or column[0] in placeholders:
            break
        length += 1
    length = min(length, min(len(r) for r in rows) - 1)
    return length if length >= MIN_SHARED_PREFIX else 0


def score_labels(
    platform: Platform,
    items: Sequence[Any],
    labels: Sequence[str],
    instruction: str,
    batch_size: int = 8,
    name: str = ANSWER_NAME,
) -> list[dict[str, float]]:
    """A probability for every label of each item (objects with `.text`, `.images`, `.audio`, such as
    LabelInput), in order. `instruction` says what to judge; the answer's JSON shape is appended to it."""
    from polyglm.platform.errors import InputError

    labels = list(labels)
    if len(set(labels)) != len(labels) or not labels:
        raise InputError(f"labels must be distinct and at least one, got {labels}")
    system = f"{instruction.strip()}\n{answer_format(name, labels)}"
    conversations = []
    for number, item in enumerate(items, start=1):
        if not (str(item.text).strip() or item.images or item.audio):
            raise InputError(f"item {number} has no text, image or audio: there is nothing to label")
        conversations.append(item_conversation(system, str(item.text), read_item(platform, item)))
    scored = score_conversations(platform, conversations, {name: labels}, batch_size)
    return [result[name]["probabilities"] for result in scored]
