"""The OpenAI-compatible API, driven by the official `openai` client against a real uvicorn server (tiny)."""

from __future__ import annotations

import base64
import io
import socket
import subprocess
import threading
import time

import openai
import pytest

from polyglm.serve import ServeOptions, create_app

KEY = "test-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _running(app):
    """A real uvicorn server for `app` on a free loopback port, in a thread; yields its /v1 URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(tiny_platform, tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    _png("CLOSED MONDAY").save(root / "sign.png")
    app = create_app(ServeOptions(profile="tiny", api_key=KEY, media_root=root, max_request_bytes=2_000_000),
                     platform=tiny_platform)  # fmt: skip
    for url in _running(app):
        yield url, root


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0], api_key=KEY, max_retries=0, timeout=120)


def _png(text: str):
    from PIL import Image, ImageDraw, ImageFont

    from polyglm.pipelines.adapter_data import font_path

    image = Image.new("RGB", (360, 120), "white")
    font = ImageFont.truetype(str(font_path("DejaVuSans.ttf")), 36)
    ImageDraw.Draw(image).text((20, 35), text, fill="black", font=font)
    return image


def _data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _wav(tmp_path, text: str) -> str:
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "note.wav"), text], check=True)
    return base64.b64encode((tmp_path / "note.wav").read_bytes()).decode()


def _extension(completion) -> dict:
    return completion.model_extra["polyglm"]


def test_models_lists_the_plain_assistant_and_every_pack(client):
    ids = {m.id for m in client.models.list()}
    assert {"polyglm", "polyglm:customer_service", "polyglm:medical", "polyglm:education"} <= ids


def test_a_completion_and_its_stream_say_the_same(client, tiny_platform):
    from polyglm.pipelines.chat import reply
    from polyglm.platform.engine import GenerationOptions

    messages = [{"role": "user", "content": "hello there"}]
    whole = client.chat.completions.create(model="polyglm", messages=messages, max_tokens=12)
    expected = reply(tiny_platform, messages, GenerationOptions(max_new_tokens=12))  # the pipeline itself
    assert whole.choices[0].message.content == expected and expected
    assert whole.usage.completion_tokens > 0 and whole.usage.prompt_tokens > 3
    chunks = list(client.chat.completions.create(model="polyglm", messages=messages, max_tokens=12, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens > 0


def test_an_image_and_a_voice_note_reach_the_pipeline(client, tmp_path):
    content = [
        {"type": "text", "text": "What does the sign say, and what did I say?"},
        {"type": "image_url", "image_url": {"url": _data_url(_png("OPEN LATE"))}},
        {"type": "input_audio", "input_audio": {"data": _wav(tmp_path, "hello world"), "format": "wav"}},
    ]
    done = client.chat.completions.create(model="polyglm", messages=[{"role": "user", "content": content}],
                                          max_tokens=8)  # fmt: skip
    seen = _extension(done)["attachments"]
    assert seen["images"] == 1 and seen["audio"] == 1
    assert seen["ocr"][0].replace(" ", "").upper() == "OPENLATE"
    assert len(seen["transcripts"]) == 1  # the tiny Whisper is random: its words mean nothing, its presence does
    assert seen["notes"] == [f"profile 'tiny' has no trained {m} adapter: text only" for m in ("image", "audio")]


def test_local_images_only_under_the_media_root(client, server):
    ask = [{"type": "text", "text": "Read it."}, {"type": "image_url", "image_url": {"url": "sign.png"}}]
    done = client.chat.completions.create(model="polyglm", messages=[{"role": "user", "content": ask}], max_tokens=4)
    assert _extension(done)["attachments"]["ocr"][0].replace(" ", "").upper() == "CLOSEDMONDAY"
    ask[1] = {"type": "image_url", "image_url": {"url": "../../../../etc/hostname"}}
    with pytest.raises(openai.BadRequestError, match="not a file under the allowed media root"):
        client.chat.completions.create(model="polyglm", messages=[{"role": "user", "content": ask}], max_tokens=4)


def test_a_pack_answers_with_citations_and_planner_tool_calls(client):
    done = client.chat.completions.create(
        model="polyglm:customer_service", max_tokens=8,
        messages=[{"role": "user", "content": "Where is my order A10023?"}],
    )  # fmt: skip
    extension = _extension(done)
    assert extension["scenario"] == "customer_service" and extension["lang"] == "en"
    assert extension["citations"] and extension["citations"][0]["citation"]
    assert [c["name"] for c in extension["tool_calls"]] == ["order_lookup"]
    assert extension["tool_calls"][0]["source"] == "planner"


def test_bad_requests_are_4xx_and_the_server_stays_up(client, server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server[0], api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError, match="model 'gpt-4' does not exist"):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.chat.completions.create(model="polyglm", messages=[{"role": "user", "content": "  "}])
    broken = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]
    with pytest.raises(openai.BadRequestError, match="base64"):
        client.chat.completions.create(model="polyglm", messages=[{"role": "user", "content": broken}])
    bomb = [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 3_000_000}},
    ]
    with pytest.raises(openai.APIStatusError, match="limit is 2,000,000") as too_big:
        client.chat.completions.create(model="polyglm", messages=[{"role": "user", "content": bomb}])
    assert too_big.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="polyglm", messages=[{"role": "user", "content": "hi"}], max_tokens=0)
    ok = client.chat.completions.create(model="polyglm", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert ok.choices[0].message.content is not None


def _post_sentiment(server, body, key: str = KEY):
    import httpx

    return httpx.post(f"{server[0]}/sentiment", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def test_sentiment_endpoint_reads_text_images_and_voice_notes(server, tmp_path):
    from polyglm.pipelines.sentiment import LABELS

    image = base64.b64encode(base64.b64decode(_data_url(_png("CLOSED MONDAY")).split(",")[1])).decode()
    body = {"text": "so glad it is the weekend", "images": [{"data": image, "format": "png"}],
            "audio": [{"data": _wav(tmp_path, "what a lovely day"), "format": "wav"}]}  # fmt: skip
    answer = _post_sentiment(server, body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["object"] == "sentiment" and result["label"] in LABELS
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert result["evidence"]["ocr"][0].replace(" ", "") == "CLOSEDMONDAY"
    assert len(result["evidence"]["transcripts"]) == 1
    assert result["modalities"][0] == "text" and set(result["attribution"]["alone"]) == set(result["modalities"])
    local = _post_sentiment(server, {"images": ["sign.png"]})  # a path under --media-root, no text
    assert local.status_code == 200 and local.json()["evidence"]["ocr"][0].replace(" ", "") == "CLOSEDMONDAY"


def test_sentiment_endpoint_refuses_bad_requests_with_4xx(server):
    assert _post_sentiment(server, {"text": "hi"}, key="wrong").status_code == 401
    for body, status, message in (
        ({}, 400, "nothing to analyse"),
        ({"text": "  "}, 400, "the text is empty"),
        ({"text": "hi", "images": [{"data": "%%%", "format": "png"}]}, 400, "base64"),
        ({"text": "hi", "audio": [{"data": base64.b64encode(b"not audio").decode(), "format": "wav"}]}, 400,
         "audio-0.wav"),
        ({"text": "hi", "images": "x"}, 400, "`images` must be a list"),
        ({"text": "hi", "scenario": "medical"}, 400, "not a sentiment pack"),
        ({"text": "hi", "images": [{"data": "A" * 3_000_000}]}, 413, "limit is 2,000,000"),
    ):  # fmt: skip
        answer = _post_sentiment(server, body)
        assert answer.status_code == status and message in answer.json()["error"]["message"], (body.keys(), answer.text)
    assert _post_sentiment(server, {"text": "still up"}).status_code == 200


@pytest.mark.slow
def test_a_red_circle_sent_to_the_offline_api_is_seen_through_the_adapter(offline_platform):
    import random

    from polyglm.pipelines.adapter_data import shapes_image

    circle = shapes_image(random.Random(12345), "red", "circle", 1)
    content = [{"type": "text", "text": "What colour are the shapes?"},
               {"type": "image_url", "image_url": {"url": _data_url(circle)}}]  # fmt: skip
    for url in _running(create_app(ServeOptions(profile="offline"), platform=offline_platform)):
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
        done = client.chat.completions.create(model="polyglm", messages=[{"role": "user", "content": content}],
                                              max_tokens=12)  # fmt: skip
    assert "red" in done.choices[0].message.content.lower()
    assert _extension(done)["attachments"]["feature_slots"] == [49]


def test_time_limits_cut_a_long_reply_and_refuse_a_request_that_waits_too_long(tiny_platform):
    app = create_app(ServeOptions(profile="tiny", max_seconds=0.0, max_queue_seconds=0.2), platform=tiny_platform)
    for url in _running(app):
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
        ask = {"model": "polyglm", "max_tokens": 64, "messages": [{"role": "user", "content": "Tell me a story."}]}
        cut = client.chat.completions.create(**ask)
        assert cut.choices[0].finish_reason == "length"  # stopped at the deadline: one piece, not 64 tokens
        assert cut.usage.completion_tokens < 64
        streamed = list(client.chat.completions.create(**ask, stream=True))
        assert streamed[-1].choices[0].finish_reason == "length"
        app.state.worker.acquire()  # another request is using the model
        try:
            with pytest.raises(openai.APIStatusError) as refused:
                client.chat.completions.create(**ask)
            assert refused.value.status_code == 503 and "busy" in refused.value.message
        finally:
            app.state.worker.release()
        assert client.chat.completions.create(**ask).choices[0].finish_reason == "length"  # and it serves again
