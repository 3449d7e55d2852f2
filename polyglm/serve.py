"""`polyglm serve`: an OpenAI-compatible HTTP API, thin over the chat and scenario pipelines.

`POST /v1/chat/completions` takes OpenAI chat messages whose content is a string or a list of parts:
`text`, `image_url` (a `data:` URL, or a local path under `--media-root`) and `input_audio`
(base64 + format). Images and voice notes attached to the last user message go through the same
`prepare_turn` as the CLI and the app (adapter features, OCR text, transcript). `model` is
`polyglm` (the plain assistant) or `polyglm:<pack>` (a scenario assistant). `stream: true` answers
with server-sent events. Beyond OpenAI's fields, each response has a `polyglm` object: what was
read from the attachments and, for a pack, its citations, tool calls and whether it escalated.

One model worker: requests take a lock around model work, so concurrent requests queue instead of
loading a second copy or interleaving generations on shared modules. Time limits: a request that waits
longer than `max_queue_seconds` for the worker gets 503; a reply that runs past `max_seconds` is cut
there with finish_reason "length" (generation stops, the worker is free for the next request).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from polyglm.platform.config import DEFAULT_PROFILE
from polyglm.platform.errors import InputError, PolyglmError

PLAIN_MODEL = "polyglm"


@dataclass(frozen=True)
class ServeOptions:
    profile: str = DEFAULT_PROFILE  # model profile the API serves
    api_key: str | None = None  # when set, requests need `Authorization: Bearer <key>`
    media_root: Path | None = None  # local image/audio paths are read only under this folder; None: data: URLs only
    max_request_bytes: int = 64_000_000  # larger request bodies get 413 before they are read
    default_max_tokens: int = 256  # reply cap when a request gives none
    max_seconds: float = 120.0  # a reply stops here (finish_reason "length"): one request cannot hold the model
    max_queue_seconds: float = 60.0  # a request that waits longer for the model worker gets 503 (retry later)


class ApiError(Exception):
    """An HTTP error in OpenAI's error format."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": None, "code": self.code}}


# --------------------------------------------------------------------- request -> pipeline inputs


def decode_base64(payload: str, what: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what}: the base64 data cannot be decoded; send the file's bytes base64-encoded") from None


def decode_data_url(url: str, what: str) -> bytes:
    header, _, payload = url.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        raise InputError(f"{what}: a data: URL must be base64 (data:<mime>;base64,<data>)")
    return decode_base64(payload, what)


def local_file(path: str, root: Path | None, what: str) -> bytes:
    from polyglm.platform.paths import resolve_inside

    if root is None:
        raise InputError(f"{what}: only data: URLs are accepted (start the server with --media-root to allow paths)")
    resolved = resolve_inside(root, path.removeprefix("file://"))
    if resolved is None or not resolved.is_file():
        raise InputError(f"{what}: {path!r} is not a file under the allowed media root")
    return resolved.read_bytes()


def split_parts(content: Any, root: Path | None, index: int) -> tuple[str, list[tuple[str, bytes]]]:
    """(text, [(file name, bytes)]) of one message's content."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InputError(f"messages[{index}].content must be a string or a list of content parts")
    texts, files = [], []
    for number, part in enumerate(content):
        where, kind = f"messages[{index}].content[{number}]", part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            data = decode_data_url(url, where) if url.startswith("data:") else local_file(url, root, where)
            files.append((f"image-{index}-{number}{_image_suffix(url)}", data))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = str(audio.get("format", "wav")).lower()
            files.append((f"audio-{index}-{number}.{fmt}", decode_base64(str(audio.get("data", "")), where)))
        else:
            raise InputError(f"{where}: type {kind!r} is not supported; use text, image_url or input_audio")
    return "\n".join(t for t in texts if t), files


def _image_suffix(url: str) -> str:
    mime = url[5 : url.find(";")] if url.startswith("data:") else ""
    if not url.startswith("data:"):
        return Path(url).suffix
    return {"image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif", "image/bmp": ".bmp"}.get(mime, ".png")


def chat_inputs(body: dict, root: Path | None) -> tuple[list[dict], list[tuple[str, bytes]]]:
    """Text messages and the files attached to the last user message (earlier attachments are refused)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("`messages` must be a non-empty list")
    plain, files = [], []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InputError(f"messages[{index}] must be an object with role and content")
        text, attached = split_parts(message.get("content", ""), root, index)
        if attached and index != len(messages) - 1:
            raise InputError(f"messages[{index}]: attach images and audio to the last user message only")
        plain.append({"role": message.get("role"), "content": text})
        files = attached
    return plain, files


