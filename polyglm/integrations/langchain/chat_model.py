"""`ChatPolyglm`: polyglm's chat pipeline as a LangChain chat model.

Thin over `polyglm.pipelines.chat` (plain assistant) and `polyglm.pipelines.scenario_chat` (a pack's
assistant): messages are mapped by `messages.py`, attachments go through `prepare_turn` (encoder ->
adapter -> fusion, plus OCR text and transcripts), text streams from `stream_prepared`. Nothing is
loaded when the class is imported or built: the platform comes from `load_platform` on the first call
(or pass `platform=` to share one with a retriever and tools).

Tool calling is prompt-based, in the format the scenario fine-tune data teaches: bound tools are
described in the system prompt as packs describe theirs, the model writes
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, and that becomes `AIMessage.tool_calls`.
`tool_choice="any"` or a tool's name forces a call by starting the reply with the call's opening
(`<tool_call>{"name": "<tool>", "arguments": `); the model writes the arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from polyglm.integrations.langchain._platform import generation_lock, platform_of
from polyglm.integrations.langchain.messages import (
    TOOL_CLOSE,
    TOOL_OPEN,
    Conversation,
    ReplyGuard,
    parse_calls,
    to_conversation,
    tools_section,
)
from polyglm.platform.config import DEFAULT_PROFILE
from polyglm.platform.errors import InputError

DEFAULT_MAX_TOKENS = 256  # reply cap of the plain assistant when none is given (the API's default too)
FORCING = ("any", "required", True)  # tool_choice values that force some tool


class ChatPolyglm(BaseChatModel):
    """polyglm's assistant (plain, or a scenario pack's) as a LangChain chat model.

    ```python
    chat = ChatPolyglm(profile="offline")
    chat.invoke([HumanMessage([{"type": "text", "text": "What is in the picture?"},
                               {"type": "image", "base64": png_b64, "mime_type": "image/png"}])])
    ChatPolyglm(scenario="customer_service").invoke("Where is my order A10023?")  # the pack's own loop
    ```
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    profile: str = DEFAULT_PROFILE  # model profile loaded by `load_platform` on the first call
    device: str | None = None  # torch device; None: cuda when available, else cpu
    scenario: str | None = None  # a pack name: each turn is the pack's assistant (retrieval, its tools, safety)
    lang: str | None = None  # reply language for a pack and for tool instructions; None: from the user's text
    max_tokens: int | None = None  # reply cap; None: 256 (plain) or the pack's `generation.max_new_tokens`
    temperature: float = 0.0  # 0 is greedy (reproducible); packs use their own `generation.temperature`
    seed: int = 0  # sampling seed when temperature > 0
    stop: list[str] | None = None  # the reply ends before the first of these (not included)
    streaming: bool = False  # invoke() streams internally, so callbacks see each piece as it is made
    platform: Any = Field(default=None, exclude=True, repr=False)  # a loaded Platform to share; None: load lazily

    _assistants: dict[str, Any] = PrivateAttr(default_factory=dict)  # scenario assistants by language

    # ------------------------------------------------------------ LangChain's descriptive hooks

    @property
    def _llm_type(self) -> str:
        return "polyglm"

    @property
    def model_name(self) -> str:
        """What the API calls this model: `polyglm`, or `polyglm:<pack>` for a scenario assistant."""
        return f"polyglm:{self.scenario}" if self.scenario else "polyglm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "profile": self.profile, "scenario": self.scenario, "lang": self.lang,
                "max_tokens": self.max_tokens, "temperature": self.temperature, "seed": self.seed}  # fmt: skip

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        params = {
            "ls_provider": "polyglm",
            "ls_model_name": kwargs["model"] if isinstance(kwargs.get("model"), str) else self.model_name,
            "ls_model_type": "chat",
            "ls_temperature": kwargs.get("temperature", self.temperature),
        }
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def get_platform(self) -> Any:
        """The platform this model generates with (loaded on first use)."""
        return platform_of(self)

    # ------------------------------------------------------------ tools

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | bool | dict | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools described in the system prompt; `tool_choice`: None/"auto" (the model decides), "none",
        "any"/"required"/True (some tool), a tool's name or {"type": "function", "function": {"name": ...}}."""
        if self.scenario:
            raise InputError(
                f"ChatPolyglm(scenario={self.scenario!r}) runs the pack's own tools; to bind tools, use "
                f"ChatPolyglm() with pack_tools({self.scenario!r}) and PackRetriever(pack={self.scenario!r})"
            )
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        names = [tool["function"]["name"] for tool in formatted]
        return super().bind(tools=formatted, tool_choice=_tool_choice(tool_choice, names), **kwargs)

    # ------------------------------------------------------------ generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        tools = kwargs.get("tools") or []
        conversation = to_conversation(messages)
        platform = self.get_platform()
        if self.scenario:
            yield self._scenario_reply(platform, conversation, kwargs)
            return
        yield from self._plain_reply(platform, conversation, stop, run_manager, tools, kwargs)

    def _options(self, kwargs: dict, default_max: int | None):
        from polyglm.platform.engine import GenerationOptions

        cap = kwargs.get("max_tokens", self.max_tokens) or default_max
        temperature = float(kwargs.get("temperature", self.temperature))
        if not isinstance(cap, int) or not 1 <= cap <= 4096:
            raise InputError(f"max_tokens must be an integer from 1 to 4096, got {cap!r}")
        if not 0 <= temperature <= 2:
            raise InputError(f"temperature must be from 0 to 2, got {temperature}")
        return GenerationOptions(max_new_tokens=cap, temperature=temperature, seed=int(kwargs.get("seed", self.seed)))

    def _plain_reply(
        self,
        platform: Any,
        conversation: Conversation,
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        tools: list[dict],
        kwargs: dict,
    ) -> Iterator[ChatGenerationChunk]:
        from polyglm.pipelines.attachments import decode_uploads
        from polyglm.pipelines.chat import language_of, prepare_turn, stream_prepared
        from polyglm.platform.fusion import render_messages

        choice = kwargs.get("tool_choice")
        tools = [] if choice == "none" else tools
        messages = conversation.messages
        if tools:
            lang = self.lang or language_of(conversation.last_human_text)
            messages = _with_system_text(messages, tools_section(tools, lang))
        images, audio = decode_uploads(conversation.uploads)
        attach_to = conversation.attach_to + (len(messages) - len(conversation.messages))
        prefix, notes = _forced_prefix(choice, tools), []
        if prefix and (images or audio):  # the pipeline cannot start a media turn's reply for the model
            prefix = ""
            notes.append("tool_choice was not enforced: this turn has attachments, which take the media path")
        options = self._options(kwargs, DEFAULT_MAX_TOKENS)
        guard = ReplyGuard(stop if stop is not None else (self.stop or []), tool_calls=bool(tools), captured=prefix)
        lm = platform.lm
        with generation_lock(platform):
            prepared, read = prepare_turn(platform, messages, images, audio, attach_to=attach_to)
            if prefix.endswith('"name": "'):  # "any" of several tools: the model's likeliest tool name
                prefix = _forced_prefix(_likeliest_tool(platform, prepared, tools), tools)
                guard = ReplyGuard([], tool_calls=True, captured=prefix)
            prompt_tokens = len(lm.chat_ids(render_messages(lm.tokenizer, prepared)[0])) + _count(lm, prefix)
            pieces = stream_prepared(platform, prepared, options, prefix=prefix)
            generated = []
            for piece in () if guard.done else pieces:  # a forced call without arguments is complete
                generated.append(piece)
                visible = guard.feed(piece)
                if visible:
                    yield self._chunk(AIMessageChunk(content=visible), run_manager)
                if guard.done:
                    pieces.close()
                    break
        rest = guard.finish()
        # Unreadable calls stay out of the message (LangChain would re-parse their text into a nameless call);
        # they are listed in response_metadata["polyglm"]["invalid_tool_calls"] with the text the model wrote.
        calls, invalid = parse_calls(guard.captured) if guard.captured.startswith(TOOL_OPEN) else ([], [])
        output_tokens = _count(lm, "".join(generated))
        attachments = {"images": len(images), "audio": len(audio), "feature_slots": [m.slots for m in read.features],
                       "ocr": read.ocr, "transcripts": read.transcripts, "notes": [*read.notes, *notes]}  # fmt: skip
        finish = (
            "tool_calls"
            if calls
            else ("stop" if guard.stopped_by or output_tokens < options.max_new_tokens else "length")
        )
        yield self._chunk(
            AIMessageChunk(
                content=rest,
                tool_call_chunks=[
                    {
                        "name": c["name"],
                        "args": json.dumps(c["args"], ensure_ascii=False),
                        "id": c["id"],
                        "index": i,
                        "type": "tool_call_chunk",
                    }
                    for i, c in enumerate(calls)
                ],
                usage_metadata=_usage(prompt_tokens, output_tokens),
                response_metadata={
                    "model_name": self.model_name,
                    "model_provider": "polyglm",
                    "finish_reason": finish,
                    "polyglm": {"profile": self.profile, "attachments": attachments, "invalid_tool_calls": invalid},
                },
                chunk_position="last",
            ),
            run_manager,
        )

    def _scenario_reply(self, platform: Any, conversation: Conversation, kwargs: dict) -> ChatGenerationChunk:
        """One chunk: the pack's answer after retrieval and its own tool calls (those are reported in
        `response_metadata["polyglm"]`, not returned for LangChain to run)."""
        from polyglm.pipelines.attachments import decode_uploads
        from polyglm.pipelines.chat import validate_messages

        if kwargs.get("tools"):
            raise InputError(f"ChatPolyglm(scenario={self.scenario!r}) runs the pack's own tools; bind none")
        messages = validate_messages(conversation.messages)
        if conversation.uploads and conversation.attach_to != len(messages) - 1:
            raise InputError("a scenario turn reads attachments on the last message only")
        images, audio = decode_uploads(conversation.uploads)
        lm = platform.lm
        with generation_lock(platform):
            assistant = self._assistant(platform, messages[-1]["content"])
            assistant.max_new_tokens = self._options(kwargs, assistant.pack.generation.max_new_tokens).max_new_tokens
            reply = assistant.respond(messages[-1]["content"], messages[:-1], images=images, audio=audio)
        prompt_tokens = len(lm.chat_ids(messages))  # the conversation's tokens (the pack's prompt is not counted)
        output_tokens = _count(lm, reply.answer)
        extension = {
            "profile": self.profile,
            "scenario": self.scenario,
            "lang": assistant.lang,
            "escalated": reply.escalated,
            "citations": reply.citations,
            "tool_calls": reply.tool_calls,
        }
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=reply.answer,
                usage_metadata=_usage(prompt_tokens, output_tokens),
                response_metadata={
                    "model_name": self.model_name,
                    "model_provider": "polyglm",
                    "finish_reason": "stop",
                    "polyglm": extension,
                },
                chunk_position="last",
            )
        )

    def _assistant(self, platform: Any, text: str) -> Any:
        """The pack's assistant in this model's language (or the message's, when the pack speaks it)."""
        from polyglm.pipelines.chat import language_of
        from polyglm.pipelines.scenario_chat import scenario_assistant
        from polyglm.scenarios.loader import load_pack

        languages = load_pack(self.scenario).languages
        lang = self.lang or (language_of(text) if language_of(text) in languages else languages[0])
        if lang not in self._assistants:
            self._assistants[lang] = scenario_assistant(platform, self.scenario, lang)
        return self._assistants[lang]

    @staticmethod
    def _chunk(message: AIMessageChunk, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=message)
        if run_manager and isinstance(message.content, str) and message.content:
            run_manager.on_llm_new_token(message.content, chunk=chunk)
        return chunk


