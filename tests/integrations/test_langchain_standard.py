"""langchain-tests' standard suites run against polyglm's LangChain parts.

Unit-level suites (construction, schemas, serialisation) use the `tiny` profile: nothing is generated.
Suites that check behaviour use the real `offline` profile and are marked `slow`. Capabilities are
switched off only where the offline model really lacks them; each says why, with what was measured.
"""

from __future__ import annotations

import base64
import io
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import (
    ChatModelIntegrationTests,
    RetrieversIntegrationTests,
    ToolsIntegrationTests,
)
from langchain_tests.unit_tests import ChatModelUnitTests, ToolsUnitTests

from polyglm.integrations.langchain import ChatPolyglm, PackRetriever, pack_tool
from tests.integrations.platforms import platform

# ---------------------------------------------------------------- chat model


PYDANTIC_GAP = pytest.mark.xfail(
    reason="Gemma-3-270M + delta leaves out required fields of a pydantic schema", strict=False
)


class TestChatPolyglmUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatPolyglm]:
        return ChatPolyglm

    @property
    def chat_model_params(self) -> dict:
        return {"profile": "tiny"}  # nothing loads: these tests build, bind and describe the model only


def local_media(url: str) -> bytes:
    """Stand-ins for the files the standard media tests download (tests never open sockets): a PNG with
    text for OCR, and a WAV of speech from espeak-ng."""
    if url.endswith(".png"):
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (320, 120), "white")
        ImageDraw.Draw(image).text((20, 45), "Agentic RAG output", fill="black")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    if url.endswith(".wav"):  # to a file: a WAV on stdout has no length in its header
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "speech.wav"
            subprocess.run(["espeak-ng", "-w", str(path), "A woodpecker is calling in the forest."], check=True)
            return path.read_bytes()
    raise AssertionError(f"no local stand-in for {url}")


class _Response:
    def __init__(self, content: bytes) -> None:
        self.content = content


@pytest.mark.slow
class TestChatPolyglmIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatPolyglm]:
        return ChatPolyglm

    @property
    def chat_model_params(self) -> dict:
        # Replies capped at 24 tokens (the suite's own default is 100): it checks the shape of replies, not
        # their length, and ~45 tests x 100 tokens does not fit CI's budget on 2 cores.
        return {"profile": "offline", "platform": platform("offline"), "max_tokens": 24}

    @pytest.fixture(autouse=True)
    def _offline_media(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from langchain_tests.integration_tests import chat_models

        monkeypatch.setattr(chat_models.httpx, "get", lambda url, **_: _Response(local_media(url)))
        monkeypatch.setattr(
            chat_models, "_get_base64_from_url", lambda url: base64.b64encode(local_media(url)).decode()
        )

    @property
    def supports_image_inputs(self) -> bool:
        return True  # encoder -> trained adapter -> fusion, plus OCR (base64 and data: URLs)

    @property
    def supports_audio_inputs(self) -> bool:
        return True  # Whisper encoder -> trained adapter -> fusion, plus a transcript

    @property
    def supports_image_urls(self) -> bool:
        return False  # http(s) URLs are refused: polyglm runs offline and reads data, never fetches

    # Tool calling stays on: bind_tools works, and forced calls (tool_choice "any" or a name, which every
    # other tool test and structured output use) are enforced by starting the reply with the call. Deciding
    # unprompted to call a tool is what SmolLM2-135M lacked: measured 0 of 12 (the two prompts below, greedy +
    # 5 sampled seeds each at temperature 0.8); not remeasured for Gemma + delta, which xfails it too (2026-11-30).
    @pytest.mark.xfail(reason="the offline LM does not finish the agent loop unprompted", strict=False)
    def test_agent_loop(self, model: Any) -> None:
        super().test_agent_loop(model)

    # Forced calls carry the right tool name (the reply starts with it) and, with Gemma + polyglm's delta, the
    # right arguments: test_tool_calling and test_unicode_tool_call_integration pass (SmolLM2-135M wrote
    # {"input": 1234567890, ...} for magic_function(3) and turned 你好啊集团 into Japanese). Structured output
    # with a pydantic schema does not: the model fills one field ({"setup": "cat_joke"}) and closes the call.
    @PYDANTIC_GAP
    def test_structured_output_pydantic_2_v1(self, model: Any) -> None:
        super().test_structured_output_pydantic_2_v1(model)

    # A justified subset for CI's 2 cores: the async twins run the very same `_stream` through LangChain's
    # executor bridge, so they are skipped here (~200 s of the suite under load); each sync twin runs.
    for _name, _twin in [("test_ainvoke", "test_invoke"), ("test_astream", "test_stream"),
                         ("test_astream_events_v3", "test_stream_events_v3"), ("test_abatch", "test_batch"),
                         ("test_tool_calling_async", "test_tool_calling"),
                         ("test_structured_output_async", "test_structured_output")]:  # fmt: skip
        locals()[_name] = pytest.mark.skip(reason=f"async twin of {_twin}: same code path; CI time budget")(
            getattr(ChatModelIntegrationTests, _name)
        )
    del _name, _twin


# ---------------------------------------------------------------- retriever


@pytest.mark.slow
class TestPackRetrieverIntegration(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[PackRetriever]:
        return PackRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"pack": "customer_service", "lang": "en", "profile": "offline", "platform": platform("offline")}

    @property
    def retriever_query_example(self) -> str:
        return "How long does a refund take to arrive?"


# ---------------------------------------------------------------- tools (no model involved: the tool worker runs them)


class TestPackToolUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> Any:
        return pack_tool("customer_service", "refund_eligibility")

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"order_id": "A10023", "reason": "changed_mind"}


class TestPackToolIntegration(ToolsIntegrationTests):
    @property
    def tool_constructor(self) -> Any:
        return pack_tool("customer_service", "refund_eligibility")

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"order_id": "A10023", "reason": "changed_mind"}


def test_every_pack_tool_converts():
    """The battery: every tool of every pack becomes a LangChain tool with polyglm's own schema."""
    from polyglm.scenarios.loader import list_packs, load_pack
    from polyglm.scenarios.tooling import load_tools, tool_spec

    count = 0
    for name in list_packs():
        for fn in load_tools(load_pack(name)):
            spec = tool_spec(fn)
            converted = pack_tool(name, spec.name)
            assert converted.tool_call_schema["properties"] == spec.parameters["properties"]
            assert set(converted.get_input_schema().model_fields) == set(spec.parameters["properties"])
            count += 1
    assert count >= 8
