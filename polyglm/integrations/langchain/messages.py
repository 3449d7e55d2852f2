"""LangChain messages <-> polyglm chat turns, and the tool-call text between them.

polyglm's chat pipeline takes plain `{"role", "content"}` messages plus the files attached to one
user message. This module maps LangChain's message types onto that:

- system / human / AI messages keep their role; an AI message's tool calls become the
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` lines that the scenario fine-tune data
  teaches and `scenario_chat.parse_tool_call` reads;
- tool results become a user turn `Tool result (<name>): ...`, as the scenario chat loop hands them to a
  template without an observation role (`ScenarioAssistant._template_safe`);
- image and audio content blocks (LangChain's standard `image`/`audio` blocks with base64 data or a
  `data:` URL, OpenAI's `image_url` and `input_audio`) become uploaded files that go through the same
  `decode_uploads` -> `prepare_turn` path as `polyglm chat --image/--audio`.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from polyglm.platform.errors import InputError

TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"
_BLOCK = re.compile(re.escape(TOOL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CLOSE) + r"|$)", re.DOTALL)

IMAGE_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/webp": ".webp",
                "image/gif": ".gif", "image/bmp": ".bmp"}  # fmt: skip
AUDIO_SUFFIX = {"audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/vnd.wave": ".wav",
                "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/flac": ".flac", "audio/x-flac": ".flac",
                "audio/ogg": ".ogg", "audio/opus": ".opus", "audio/webm": ".webm", "audio/mp4": ".m4a",
                "audio/x-m4a": ".m4a", "audio/m4a": ".m4a"}  # fmt: skip

TOOLS_TEXT = {
    "en": {
        "heading": "Tools you can call:",
        "how": "To call a tool, reply with only one line "
        '<tool_call>{"name": "<tool name>", "arguments": {<the arguments as JSON>}}</tool_call> '
        "and nothing else. Its result comes back in the next message, which starts with `Tool result`. "
        "When no tool is needed, answer normally.",
    },
    "zh": {
        "heading": "可调用的工具：",
        "how": "需要调用工具时，只回复一行 "
        '<tool_call>{"name": "<工具名>", "arguments": {<JSON 格式的参数>}}</tool_call>，不要写别的内容。'
        "工具结果会出现在下一条以 `Tool result` 开头的消息里。不需要工具时直接回答。",
    },
}


@dataclass
class Conversation:
    """LangChain messages as polyglm chat messages plus the files of the latest human message."""

    messages: list[dict] = field(default_factory=list)  # {"role": system/user/assistant, "content": text}
    uploads: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, bytes) for decode_uploads
    attach_to: int = -1  # index in `messages` of the human message the uploads belong to

    @property
    def last_human_text(self) -> str:
        humans = [m for m in self.messages if m["role"] == "user"]
        return humans[-1]["content"] if humans else ""


def to_conversation(messages: Sequence[Any]) -> Conversation:
    """polyglm messages for LangChain `messages`. Attachments are read from the latest human message only;
    one on an earlier message is refused (the chat pipeline attaches media to one user turn)."""
    from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage

    humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    latest_human = humans[-1] if humans else None
    conversation = Conversation()
    tool_names: dict[str, str] = {}  # tool_call_id -> name, to label results
    results: list[str] = []  # consecutive tool results, merged into one user turn

    def flush_results() -> None:
        if results:
            conversation.messages.append({"role": "user", "content": "\n".join(results)})
            results.clear()

    for index, message in enumerate(messages):
        if isinstance(message, ToolMessage):
            name = message.name or tool_names.get(message.tool_call_id, "tool")
            status = " error" if getattr(message, "status", "success") == "error" else ""
            results.append(f"Tool result ({name}{status}): {text_of(message.content, 'a tool result')}")
            continue
        flush_results()
        if isinstance(message, HumanMessage):
            text, uploads = split_content(message.content, index)
            if uploads and index != latest_human:
                raise InputError(
                    f"message {index}: attach images and audio to the latest human message only "
                    "(polyglm reads one turn's attachments); describe earlier ones in text"
                )
            if uploads:
                conversation.uploads, conversation.attach_to = uploads, len(conversation.messages)
            conversation.messages.append({"role": "user", "content": text or ("(attachment)" if uploads else "")})
        elif isinstance(message, SystemMessage):
            conversation.messages.append({"role": "system", "content": text_of(message.content, "a system message")})
        elif isinstance(message, AIMessage):
            calls = [render_call(c["name"], c.get("args") or {}) for c in message.tool_calls]
            tool_names.update({c["id"]: c["name"] for c in message.tool_calls if c.get("id")})
            content = "\n".join(p for p in [text_of(message.content, "an AI message", strict=False), *calls] if p)
            if content.strip():  # an empty AI turn says nothing to the model (and the pipeline refuses it)
                conversation.messages.append({"role": "assistant", "content": content})
        elif isinstance(message, ChatMessage) and message.role in {"system", "user", "assistant"}:
            conversation.messages.append({"role": message.role, "content": text_of(message.content, "a message")})
        else:
            raise InputError(f"message {index}: {type(message).__name__} is not a message polyglm reads")
    flush_results()
    return conversation


def text_of(content: str | list, what: str, strict: bool = True) -> str:
    """The text of message content; with `strict`, a non-text block is an error naming `what`."""
    if isinstance(content, str):
        return content
    texts = []
    for block in content:
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif strict:
            kind = block.get("type") if isinstance(block, Mapping) else type(block).__name__
            raise InputError(f"{what} holds a {kind!r} block; polyglm reads text there (media go in a human message)")
    return "\n".join(t for t in texts if t)


def split_content(content: str | list, index: int) -> tuple[str, list[tuple[str, bytes]]]:
    """(text, uploads) of a human message's content."""
    if isinstance(content, str):
        return content, []
    texts, uploads = [], []
    for number, block in enumerate(content):
        where = f"message {index}, block {number}"
        if isinstance(block, str):
            texts.append(block)
            continue
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind in ("image", "image_url"):
            uploads.append(_media_file(block, "image", IMAGE_SUFFIX, f"image-{index}-{number}", where))
        elif kind in ("audio", "input_audio"):
            uploads.append(_media_file(block, "audio", AUDIO_SUFFIX, f"audio-{index}-{number}", where))
        else:
            raise InputError(f"{where}: content type {kind!r} is not supported; use text, image or audio blocks")
    return "\n".join(t for t in texts if t), uploads


