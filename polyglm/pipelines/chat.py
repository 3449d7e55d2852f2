"""Plain chat with the profile's language model, streamed as text deltas."""

from __future__ import annotations

from collections.abc import Iterator

from polyglm.platform.engine import GenerationOptions, stream_tokens
from polyglm.platform.errors import InputError
from polyglm.platform.loader import Platform


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


def stream_reply(platform: Platform, messages: list[dict], options: GenerationOptions | None = None) -> Iterator[str]:
    """Yield the reply as text pieces as soon as they decode cleanly."""
    lm = platform.lm
    prompt = lm.chat_ids(validate_messages(messages))
    generated: list[int] = []
    shown = ""
    for token in stream_tokens(lm.model, prompt, lm.stop_token_ids, options or GenerationOptions()):
        generated.append(token)
        text = lm.tokenizer.decode(generated, skip_special_tokens=True)
        # A multi-byte character split across tokens decodes to U+FFFD until its last byte arrives.
        if text.endswith("\ufffd"):
            continue
        if len(text) > len(shown):
            yield text[len(shown) :]
            shown = text


def reply(platform: Platform, messages: list[dict], options: GenerationOptions | None = None) -> str:
    return "".join(stream_reply(platform, messages, options))
