"""polyglm's LangChain parts on the tiny profile: message mapping, tool calls, streaming, retriever, tools.

Where the model's words matter, generation is scripted (the tiny model's words are random): the pipeline
function `stream_prepared` is replaced by one that records what it was given and yields set pieces.
The rest runs for real on the tiny models.
"""

from __future__ import annotations

import base64
import io
import threading
import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from polyglm.integrations.langchain import ChatPolyglm, PackRetriever, as_langchain_tool, pack_tool
from polyglm.integrations.langchain.chat_model import _forced_prefix
from polyglm.integrations.langchain.messages import ReplyGuard, parse_calls, to_conversation, tools_section
from polyglm.pipelines.scenario_chat import parse_tool_call, render_tool_call
from polyglm.platform.errors import InputError
from tests.integrations.helpers import slow_echo
from tests.integrations.platforms import platform


def png_b64(text: str = "Order A10023") -> str:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (240, 80), "white")
    ImageDraw.Draw(image).text((10, 30), text, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def adder(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def echo(text: str) -> str:
    """Echo a text."""
    return text


def clock() -> str:
    """Tell the time."""
    return "noon"


# ---------------------------------------------------------------- messages


def test_conversation_maps_roles_tool_turns_and_media():
    image = {"type": "image", "base64": png_b64(), "mime_type": "image/png"}
    clip = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF....").decode(), "format": "wav"}}
    call = {"name": "adder", "args": {"a": 1, "b": 2}, "id": "c1"}
    conversation = to_conversation(
        [
            SystemMessage("Be brief."),
            HumanMessage([{"type": "text", "text": "What is this?"}, image, clip]),
            AIMessage("", tool_calls=[call]),
            ToolMessage("3", tool_call_id="c1"),
            ToolMessage("oops", tool_call_id="c1", status="error"),
        ]
    )
    assert [m["role"] for m in conversation.messages] == ["system", "user", "assistant", "user"]
    assert conversation.messages[2]["content"] == render_tool_call("adder", {"a": 1, "b": 2})
    assert conversation.messages[3]["content"] == "Tool result (adder): 3\nTool result (adder error): oops"
    assert conversation.attach_to == 1 and conversation.messages[1]["content"] == "What is this?"
    assert [name for name, _ in conversation.uploads] == ["image-1-1.png", "audio-1-2.wav"]
    assert conversation.uploads[1][1] == b"RIFF...."


def test_openai_image_url_block_is_decoded():
    url = f"data:image/jpeg;base64,{png_b64()}"
    conversation = to_conversation([HumanMessage([{"type": "image_url", "image_url": {"url": url}}])])
    assert conversation.uploads[0][0] == "image-0-0.jpg"


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([HumanMessage([{"type": "image", "url": "https://example.com/a.png"}])], "not URLs"),
        ([HumanMessage([{"type": "image", "base64": "@@@", "mime_type": "image/png"}])], "cannot be decoded"),
        ([HumanMessage([{"type": "image", "base64": "aGk=", "mime_type": "image/tiff"}])], "image/tiff"),
        ([HumanMessage([{"type": "video", "base64": "aGk="}])], "'video'"),
        (
            [HumanMessage([{"type": "image", "base64": png_b64(), "mime_type": "image/png"}]), HumanMessage("and?")],
            "latest human message",
        ),
    ],
)
def test_unusable_content_is_refused_with_the_fix(messages, problem):
    with pytest.raises(InputError, match=problem):
        to_conversation(messages)


# ---------------------------------------------------------------- tool calls in text


def test_parse_calls_reads_what_the_pack_loop_reads_and_more():
    text = render_tool_call("order_lookup", {"order_id": "A10023"})
    assert parse_tool_call(text) == ("order_lookup", {"order_id": "A10023"})
    calls, invalid = parse_calls(f"Let me check. {text} trailing words")
    assert [(c["name"], c["args"]) for c in calls] == [("order_lookup", {"order_id": "A10023"})] and not invalid
    listed, _ = parse_calls('<tool_call>[{"name": "a", "arguments": {}}, {"name": "b", "arguments": "{\\"x\\": 1}"}]')
    assert [(c["name"], c["args"]) for c in listed] == [("a", {}), ("b", {"x": 1})]  # SmolLM2's list, no close tag
    rerun, _ = parse_calls('<tool_call>{"name": "a", "arguments": {}, "name": ""}')  # a model running on
    assert rerun[0]["name"] == "a"  # the name written first (or forced) is the call
    cut, _ = parse_calls('<tool_call>{"name": "a", "arguments": {"x": 12')  # the token cap cut it
    assert cut[0]["args"] == {"x": 12}
    calls, invalid = parse_calls('<tool_call>{"name": "a", "arguments": </tool_call>')
    assert not calls and invalid[0]["type"] == "invalid_tool_call"