def _media_file(block: Mapping, modality: str, suffixes: dict, stem: str, where: str) -> tuple[str, bytes]:
    """(file name, bytes) of one image/audio block in any of LangChain's or OpenAI's base64 shapes."""
    from polyglm.serve import decode_base64, decode_data_url  # the one base64/data-URL decoder

    if block.get("type") == "input_audio":  # OpenAI: {"input_audio": {"data": ..., "format": "wav"}}
        audio = block.get("input_audio") or {}
        return f"{stem}.{str(audio.get('format', 'wav')).lower()}", decode_base64(str(audio.get("data", "")), where)
    url = block.get("url")
    if block.get("type") == "image_url":  # OpenAI: {"image_url": {"url": ...}} or {"image_url": "..."}
        inner = block.get("image_url")
        url = inner.get("url") if isinstance(inner, Mapping) else inner
    mime = str(block.get("mime_type") or "")
    payload = block.get("base64") or (block.get("data") if block.get("source_type") == "base64" else None)
    if payload is not None:
        data = decode_base64(str(payload), where)
    elif isinstance(url, str) and url.startswith("data:"):
        mime = mime or url[5 : url.find(";")]
        data = decode_data_url(url, where)
    elif url or block.get("file_id") or block.get("id"):
        raise InputError(
            f"{where}: polyglm runs offline and reads {modality} data, not URLs or file ids; "
            f"send the file base64-encoded (a `base64` field or a data: URL)"
        )
    else:
        raise InputError(f"{where}: the {modality} block has no data; give `base64` and `mime_type`")
    suffix = suffixes.get(mime.lower(), "" if mime else next(iter(suffixes.values())))
    if not suffix:
        raise InputError(f"{where}: {modality} type {mime!r} is not read; use one of {', '.join(sorted(suffixes))}")
    return f"{stem}{suffix}", data


