"""Fusion: put projected encoder features into the language model's input embeddings.

The chat template renders one placeholder token per feature slot (`<|image|>` / `<|audio|>`),
optionally between begin/end markers where the tokenizer has them (GLM-4 does). The placeholder
ids are never embedded: their rows are filled with `inputs_embeds.masked_scatter(mask, features)`,
as transformers' LLaVA does, and a count mismatch is an error.

A message's `content` is a string or a list of parts: strings and `MediaFeatures`, interleaved in
any order, any number of images and audio clips per turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from polyglm.platform.errors import PolyglmError

PLACEHOLDERS = {"image": "<|image|>", "audio": "<|audio|>"}
MARKERS = {"image": ("<|begin_of_image|>", "<|end_of_image|>"), "audio": ("<|begin_of_audio|>", "<|end_of_audio|>")}
IGNORE_INDEX = -100  # label value that the loss skips


class FusionError(PolyglmError):
    """Placeholders and features do not line up."""


@dataclass(frozen=True)
class MediaFeatures:
    """Projected features of one image or clip: (slots, d_llm)."""

    modality: str  # image or audio
    features: torch.Tensor  # already in the LM's embedding space
    name: str = ""  # file name, for error messages

    @property
    def slots(self) -> int:
        return int(self.features.shape[0])


def ensure_placeholder_tokens(tokenizer: Any) -> dict[str, int]:
    """Placeholder token ids, adding them to the tokenizer (never to the model) if missing."""
    missing = [t for t in PLACEHOLDERS.values() if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return {modality: tokenizer.convert_tokens_to_ids(token) for modality, token in PLACEHOLDERS.items()}


def _markers(tokenizer: Any, modality: str) -> tuple[str, str]:
    begin, end = MARKERS[modality]
    vocab = tokenizer.get_vocab()
    return (begin, end) if begin in vocab and end in vocab else ("", "")


def render_content(tokenizer: Any, content: str | Sequence[Any]) -> tuple[str, list[MediaFeatures]]:
    """Text with placeholder runs for each media part, and the media in order of appearance."""
    if isinstance(content, str):
        return content, []
    pieces, media = [], []
    for part in content:
        if isinstance(part, MediaFeatures):
            begin, end = _markers(tokenizer, part.modality)
            pieces.append(begin + PLACEHOLDERS[part.modality] * part.slots + end)
            media.append(part)
        else:
            pieces.append(str(part))
    return "".join(pieces), media


def render_messages(tokenizer: Any, messages: Sequence[dict]) -> tuple[list[dict], list[MediaFeatures]]:
    rendered, media = [], []
    for message in messages:
        text, found = render_content(tokenizer, message["content"])
        rendered.append({"role": message["role"], "content": text})
        media.extend(found)
    return rendered, media


def tokenize_chat(tokenizer: Any, messages: Sequence[dict], add_generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=add_generation_prompt, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def fuse(
    embedding: torch.nn.Module, input_ids: torch.Tensor, media: Sequence[MediaFeatures], placeholder_ids: dict
) -> torch.Tensor:
    """(B, L, D) embeddings with every placeholder row replaced by its feature row, in order."""
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for token_id in placeholder_ids.values():
        mask |= input_ids == token_id
    safe_ids = input_ids.masked_fill(mask, 0)  # placeholder ids may lie beyond the model's vocabulary
    embeds = embedding(safe_ids)
    n_slots = int(mask.sum())
    n_features = sum(m.slots for m in media)
    if n_slots != n_features:
        names = ", ".join(m.name or m.modality for m in media) or "none"
        raise FusionError(
            f"the prompt has {n_slots} media placeholder tokens but the media ({names}) give {n_features} "
            f"feature rows; render media parts with render_messages() and do not type placeholder tokens"
        )
    if not n_features:
        return embeds
    _check_modality_order(input_ids, mask, media, placeholder_ids)
    features = torch.cat([m.features for m in media]).to(device=embeds.device, dtype=embeds.dtype)
    return embeds.masked_scatter(mask.unsqueeze(-1).expand_as(embeds), features)


def _check_modality_order(
    input_ids: torch.Tensor, mask: torch.Tensor, media: Sequence[MediaFeatures], ids: dict
) -> None:
    """An image placeholder must receive image features (not audio): compare slot by slot."""
    by_id = {token_id: modality for modality, token_id in ids.items()}
    slot_modalities = [by_id[int(t)] for t in input_ids[mask].tolist()]
    feature_modalities = [m.modality for m in media for _ in range(m.slots)]
    if slot_modalities != feature_modalities:
        raise FusionError("media order does not match the placeholders: an image slot would get audio features")


@dataclass(frozen=True)
class FusedBatch:
    input_ids: torch.Tensor  # (B, L) with placeholder ids; padding where attention_mask is 0
    attention_mask: torch.Tensor  # (B, L)
    inputs_embeds: torch.Tensor  # (B, L, D) with features scattered in
    labels: torch.Tensor | None  # (B, L) target ids, IGNORE_INDEX elsewhere; None for generation


def build_batch(
    lm: Any,
    conversations: Sequence[Sequence[dict]],
    placeholder_ids: dict,
    train: bool = False,
) -> FusedBatch:
    """Pad and fuse several conversations. Training: pad right, label the last assistant turn only.
    Generation: pad left and end with the generation prompt."""
    if not train:
        return fuse_prompts(lm, [generation_prompt(lm.tokenizer, c) for c in conversations], placeholder_ids)
    tokenizer = lm.tokenizer
    rows, label_rows, all_media = [], [], []
    for conversation in conversations:
        rendered, media = render_messages(tokenizer, conversation)
        all_media.extend(media)
        prompt = tokenize_chat(tokenizer, rendered[:-1], add_generation_prompt=True)
        full = tokenize_chat(tokenizer, rendered, add_generation_prompt=False)
        if full[: len(prompt)] != prompt:
            raise FusionError("the chat template does not extend the prompt with the answer; cannot place labels")
        rows.append(full)
        label_rows.append([IGNORE_INDEX] * len(prompt) + full[len(prompt) :])
    input_ids, attention_mask = _pad(rows, _pad_id(tokenizer), left=False)
    labels = _pad(label_rows, IGNORE_INDEX, left=False)[0]
    return FusedBatch(input_ids, attention_mask, _fused(lm, input_ids, all_media, placeholder_ids), labels)


def generation_prompt(tokenizer: Any, conversation: Sequence[dict]) -> tuple[list[int], list]:
    """A conversation's token ids up to the generation prompt (placeholder ids where media go), and its media."""
    rendered, media = render_messages(tokenizer, conversation)
    return tokenize_chat(tokenizer, rendered, add_generation_prompt=True), media


def fuse_prompts(lm: Any, prompts: Sequence[tuple[list[int], list]], placeholder_ids: dict) -> FusedBatch:
    """Left-pad generation prompts (`generation_prompt`'s results) into one batch and fuse their media in."""
    input_ids, attention_mask = _pad([ids for ids, _ in prompts], _pad_id(lm.tokenizer), left=True)
    media = [item for _, found in prompts for item in found]
    return FusedBatch(input_ids, attention_mask, _fused(lm, input_ids, media, placeholder_ids), None)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _fused(lm: Any, input_ids: torch.Tensor, media: Sequence, placeholder_ids: dict) -> torch.Tensor:
    embedding = lm.model.get_input_embeddings()
    return fuse(embedding, input_ids.to(embedding.weight.device), media, placeholder_ids)


def _pad(rows: Sequence[Sequence[int]], value: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask
