"""Plain chat with the profile's language model, streamed as text deltas."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from polyglm.pipelines.attachments import ReadAttachments, has_media, read_attachments, user_content
from polyglm.platform.config import MediaPolicy
from polyglm.platform.engine import GenerationOptions, stream_tokens
from polyglm.platform.errors import InputError
from polyglm.platform.loader import Platform
from polyglm.platform.multimodal import multimodal_for, text_turn


def validate_messages(messages: list[dict]) -> list[dict]:
    if not messages:
        raise InputError("no messages to answer: send at least one user message")
    for message in messages:
        if message.get("role") not in {"system", "user", "assistant"}:
            raise InputError(f"message role must be system, user or assistant, got {message.get('role')!r}")
        if not str(message.get("content", "")).strip():
            raise InputError(f"a {message['role']} message is empty: write some text")
    if messages[-1]["role"] != "user":
        raise InputError("the last message must be the user's")
    return [{"role": m["role"], "content": str(m["content"])} for m in messages]


def prepare_turn(
    platform: Platform,
    messages: list[dict],
    images: Sequence[Any] = (),
    audio: Sequence[Any] = (),
    policy: MediaPolicy | None = None,
    attach_to: int = -1,
) -> tuple[list[dict], ReadAttachments]:
    """Validated messages with `images` (PIL) and `audio` (16 kHz arrays) attached to the last user message:
    adapter features plus fenced OCR text and transcripts (`policy` may switch paths off). Also returns
    what was read, for callers that show it (the API's extension field). `attach_to` is the index of the
    user message that carries them when it is not the last (an agent loop sends tool results after it)."""
    messages = validate_messages(messages)
    read = ReadAttachments()
    if images or audio:
        if messages[attach_to]["role"] != "user":
            raise InputError(f"attachments go on a user message; message {attach_to} is {messages[attach_to]['role']}")
        text = messages[attach_to]["content"]
        read = read_attachments(platform, images, audio, policy)
        messages[attach_to] = {"role": "user", "content": user_content(text, read, language_of(text))}
    return messages, read


def stream_prepared(
    platform: Platform, messages: list[dict], options: GenerationOptions | None = None, prefix: str = ""
):
    """The reply to prepared messages as text pieces, each yielded as soon as it decodes cleanly.

    `prefix` (text turns only) is put in the model's mouth: the reply continues it, and it is not yielded
    (a forced tool call starts `<tool_call>{"name": ...`)."""
    tokens = _reply_tokens(platform, messages, options or GenerationOptions(), prefix)
    yield from decoded(platform.lm.tokenizer, tokens)


def stream_reply(
    platform: Platform,
    messages: list[dict],
    options: GenerationOptions | None = None,
    images: Sequence[Any] = (),
    audio: Sequence[Any] = (),
    policy: MediaPolicy | None = None,
) -> Iterator[str]:
    """Yield the reply as text pieces; attachments as in `prepare_turn`."""
    prepared, _ = prepare_turn(platform, messages, images, audio, policy)
    yield from stream_prepared(platform, prepared, options)


def _reply_tokens(
    platform: Platform, messages: list[dict], options: GenerationOptions, prefix: str = ""
) -> Iterator[int]:
    if has_media(messages):
        if prefix:
            raise InputError("a reply prefix works on text turns only; this turn has attached media")
        return multimodal_for(platform).stream(messages, options)
    return _text_tokens(platform, messages, options, prefix)


def _text_tokens(
    platform: Platform, messages: list[dict], options: GenerationOptions, prefix: str = ""
) -> Iterator[int]:
    lm = platform.lm
    ids = lm.chat_ids(messages)
    if prefix:
        ids += lm.tokenizer(prefix, add_special_tokens=False)["input_ids"]
    with text_turn(platform):
        yield from stream_tokens(lm.model, ids, lm.stop_token_ids, options)


def decoded(tokenizer: Any, tokens: Iterator[int]) -> Iterator[str]:
    """Text pieces of a token stream, each yielded once it decodes cleanly."""
    generated: list[int] = []
    shown = ""
    for token in tokens:
        generated.append(token)
        text = tokenizer.decode(generated, skip_special_tokens=True)
        # A multi-byte character split across tokens decodes to U+FFFD until its last byte arrives.
        if text.endswith("\ufffd"):
            continue
        if len(text) > len(shown):
            yield text[len(shown) :]
            shown = text


def language_of(text: str) -> str:
    """zh when the text has Chinese characters, else en: which language the evidence notices use."""
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"


def reply(platform: Platform, messages: list[dict], options: GenerationOptions | None = None, **attached) -> str:
    """The whole reply; `attached` takes stream_reply's images, audio and policy."""
    return "".join(stream_reply(platform, messages, options, **attached))