# ---------------------------------------------------------------- tools in the prompt


def render_call(name: str, arguments: Mapping) -> str:
    """One tool call as the model writes it (the scenario fine-tune data's format)."""
    from polyglm.pipelines.scenario_chat import render_tool_call

    return render_tool_call(name, dict(arguments))


def tools_section(tools: Sequence[Mapping], lang: str = "en") -> str:
    """The bound tools for the system prompt, described as packs describe theirs (`describe_tool`)."""
    from polyglm.scenarios.loader import describe_tool
    from polyglm.scenarios.tooling import DEFAULT_TIMEOUT_S, ToolSpec

    texts = TOOLS_TEXT.get(lang, TOOLS_TEXT["en"])
    lines = []
    for tool in tools:
        function = tool.get("function", tool)
        parameters = prompt_schema(function.get("parameters") or {})
        # function=None: a bound LangChain tool is run by LangChain, never by polyglm.
        spec = ToolSpec(
            function["name"], _one_line(function.get("description", "")), parameters, DEFAULT_TIMEOUT_S, None
        )
        lines.append(describe_tool(spec))
    return "\n".join([texts["heading"], *lines, "", texts["how"]])


def prompt_schema(parameters: Mapping) -> dict:
    """A JSON schema in the subset `describe_tool` prints (one `type` per property, a description each)."""
    properties = {name: _property(name, schema) for name, schema in (parameters.get("properties") or {}).items()}
    return {"type": "object", "properties": properties, "required": list(parameters.get("required") or [])}


def _property(name: str, schema: Mapping) -> dict:
    schema = dict(schema)
    nullable = False
    options = schema.pop("anyOf", None) or schema.pop("oneOf", None)
    if options:  # Optional[X] from pydantic: anyOf [X, null]
        real = [o for o in options if o.get("type") != "null"]
        nullable = len(real) < len(options)
        schema = {**(real[0] if len(real) == 1 else {"type": " | ".join(str(o.get("type", "any")) for o in real)}),
                  **{k: v for k, v in schema.items() if k in ("description", "title", "default")}}  # fmt: skip
    kind = schema.get("type", "any")
    if isinstance(kind, list):  # ["string", "null"]
        nullable = nullable or "null" in kind
        kind = " | ".join(k for k in kind if k != "null") or "null"
    out: dict[str, Any] = {
        "type": kind,
        "description": _one_line(schema.get("description") or schema.get("title") or name),
    }
    if "enum" in schema:
        out["enum"] = list(schema["enum"])
    if kind == "array":
        out["items"] = _property("item", schema.get("items") or {})
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        out["additionalProperties"] = _property("value", schema["additionalProperties"])
    if nullable:
        out["nullable"] = True
    return out


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------- tool calls in the reply