# --------------------------------------------------------------------- the app


def create_app(options: ServeOptions, platform=None):
    """The FastAPI app; `platform` defaults to the profile's, loaded lazily on the first request."""
    from polyglm.platform.loader import load_platform
    from polyglm.scenarios.loader import list_packs

    platform = platform or load_platform(options.profile)
    worker = threading.Lock()  # one generation at a time on the shared model
    app = FastAPI(title="polyglm", version="0.1.0")
    app.state.worker = worker  # who holds the model can be seen from outside (tests, a health probe)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        try:
            check_key(request.headers.get("authorization"), options.api_key)
            size = int(request.headers.get("content-length") or 0)
            if size > options.max_request_bytes:
                raise ApiError(413, f"request body is {size:,} bytes; the limit is {options.max_request_bytes:,}")
        except ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return await call_next(request)

    @app.get("/v1/models")
    def models() -> dict:
        ids = [PLAIN_MODEL, *(f"{PLAIN_MODEL}:{name}" for name in list_packs())]
        return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "polyglm"}
                                           for i in ids]}  # fmt: skip

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await json_body(request)
        model = str(body.get("model", ""))
        pack = resolve_model(model, list_packs())
        try:
            messages, files = chat_inputs(body, options.media_root)
            generation = generation_options(body, options.default_max_tokens)
            turn = await run_in_threadpool(run_locked, worker, options, platform, model, pack, messages, files,
                                           generation, bool(body.get("stream")))  # fmt: skip
        except PolyglmError as exc:
            raise ApiError(400, str(exc)) from None
        if body.get("stream"):
            return StreamingResponse(turn.sse(worker, options.max_queue_seconds), media_type="text/event-stream")
        return turn.completion()

    @app.post("/v1/sentiment")
    async def sentiment(request: Request):
        body = await json_body(request)
        try:
            text, files, scenario = sentiment_inputs(body, options.media_root)
            result = await run_in_threadpool(sentiment_locked, worker, options, platform, text, files, scenario)
        except PolyglmError as exc:
            raise ApiError(400, str(exc)) from None
        return {"object": "sentiment", "model": PLAIN_MODEL, **result.as_dict()}

    return app


async def json_body(request: Request) -> dict:
    """The request's JSON object, or 400 naming what is wrong with it."""
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


@contextmanager
def holding(worker: threading.Lock, seconds: float) -> Iterator[None]:
    """The model worker, or 503 when other requests hold it longer than `seconds`."""
    if not worker.acquire(timeout=seconds):
        raise ApiError(503, f"the model worker stayed busy for {seconds:g} s (other requests are running); "
                       "retry in a moment", "server_busy")  # fmt: skip
    try:
        yield
    finally:
        worker.release()


class Within:
    """The pieces of a reply until `seconds` have passed; `cut` says whether the deadline stopped it. Stopping
    early stops generation too (the engine's stream ends its generate() when the reader stops)."""

    def __init__(self, pieces: Iterator[str], seconds: float) -> None:
        self.pieces, self.seconds, self.cut = pieces, seconds, False

    def __iter__(self) -> Iterator[str]:
        deadline = time.monotonic() + self.seconds
        for piece in self.pieces:
            yield piece
            if time.monotonic() > deadline:
                self.cut = True
                close = getattr(self.pieces, "close", None)
                if close:
                    close()
                return