def test_reply_guard_holds_back_markers_split_across_pieces():
    guard = ReplyGuard(stops=["END"], tool_calls=True)
    shown = [guard.feed(p) for p in ["Hello E", "N", "D and more"]]
    assert "".join(shown) == "Hello " and guard.done and guard.stopped_by == "END"

    guard = ReplyGuard(tool_calls=True)
    shown = [guard.feed(p) for p in ["Sure <to", 'ol_call>{"name": "x", ', '"arguments": {}}', " never shown"]]
    assert "".join(shown) == "Sure " and guard.done  # complete JSON ends the call: no closing tag needed
    assert guard.captured == '<tool_call>{"name": "x", "arguments": {}}'

    guard = ReplyGuard(stops=["END"])
    assert guard.feed("a <tool_call> E") == "a <tool_call> " and guard.finish() == "E"  # no tools: plain text


def test_forced_prefix_writes_the_call_up_to_the_models_choice():
    from langchain_core.utils.function_calling import convert_to_openai_tool

    tools = [convert_to_openai_tool(adder), convert_to_openai_tool(clock)]
    assert _forced_prefix("adder", tools) == '<tool_call>{"name": "adder", "arguments": {"a": '
    assert _forced_prefix("adder", [convert_to_openai_tool(echo)]) == (
        '<tool_call>{"name": "echo", "arguments": {"text": "'  # a string argument starts with its quote
    )
    assert _forced_prefix("clock", tools) == '<tool_call>{"name": "clock", "arguments": {}}</tool_call>'
    assert _forced_prefix("any", tools) == '<tool_call>{"name": "'
    assert _forced_prefix(None, tools) == ""


def test_tools_section_describes_tools_as_packs_do():
    from langchain_core.utils.function_calling import convert_to_openai_tool

    text = tools_section([convert_to_openai_tool(adder)])
    assert "- adder(a: integer, b: integer): Add two integers." in text
    assert '<tool_call>{"name": "<tool name>"' in text


# ---------------------------------------------------------------- the chat model, scripted


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    """Replace the pipeline's generation by set pieces; record the prepared messages and the prefix."""
    import polyglm.pipelines.chat as chat

    seen: dict = {"pieces": []}

    def fake(platform, messages, options=None, prefix=""):
        seen.update(messages=messages, prefix=prefix, options=options)
        for piece in seen["pieces"]:
            seen["yielded"] = seen.get("yielded", 0) + 1
            yield piece

    monkeypatch.setattr(chat, "stream_prepared", fake)
    return seen


@pytest.fixture
def chat_model() -> ChatPolyglm:
    return ChatPolyglm(profile="tiny", platform=platform("tiny"), max_tokens=40)


def test_stream_yields_pieces_then_a_last_chunk_with_usage(chat_model, scripted):
    scripted["pieces"] = ["Hel", "lo", " there"]
    chunks = list(chat_model.stream("Hi"))
    assert [c.content for c in chunks] == ["Hel", "lo", " there", ""]
    last = chunks[-1]
    assert last.chunk_position == "last" and last.response_metadata["model_name"] == "polyglm"
    assert last.usage_metadata["input_tokens"] > 0 and last.usage_metadata["output_tokens"] > 0
    assert all(c.usage_metadata is None for c in chunks[:-1])
    assert scripted["options"].max_new_tokens == 40


def test_tool_call_in_the_reply_becomes_tool_calls(chat_model, scripted):
    scripted["pieces"] = ["Let me add. <tool", '_call>{"name": "adder", "arguments": {"a": 2, "b": 3}}', "</tool_call>"]
    reply = chat_model.bind_tools([adder]).invoke("What is 2 + 3?")
    assert reply.content == "Let me add. "
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("adder", {"a": 2, "b": 3})]
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    system = scripted["messages"][0]
    assert system["role"] == "system" and "- adder(a: integer, b: integer)" in system["content"]
    assert scripted["yielded"] == 2  # the call's JSON was complete: generation stopped there


def test_forced_tool_choice_starts_the_reply_with_the_call(chat_model, scripted):
    from langchain_core.utils.function_calling import convert_to_openai_tool

    tools = [convert_to_openai_tool(adder), convert_to_openai_tool(clock)]
    scripted["pieces"] = ["4, ", '"b": 5}}']
    reply = chat_model.bind_tools([adder, clock], tool_choice="adder").invoke("add")
    assert scripted["prefix"] == '<tool_call>{"name": "adder", "arguments": {"a": '
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("adder", {"a": 4, "b": 5})]
    chat_model.bind_tools([adder, clock], tool_choice="any").invoke("add")  # the tiny LM picks one of the two
    assert scripted["prefix"] in {_forced_prefix("adder", tools), _forced_prefix("clock", tools)}
    reply = chat_model.bind_tools([clock], tool_choice="any").invoke("time?")
    assert reply.tool_calls[0]["name"] == "clock" and reply.tool_calls[0]["args"] == {}


def test_tool_results_go_back_to_the_model(chat_model, scripted):
    scripted["pieces"] = ["It is 5."]
    call = {"name": "adder", "args": {"a": 2, "b": 3}, "id": "c9"}
    history = [HumanMessage("2+3?"), AIMessage("", tool_calls=[call]), ToolMessage("5", tool_call_id="c9")]
    reply = chat_model.bind_tools([adder]).invoke(history)
    assert reply.content == "It is 5." and not reply.tool_calls
    assert scripted["messages"][-1] == {"role": "user", "content": "Tool result (adder): 5"}


