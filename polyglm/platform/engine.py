"""Generation engine: token ids in, token ids out. Prompts, templates and text live above it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 256  # hard cap on the reply length
    temperature: float = 0.0  # 0 means greedy decoding (reproducible)
    top_p: float = 0.9  # nucleus sampling mass, used only when temperature > 0
    repetition_penalty: float = 1.1  # >1 discourages loops, which small models fall into
    seed: int = 0  # sampling seed, so sampled replies can be reproduced


def generation_kwargs(model: Any, stop_ids: Sequence[int], options: GenerationOptions) -> dict:
    """The generate() arguments every caller shares: length, sampling, stops and padding."""
    sampling = options.temperature > 0
    return {
        "max_new_tokens": options.max_new_tokens,
        "do_sample": sampling,
        "repetition_penalty": options.repetition_penalty,
        # No stop ids means "run to max_new_tokens", so the model's own eos must not apply either.
        "eos_token_id": list(stop_ids) or [-1],
        "pad_token_id": stop_ids[0] if stop_ids else model.generation_config.pad_token_id,
        **({"temperature": options.temperature, "top_p": options.top_p} if sampling else {}),
    }


class _TokenQueue:
    """A transformers streamer that hands new token ids to the consuming thread."""

    _DONE = object()

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first echoes the prompt; callers want new tokens only
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.queue.put(token)

    def end(self) -> None:
        self.queue.put(self._DONE)

    def __iter__(self) -> Iterator[int]:
        while (item := self.queue.get()) is not self._DONE:
            if isinstance(item, BaseException):
                raise item
            yield item


def stream_tokens(
    model: Any,
    prompt_ids: Sequence[int] | None,
    stop_ids: Sequence[int],
    options: GenerationOptions,
    inputs_embeds: Any = None,
    attention_mask: Any = None,
) -> Iterator[int]:
    """Yield generated token ids one at a time while generate() runs in a worker thread.

    The prompt is either token ids or, for fused multimodal input, `inputs_embeds` (1, L, D) with
    its attention mask.
    """
    import torch

    streamer = _TokenQueue()
    if inputs_embeds is None:
        input_ids = torch.tensor([list(prompt_ids or [])], device=model.device)
        prompt = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    else:
        prompt = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
    kwargs = {**prompt, **generation_kwargs(model, stop_ids, options), "streamer": streamer}

    def work() -> None:
        try:
            torch.manual_seed(options.seed)
            with torch.inference_mode():
                model.generate(**kwargs)
        except BaseException as exc:  # surfaced in the consumer, not lost in the thread
            streamer.queue.put(exc)
            streamer.end()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    stops = set(stop_ids)
    for token in streamer:
        if token in stops:
            break
        yield token
    worker.join()


def generate_ids(
    model: Any, prompt_ids: Sequence[int], stop_ids: Sequence[int], options: GenerationOptions
) -> list[int]:
    return list(stream_tokens(model, prompt_ids, stop_ids, options))


def generate_batch(
    model: Any, inputs_embeds: Any, attention_mask: Any, stop_ids: Sequence[int], options: GenerationOptions
) -> list[list[int]]:
    """Greedy/sampled replies for a left-padded fused batch; each row cut at its first stop id."""
    import torch

    torch.manual_seed(options.seed)
    with torch.inference_mode():
        out = model.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generation_kwargs(model, stop_ids, options)
        )
    stops = set(stop_ids)
    rows = []
    for row in out.tolist():
        cut = next((i for i, token in enumerate(row) if token in stops), len(row))
        rows.append(row[:cut])
    return rows


def choose_labels(
    model: Any, tokenizer: Any, prompt_ids: Sequence[int], label_sets: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, Any]]:
    """Constrained decoding of a one-line JSON answer {"set": "label", ...}: for each label set, every
    allowed label (with its closing quote) is scored by the model after the prompt and the labels
    already chosen; the most probable one is kept. Returns set -> {"label", "probabilities"}.

    The prompt is run once; each candidate reuses its key/value cache, cropped back afterwards, so a
    label costs a forward pass over its own few tokens only.
    """
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    @torch.inference_mode()
    def log_probs(ids: Sequence[int]) -> torch.Tensor:
        tensor = torch.tensor([list(ids)], device=model.device)
        logits = model(input_ids=tensor, cache=cache, use_cache=True).logits[0]
        return logits.float().log_softmax(-1)

    chosen: dict[str, dict[str, Any]] = {}
    pending = [*prompt_ids, *encode('{"')]
    for name, labels in label_sets.items():
        last = log_probs([*pending, *encode(f'{name}": "')])[-1]
        settled = cache.get_seq_length()
        scores = {}
        for label in labels:
            ids = encode(f'{label}"')
            total = last[ids[0]].item()
            if len(ids) > 1:
                rest = log_probs(ids[:-1])
                total += sum(rest[i, token].item() for i, token in enumerate(ids[1:]))
                cache.crop(settled - cache.get_seq_length())  # negative: tokens to drop
            scores[label] = total
        probabilities = torch.tensor(list(scores.values())).softmax(0).tolist()
        best = max(scores, key=scores.get)
        chosen[name] = {
            "label": best,
            "probabilities": dict(zip(scores, [round(p, 4) for p in probabilities], strict=True)),
        }
        pending = encode(f'{best}", "')
    return chosen