def run_locked(worker: threading.Lock, options: ServeOptions, *args) -> Turn:
    """Model work off the event loop, one request at a time."""
    with holding(worker, options.max_queue_seconds):
        return Turn.run(*args, max_seconds=options.max_seconds)


def sentiment_inputs(body: dict, root: Path | None) -> tuple[str, list[tuple[str, bytes]], str | None]:
    """(text, [(file name, bytes)], scenario) of a /v1/sentiment body: `text`, and `images` / `audio` as lists
    of {"data": base64, "format": "png"} (or, for images, data: URLs and paths under --media-root)."""
    text = body.get("text", "")
    if not isinstance(text, str):
        raise InputError("`text` must be a string")
    scenario = body.get("scenario")
    if scenario not in (None, "social_sentiment"):
        raise InputError(f"scenario {scenario!r} is not a sentiment pack; use social_sentiment or leave it out")
    files = []
    for key, default in (("images", "png"), ("audio", "wav")):
        parts = body.get(key, [])
        if not isinstance(parts, list):
            raise InputError(f'`{key}` must be a list of {{"data": base64, "format": "{default}"}} objects')
        for number, part in enumerate(parts):
            where = f"{key}[{number}]"
            if isinstance(part, str):  # an image as a data: URL or a path under the media root
                data = decode_data_url(part, where) if part.startswith("data:") else local_file(part, root, where)
                files.append((f"{key}-{number}{_image_suffix(part) or '.' + default}", data))
            elif isinstance(part, dict):
                fmt = str(part.get("format", default)).lower().lstrip(".")
                files.append((f"{key}-{number}.{fmt}", decode_base64(str(part.get("data", "")), where)))
            else:
                raise InputError(f'{where} must be {{"data": base64, "format": "{default}"}}')
    return text, files, scenario


def sentiment_locked(worker: threading.Lock, options: ServeOptions, platform, text: str, files: list,
                     scenario: str | None):  # fmt: skip
    """Decode (media.py's checks), then analyse under the model lock."""
    from polyglm.pipelines.attachments import decode_uploads
    from polyglm.pipelines.sentiment import SentimentInput, analyse, check_input

    check_input(SentimentInput(text=text, images=tuple(files)))  # nothing to judge, too long: before decoding
    images, audio = decode_uploads(files)
    names = [name for name, _ in files]
    item = SentimentInput(text=text, images=tuple(images), audio=tuple(audio),
                          image_names=tuple(n for n in names if n.startswith("images")),
                          audio_names=tuple(n for n in names if n.startswith("audio")))  # fmt: skip
    with holding(worker, options.max_queue_seconds):
        return analyse(platform, item, scenario=scenario)


def check_key(header: str | None, key: str | None) -> None:
    if key is None:
        return
    if header != f"Bearer {key}":
        raise ApiError(401, "missing or wrong API key: send `Authorization: Bearer <key>`", "invalid_api_key")


def resolve_model(model: str, packs: list[str]) -> str | None:
    """None for the plain assistant, the pack name for `polyglm:<pack>`; 404 otherwise."""
    if model == PLAIN_MODEL:
        return None
    name = model.removeprefix(f"{PLAIN_MODEL}:")
    if model.startswith(f"{PLAIN_MODEL}:") and name in packs:
        return name
    known = ", ".join([PLAIN_MODEL, *(f"{PLAIN_MODEL}:{p}" for p in packs)])
    raise ApiError(404, f"model {model!r} does not exist; use one of {known}", code="model_not_found")


def generation_options(body: dict, default_max_tokens: int):
    from polyglm.platform.engine import GenerationOptions

    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    cap = default_max_tokens if cap is None else cap
    temperature = body.get("temperature", 0.0)
    if not isinstance(cap, int) or not 1 <= cap <= 4096:
        raise InputError("max_tokens must be an integer from 1 to 4096")
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise InputError("temperature must be a number from 0 to 2")
    return GenerationOptions(max_new_tokens=cap, temperature=float(temperature), seed=int(body.get("seed") or 0))