def test_stop_sequences_cut_the_reply(chat_model, scripted):
    scripted["pieces"] = ["one, two", ", thr", "ee, four"]
    assert chat_model.invoke("count", stop=["three"]).content == "one, two, "
    assert ChatPolyglm(profile="tiny", platform=platform("tiny"), stop=[", f"]).invoke("count").content == (
        "one, two, three"
    )


def test_bad_tool_choice_and_scenario_binding_are_refused(chat_model):
    with pytest.raises(InputError, match="not a bound tool"):
        chat_model.bind_tools([adder], tool_choice="nope")
    with pytest.raises(InputError, match="pack_tools"):
        ChatPolyglm(profile="tiny", scenario="customer_service").bind_tools([adder])


# ---------------------------------------------------------------- the chat model, for real on tiny weights


def test_nothing_loads_until_the_first_call():
    model = ChatPolyglm(profile="tiny")
    assert model.platform is None
    model.bind_tools([adder])
    assert model.platform is None


def test_a_real_tiny_turn_with_an_image_takes_the_attachment_path(chat_model):
    message = HumanMessage(
        [{"type": "text", "text": "Read this"}, {"type": "image", "base64": png_b64(), "mime_type": "image/png"}]
    )
    reply = chat_model.invoke([message], max_tokens=4)
    attachments = reply.response_metadata["polyglm"]["attachments"]
    assert attachments["images"] == 1 and len(attachments["ocr"]) == 1  # OCR ran on the decoded image
    assert reply.usage_metadata["output_tokens"] <= 8  # 4 tokens (re-tokenised text may differ slightly)


def test_closing_a_stream_early_stops_generation(chat_model):
    """A stop sequence closes the pipeline's stream: generate() must end then, not run on in a thread."""
    from polyglm.pipelines.chat import stream_prepared
    from polyglm.platform.engine import GenerationOptions

    before = threading.active_count()
    started = time.perf_counter()
    pieces = stream_prepared(chat_model.get_platform(), [{"role": "user", "content": "hi"}],
                             GenerationOptions(max_new_tokens=4000))  # fmt: skip
    next(pieces)
    pieces.close()
    assert threading.active_count() == before
    assert time.perf_counter() - started < 20


def test_scenario_model_runs_the_packs_turn(isolated_cache):
    model = ChatPolyglm(profile="tiny", platform=platform("tiny"), scenario="customer_service", lang="en", max_tokens=4)
    reply = model.invoke("Where is my order A10023?")
    extension = reply.response_metadata["polyglm"]
    assert reply.response_metadata["model_name"] == "polyglm:customer_service"
    assert any(c["name"] == "order_lookup" and c["source"] == "planner" for c in extension["tool_calls"])
    assert extension["citations"] and extension["lang"] == "en"


# ---------------------------------------------------------------- retriever and tools


def test_retriever_documents_carry_citations(isolated_cache):
    retriever = PackRetriever(pack="customer_service", lang="zh", k=3, profile="tiny", platform=platform("tiny"))
    docs = retriever.invoke("退款多久到账？")
    assert len(docs) == 3 and all(d.metadata["lang"] == "zh" for d in docs)
    first = docs[0].metadata
    assert first["citation"] == f"{first['doc_id']}#{first['passage']}" == docs[0].id
    assert len(retriever.invoke("退款", k=1)) == 1
    message = retriever.as_tool(name="kb").invoke(
        {"name": "kb", "args": {"query": "退款"}, "id": "1", "type": "tool_call"}
    )
    assert f"[{first['citation']}]" in message.content or "[" in message.content
    assert all(doc.metadata["citation"] in message.content for doc in message.artifact)


def test_pack_tool_runs_in_the_worker_and_reports_errors(isolated_cache):
    order = pack_tool("customer_service", "order_lookup")
    message = order.invoke({"name": "order_lookup", "args": {"order_id": "A10023"}, "id": "1", "type": "tool_call"})
    assert message.status == "success" and '"order_id": "A10023"' in message.content
    assert message.artifact["result"]["order_id"] == "A10023"
    bad = order.invoke({"name": "order_lookup", "args": {"order_id": "??"}, "id": "2", "type": "tool_call"})
    assert bad.status == "error" and bad.content.startswith('{"error": "order id must be')


def test_pack_tool_keeps_polyglm_limits_and_schema_checks():
    echo = as_langchain_tool(slow_echo)
    assert echo.metadata["timeout_s"] == 1.0
    started = time.perf_counter()
    late = echo.invoke({"name": "slow_echo", "args": {"text": "hi", "seconds": 30.0}, "id": "1", "type": "tool_call"})
    assert late.status == "error" and "timed out after 1 s" in late.content
    assert time.perf_counter() - started < 15  # the worker was killed, not waited for
    wrong = echo.invoke({"name": "slow_echo", "args": {"text": 5}, "id": "2", "type": "tool_call"})
    assert wrong.status == "error" and "must be of type string" in wrong.content
