"""Generation engine: token ids in, token ids out. Prompts, templates and text live above it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
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
        self.cancelled = False  # set when the consumer stops reading: generate() then ends at its next token

    def put(self, value) -> None:
        if self.cancelled:
            raise _Cancelled()
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


class _Cancelled(Exception):
    """Raised inside generate() by the streamer once nobody reads its tokens."""


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
    try:
        for token in streamer:
            if token in stops:
                break
            yield token
    finally:  # also when the consumer closes the stream early (a stop sequence, a client gone)
        streamer.cancelled = True
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
    """`choose_labels_batch` for one prompt given as token ids."""
    import torch

    ids = torch.tensor([list(prompt_ids)], device=model.device)
    with torch.inference_mode():
        embeds = model.get_input_embeddings()(ids)
    return choose_labels_batch(model, tokenizer, embeds, torch.ones_like(ids), label_sets)[0]


def choose_labels_batch(
    model: Any,
    tokenizer: Any,
    inputs_embeds: Any,
    attention_mask: Any,
    label_sets: Mapping[str, Sequence[str]],
    prefix: PromptPrefix | None = None,
    heads: Mapping[str, Callable[[Any], Any]] | None = None,
) -> list[dict[str, dict[str, Any]]]:
    """Constrained decoding of a one-line JSON answer {"set": "label", ...} after each prompt of a
    left-padded batch (`inputs_embeds` (B, L, D), e.g. fused text + media, with its `attention_mask`).

    For each label set, every allowed label (with its closing quote) is scored by the model after the
    prompt and the labels already chosen; the most probable one is kept. Returns per row
    set -> {"label", "probabilities", "scores"}: `scores` are the labels' summed token log-probabilities
    (what a calibration temperature divides), `probabilities` their softmax.

    The prompts run once; each candidate reuses their key/value cache, cropped back afterwards, so a
    label costs a forward pass over its own few tokens only. Position ids count real tokens only, so a
    row scores the same in any batch as alone. `prefix`: the key/value cache of the first real tokens
    every row begins with (an instruction and worked examples, no media; `prefill_prefix`), run once for
    any number of batches; those tokens are skipped in each row (not where the batch would outgrow the
    LM's sliding window: `_prefix_fits_window`). `heads`: set -> a trained classifier that
    maps the LM's last hidden state where the label begins (B, D) to one score per label (B, len(labels));
    such a set is scored by its head instead of the label tokens, and its forward pass stops before the
    output head (no vocabulary-wide logits are computed where none are read).
    """

    heads = heads or {}
    size = inputs_embeds.shape[0]
    if prefix is not None and not _prefix_fits_window(model, inputs_embeds.shape[1]):
        prefix = None

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    # The first set's opening ('{"set": "') is the same for every row: it runs with the prompts, in one forward.
    names = list(label_sets)
    opening = [*encode('{"'), *encode(f'{names[0]}": "')] if names else []
    rows = _GrowingBatch(model, inputs_embeds, attention_mask, prefix, keep_hidden=bool(heads), tail=opening,
                         tail_logits=bool(names) and names[0] not in heads)  # fmt: skip
    chosen: list[dict[str, dict[str, Any]]] = [{} for _ in range(size)]
    pending: list[list[int]] | None = None  # each row's answer so far, after the first set
    for name, labels in label_sets.items():
        if pending is None:
            last = rows.tail_logprobs
        else:
            block = rows.extend([[*p, *encode(f'{name}": "')] for p in pending], logits=name not in heads)
            last = None if block is None else block[:, -1]
        if name in heads:
            scores = heads[name](rows.last_hidden).float().cpu()
            if scores.shape != (size, len(labels)):
                raise ValueError(
                    f"the head of {name!r} gave scores of shape {tuple(scores.shape)}, not {(size, len(labels))}"
                )
        else:
            scores = _label_word_scores(rows, last, labels, encode)
        probabilities = scores.softmax(-1)
        for row in range(size):
            best = labels[int(scores[row].argmax())]
            chosen[row][name] = {
                "label": best,
                "probabilities": dict(zip(labels, probabilities[row].tolist(), strict=True)),
                "scores": dict(zip(labels, scores[row].tolist(), strict=True)),
            }
        pending = [encode(f'{chosen[row][name]["label"]}", "') for row in range(size)]  # the next set follows
    return chosen


def _label_word_scores(rows: _GrowingBatch, last: Any, labels: Sequence[str], encode: Callable) -> Any:
    """(B, len(labels)): each label's tokens' summed log-probability after the batch's current end (`last`:
    the log-probabilities there); the batch is cropped back after each label."""
    import torch

    size = last.shape[0]
    scores = torch.zeros(size, len(labels))
    settled = rows.state()
    for column, label in enumerate(labels):
        ids = encode(f'{label}"')
        total = last[:, ids[0]].clone()
        if len(ids) > 1:
            rest = rows.extend([ids[:-1]] * size)  # (B, k, V): predicts ids[1:]
            targets = torch.tensor(ids[1:], device=rest.device)
            total += rest.gather(-1, targets.expand(size, -1).unsqueeze(-1)).squeeze(-1).sum(-1)
            rows.restore(settled)
        scores[:, column] = total.cpu()
    return scores


ANSWER_ROOM = 64  # tokens the scored answer may add after a prompt (openings, chosen labels, label words)


def _prefix_fits_window(model: Any, width: int) -> bool:
    """Whether a batch of prompts `width` columns wide (prefix included) may start from a shared prefix.

    Its padding lies between the prefix and each row's own tokens, and sliding-window layers measure
    distance in columns: once the batch and its answer span more than the window, a padded row would lose
    prefix tokens it sees alone. Such a batch runs its prompts whole (its padding then comes first)."""
    window = getattr(model.config.get_text_config(), "sliding_window", None)
    return not window or width + ANSWER_ROOM <= window


@dataclass(frozen=True)
class PromptPrefix:
    """The key/value cache (one row) of the first `length` tokens several prompts begin with."""

    length: int
    cache: Any  # a transformers DynamicCache; copied, never extended, by each batch that starts from it


def prefill_prefix(model: Any, embeds: Any) -> PromptPrefix:
    """Run the tokens every prompt of a group begins with (`embeds` (1, P, D)) once and keep their cache."""
    import torch

    length = embeds.shape[1]
    batch = _GrowingBatch(model, embeds, torch.ones((1, length), dtype=torch.long))
    return PromptPrefix(length, batch.cache)


def torch_cat_ones(length: int, mask: Any) -> Any:
    """`mask` with `length` ones in front of every row (a shared prefix every row attends to)."""
    import torch

    return torch.cat([torch.ones((mask.shape[0], length), dtype=mask.dtype, device=mask.device), mask], 1)


class _StopBeforeOutputHead(Exception):
    """Raised by the output head's pre-hook when no logits are wanted: every layer (and so the key/value
    cache) has run; the vocabulary-wide projection, the largest matmul of a small LM, has not."""


class _GrowingBatch:
    """A left-padded batch of prompts extended block by block over one key/value cache.

    Each block holds one token list per row, right-aligned (rows may differ in length; the gaps are
    masked). Position ids count each row's real tokens, so padding never shifts a row's positions."""

    def __init__(
        self,
        model: Any,
        inputs_embeds: Any,
        attention_mask: Any,
        prefix: PromptPrefix | None = None,
        keep_hidden: bool = False,
        tail: Sequence[int] = (),
        tail_logits: bool = False,
    ) -> None:
        import copy

        import torch
        from transformers import DynamicCache

        # keep_hidden: record the last token's final hidden state of every forward (`last_hidden`), for heads:
        # the input of the output head, found once here (its pre-hook also stops forwards that want no logits)
        self.model, self.last_hidden, self.keep_hidden = model, None, keep_hidden
        self.output_head = model.get_output_embeddings()
        if keep_hidden and self.output_head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings to read a label head's input from")
        mask = attention_mask.to(model.device)
        if prefix is None:
            self.cache, self.mask, skip = DynamicCache(), mask, 0
        else:
            self.cache = copy.deepcopy(prefix.cache)
            self.cache.batch_repeat_interleave(inputs_embeds.shape[0])
            inputs_embeds, mask = self._without_prefix(inputs_embeds, mask, prefix.length)
            self.mask, skip = torch_cat_ones(prefix.length, mask), prefix.length
        if tail:  # token ids every row continues with (rows are left-padded: they all end at the last column)
            with torch.inference_mode():
                ids = torch.tensor([list(tail)], device=model.device)
                embedded = model.get_input_embeddings()(ids).to(inputs_embeds.dtype).to(inputs_embeds.device)
            inputs_embeds = torch.cat([inputs_embeds, embedded.expand(inputs_embeds.shape[0], -1, -1)], 1)
            ones = torch.ones((mask.shape[0], len(tail)), dtype=mask.dtype, device=mask.device)
            mask, self.mask = torch.cat([mask, ones], 1), torch.cat([self.mask, ones], 1)
        first = skip + (mask.cumsum(1) - 1).clamp(min=0)
        self.positions = skip + mask.sum(1)  # next position of each row
        # Log-probabilities after the last token (B, V) when `tail_logits`; the prompt's own are never read.
        self.tail_logprobs = self._forward(inputs_embeds, first, logits=tail_logits, last_only=True)
        if self.tail_logprobs is not None:
            self.tail_logprobs = self.tail_logprobs[:, -1]

    @staticmethod
    def _without_prefix(inputs_embeds: Any, mask: Any, length: int) -> tuple[Any, Any]:
        """Each row less its first `length` real tokens, left-padded again, with its mask."""
        import torch

        lengths = [int(n) for n in mask.sum(1).tolist()]
        if length >= min(lengths):
            raise ValueError(f"a prefix of {length} tokens leaves a row with no tokens of its own (shortest "
                             f"{min(lengths)})")  # fmt: skip
        width, rest = inputs_embeds.shape[1], max(lengths) - length
        tails = inputs_embeds.new_zeros((len(lengths), rest, inputs_embeds.shape[2]))
        tail_mask = torch.zeros((len(lengths), rest), dtype=mask.dtype, device=mask.device)
        for row, n in enumerate(lengths):
            tails[row, rest - (n - length) :] = inputs_embeds[row, width - n + length :]
            tail_mask[row, rest - (n - length) :] = 1
        return tails, tail_mask

    def _forward(self, embeds: Any, positions: Any, logits: bool = True, last_only: bool = False) -> Any:
        """Run a block over the cache; log-probabilities at every position (the last one: `last_only`), or
        None when `logits` is False (the forward then stops before the output head)."""
        import torch

        def at_output_head(_module: Any, args: tuple) -> None:
            # What the output head reads (the final, normed hidden state) at each row's last token: the
            # input of a trained label head too.
            if self.keep_hidden:
                self.last_hidden = args[0][:, -1].float()
            if not logits:
                raise _StopBeforeOutputHead

        head = self.output_head
        hook = head.register_forward_pre_hook(at_output_head) if head is not None else None
        try:
            with torch.inference_mode():
                out = self.model(
                    inputs_embeds=embeds.to(self.model.device, self.model.dtype),
                    attention_mask=self.mask,
                    position_ids=positions,
                    cache=self.cache,
                    use_cache=True,
                    logits_to_keep=0 if logits and not last_only else 1,  # 1 also where no hook can stop it
                )
        except _StopBeforeOutputHead:
            return None
        finally:
            if hook is not None:
                hook.remove()
        return out.logits.float().log_softmax(-1) if logits else None

    def extend(self, rows: Sequence[Sequence[int]], logits: bool = True) -> Any:
        """Append one token list per row; log-probabilities (B, width, V), a row's last token last (None when
        `logits` is False: only the cache and `last_hidden` are wanted)."""
        import torch

        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long, device=self.mask.device)
        block = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            block[i, width - len(row) :] = 1
        positions = self.positions[:, None] + (block.cumsum(1) - 1).clamp(min=0)
        self.mask = torch.cat([self.mask, block], 1)
        self.positions = self.positions + block.sum(1)
        with torch.inference_mode():
            embeds = self.model.get_input_embeddings()(ids)
        return self._forward(embeds, positions, logits)

    def state(self) -> tuple[int, Any]:
        return self.mask.shape[1], self.positions.clone()

    def restore(self, state: tuple[int, Any]) -> None:
        """Drop every block appended since `state` was taken."""
        length, positions = state
        self.cache.crop(length - self.cache.get_seq_length())  # negative: tokens to drop
        self.mask, self.positions = self.mask[:, :length], positions