@dataclass
class Turn:
    """One request's answer: text pieces (lazily, for streaming) plus the `polyglm` extension."""

    platform: Any
    model: str
    pieces: Iterator[str]
    extension: dict
    prompt_tokens: int
    finish: str = "stop"  # "length" when the time limit cut the reply (non-streaming; streams read `pieces.cut`)

    @classmethod
    def run(cls, platform, model, pack, messages, files, generation, stream: bool, max_seconds: float) -> Turn:
        from polyglm.pipelines.attachments import decode_uploads

        images, audio = decode_uploads(files)
        if pack is None:
            return cls.plain(platform, model, messages, images, audio, generation, stream, max_seconds)
        return cls.scenario(platform, model, pack, messages, images, audio, generation)

    @classmethod
    def plain(cls, platform, model, messages, images, audio, generation, stream: bool, max_seconds: float) -> Turn:
        from polyglm.pipelines.chat import prepare_turn, stream_prepared
        from polyglm.platform.fusion import render_messages

        prepared, read = prepare_turn(platform, messages, images, audio)
        rendered, _ = render_messages(platform.lm.tokenizer, prepared)
        prompt_tokens = len(platform.lm.chat_ids(rendered))
        pieces = Within(stream_prepared(platform, prepared, generation), max_seconds)
        extension = {"attachments": attachments_view(read, len(images), len(audio))}
        if not stream:
            text = "".join(pieces)
            return cls(platform, model, iter([text]), extension, prompt_tokens, "length" if pieces.cut else "stop")
        return cls(platform, model, pieces, extension, prompt_tokens)

    @classmethod
    def scenario(cls, platform, model, pack, messages, images, audio, generation) -> Turn:
        from polyglm.pipelines.chat import language_of, validate_messages
        from polyglm.pipelines.scenario_chat import scenario_assistant
        from polyglm.scenarios.loader import load_pack

        messages = validate_messages(messages)
        languages = load_pack(pack).languages
        lang = language_of(messages[-1]["content"])
        assistant = scenario_assistant(platform, pack, lang if lang in languages else languages[0])
        assistant.max_new_tokens = generation.max_new_tokens
        reply = assistant.respond(messages[-1]["content"], messages[:-1], images=images, audio=audio)
        extension = {"scenario": pack, "lang": assistant.lang, "escalated": reply.escalated,
                     "citations": reply.citations, "tool_calls": reply.tool_calls}  # fmt: skip
        prompt_tokens = len(platform.lm.chat_ids(messages))
        return cls(platform, model, iter([reply.answer]), extension, prompt_tokens)

    def completion(self) -> dict:
        text = "".join(self.pieces)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": self.finish}],
            "usage": self.usage(text),
            "polyglm": self.extension,
        }

    def usage(self, text: str) -> dict:
        completion = len(self.platform.lm.tokenizer(text, add_special_tokens=False)["input_ids"])
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}  # fmt: skip

    def sse(self, worker: threading.Lock, queue_seconds: float) -> Iterator[str]:
        """Server-sent events in OpenAI's chunk format; the model lock is held while tokens are made."""
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            payload = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        text = []
        try:
            with holding(worker, queue_seconds):
                for piece in self.pieces:
                    text.append(piece)
                    yield chunk({"content": piece})
        except ApiError as exc:  # the stream has started: the error goes as an event, as OpenAI's streams do
            yield f"data: {json.dumps(exc.body())}\n\n"
        finish = "length" if getattr(self.pieces, "cut", False) else "stop"
        yield chunk({}, finish, usage=self.usage("".join(text)), polyglm=self.extension)
        yield "data: [DONE]\n\n"


def attachments_view(read, images: int, audio: int) -> dict:
    return {"images": images, "audio": audio, "feature_slots": [m.slots for m in read.features],
            "ocr": read.ocr, "transcripts": read.transcripts, "notes": read.notes}  # fmt: skip


def serve(options: ServeOptions, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(options), host=host, port=port, log_level="info")