def _tool_choice(choice: Any, names: list[str]) -> str | None:
    """None, "none", "any" or a bound tool's name."""
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name") or choice.get("name")
    if choice in (None, "auto", False):
        return None
    if choice in FORCING:
        return "any"
    if choice == "none" or choice in names:
        return choice
    raise InputError(f"tool_choice {choice!r} is not a bound tool; use auto, none, any or one of {names}")


def _forced_prefix(choice: str | None, tools: list[dict]) -> str:
    """The opening of a forced call, written for the model up to where its own choices start: the tool's
    name when one tool is meant, then its first required argument's name (a tool without arguments is
    complete); with several tools and "any", up to the name's opening quote."""
    if not tools or choice is None:
        return ""
    functions = {tool["function"]["name"]: tool["function"] for tool in tools}
    name = choice if choice in functions else (next(iter(functions)) if len(functions) == 1 else None)
    if name is None:
        return f'{TOOL_OPEN}{{"name": "'
    opening = f'{TOOL_OPEN}{{"name": {json.dumps(name, ensure_ascii=False)}, "arguments": '
    parameters = functions[name].get("parameters") or {}
    if not parameters.get("properties"):
        return f"{opening}{{}}}}{TOOL_CLOSE}"
    required = [p for p in parameters.get("required") or () if p in parameters["properties"]]
    if not required:
        return f"{opening}{{"
    quote = '"' if parameters["properties"][required[0]].get("type") == "string" else ""  # a string starts so
    return f"{opening}{{{json.dumps(required[0], ensure_ascii=False)}: {quote}"


def _likeliest_tool(platform: Any, prepared: list[dict], tools: list[dict]) -> str:
    """The bound tool whose name the model scores highest after `<tool_call>{"name": "` (constrained, so a
    small model cannot invent one)."""
    from polyglm.platform.engine import choose_labels
    from polyglm.platform.multimodal import text_turn

    lm = platform.lm
    ids = lm.chat_ids(prepared) + lm.tokenizer(TOOL_OPEN, add_special_tokens=False)["input_ids"]
    names = [tool["function"]["name"] for tool in tools]
    with text_turn(platform):
        return choose_labels(lm.model, lm.tokenizer, ids, {"name": names})["name"]["label"]


def _with_system_text(messages: list[dict], text: str) -> list[dict]:
    """`text` appended to the first system message (one is added at the front when there is none)."""
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _count(lm: Any, text: str) -> int:
    return len(lm.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


def _usage(prompt_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": prompt_tokens, "output_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens}  # fmt: skip