def parse_calls(text: str) -> tuple[list[dict], list[dict]]:
    """(tool calls, invalid tool calls) in a reply, in LangChain's shapes.

    A block is `<tool_call>JSON</tool_call>`; JSON is {"name", "arguments"} (what `parse_tool_call` reads)
    or a list of them (SmolLM2's own training format). A block cut off before its closing tag (the reply
    ended) still counts when its JSON is complete."""
    calls, invalid = [], []
    decoder = json.JSONDecoder(object_pairs_hook=_first_wins)
    for match in _BLOCK.finditer(text):
        raw = match.group(1).strip()
        try:
            payload, _ = decoder.raw_decode(raw)
        except json.JSONDecodeError as exc:
            # Cut off by the token cap (no closing tag): completed as LangChain completes streamed arguments.
            payload = None if match.group(0).endswith(TOOL_CLOSE) else _partial(raw)
            if payload is None:
                invalid.append(_invalid(None, raw, f"not JSON: {exc.msg}"))
                continue
        for item in payload if isinstance(payload, list) else [payload]:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                invalid.append(_invalid(None, raw, 'a tool call needs {"name": ..., "arguments": {...}}'))
                continue
            arguments = item.get("arguments", item.get("parameters", {}))
            if isinstance(arguments, str):  # some models send the arguments as a JSON string
                with contextlib.suppress(json.JSONDecodeError):
                    arguments = json.loads(arguments)
            if not isinstance(arguments, dict):
                invalid.append(_invalid(item["name"], json.dumps(arguments), "arguments must be a JSON object"))
                continue
            calls.append({"name": item["name"], "args": arguments, "id": new_call_id(), "type": "tool_call"})
    return calls, invalid


def _partial(raw: str) -> Any:
    from langchain_core.utils.json import parse_partial_json

    try:
        return parse_partial_json(raw)
    except (json.JSONDecodeError, ValueError):
        return None


def _first_wins(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object whose repeated keys keep their first value: a small model that runs on past the
    arguments may write `"name"` again, and the name it wrote first (or was given) is the call."""
    out: dict = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def call_complete(captured: str) -> bool:
    """Whether captured tool-call text is finished: closed, or its JSON complete (small models often
    misspell or skip the closing tag, and nothing after the JSON is used)."""
    if not captured.startswith(TOOL_OPEN):
        return False
    if TOOL_CLOSE in captured:
        return True
    try:
        json.JSONDecoder().raw_decode(captured[len(TOOL_OPEN) :].lstrip())
    except json.JSONDecodeError:
        return False
    return True


def _invalid(name: str | None, args: str, error: str) -> dict:
    return {"name": name, "args": args, "id": new_call_id(), "error": error, "type": "invalid_tool_call"}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ReplyGuard:
    """Splits streamed reply text into what the user sees and what ends it.

    Text is shown as it comes, except a tail that may be the start of a stop sequence or of
    `<tool_call>`. A stop sequence cuts the reply there (it is not shown). From `<tool_call>` on, the
    text is captured for `parse_calls`, not shown, and the call's end (its JSON or closing tag) ends the reply."""

    def __init__(self, stops: Sequence[str] = (), tool_calls: bool = False, captured: str = "") -> None:
        self.stops = [s for s in stops if s]
        self.markers = [*self.stops, *([TOOL_OPEN] if tool_calls else [])]
        self.tool_calls = tool_calls
        self.pending = ""  # held back: may be the start of a marker
        self.captured = captured  # tool-call text (a forced call starts with its prefix)
        self.done = call_complete(captured)  # no more text is wanted: stop generating
        self.stopped_by: str | None = None  # the stop sequence that ended the reply

    def feed(self, piece: str) -> str:
        """The text to show now."""
        if self.done:
            return ""
        if self.captured:
            self.captured += piece
            self.done = call_complete(self.captured)
            return ""
        text = self.pending + piece
        found = [(text.find(m), m) for m in self.markers if m in text]
        if found:
            at, marker = min(found)
            if marker == TOOL_OPEN and self.tool_calls:
                self.pending, self.captured = "", text[at:]
                self.done = call_complete(self.captured)
            else:
                self.pending, self.done, self.stopped_by = "", True, marker
            return text[:at]
        hold = max((n for m in self.markers for n in range(1, len(m)) if text.endswith(m[:n])), default=0)
        self.pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def finish(self) -> str:
        """What is still held back once the reply has ended (a tail that turned out not to be a marker)."""
        rest, self.pending = ("" if self.done else self.pending), ""
        return rest
