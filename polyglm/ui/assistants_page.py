"""Assistants: the plain assistant or a scenario pack, in the pack's language, with images and voice notes.

The plain assistant streams its reply token by token (pipelines/chat.py). A scenario assistant
(pipelines/scenario_chat.py) retrieves, runs the pack's planners and tools, then answers; its citations and
tool calls go in expanders under the answer, and an escalation or a tool's disclaimer (the medical pack's
triage and drug checks) shows above them, never folded away. Attachments come from the chat box (files,
or a voice note recorded in it) and from the sidebar's recorder and camera; every path decodes them
through pipelines/attachments.py, so the size, format and content checks are the pipelines' own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import streamlit as st

from polyglm.pipelines.attachments import decode_uploads, evidence_blocks
from polyglm.pipelines.chat import prepare_turn, stream_prepared
from polyglm.pipelines.scenario_chat import ScenarioAssistant, scenario_assistant
from polyglm.platform.engine import GenerationOptions
from polyglm.platform.errors import InputError, PolyglmError
from polyglm.platform.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from polyglm.scenarios.loader import list_packs, load_pack
from polyglm.ui import PageSpec
from polyglm.ui.state import cached_platform, current_platform, current_profile, show_error, show_failure

PLAIN = "plain"  # the assistant choice that is no pack
ATTACHABLE = sorted(ext.lstrip(".") for ext in {*IMAGE_EXTENSIONS, *AUDIO_EXTENSIONS})
# Declared types a browser gives these files; "" and octet-stream (unknown to the browser) go on to
# media.py, which reads the content itself and names the file when it is not what its name says.
MEDIA_TYPES = ("image/", "audio/", "video/webm", "video/ogg", "application/ogg", "application/octet-stream")
ROUND_KEY = "assistant_attach_round"  # bumps after each turn so the recorder and camera start empty


@dataclass
class Turn:
    """One message as the page keeps it in st.session_state: what the pipelines get, and what is shown."""

    role: str  # user or assistant
    content: str  # the text the pipelines see as history
    files: list[str] = field(default_factory=list)  # user: attached file names
    citations: list[dict] = field(default_factory=list)  # assistant (pack): retrieved passages
    tool_calls: list[dict] = field(default_factory=list)  # assistant (pack): planner and model tool calls
    escalation: str | None = None  # assistant (pack): why the answer was escalated
    evidence: dict[str, str] = field(default_factory=dict)  # fenced OCR text / transcripts the model got
    notes: list[str] = field(default_factory=list)  # attachment paths asked for but not available

    def as_message(self) -> dict:
        return {"role": self.role, "content": self.content}


@st.cache_resource(show_spinner=False)
def cached_assistant(profile: str, pack: str, lang: str) -> ScenarioAssistant:
    # One per pack and language per server process: its retriever index is built once, then shared.
    return scenario_assistant(cached_platform(profile), pack, lang)


def _pack_title(name: str) -> str:
    if name == PLAIN:
        return "Plain assistant"
    pack = load_pack(name)
    return f"{pack.title.get('en') or next(iter(pack.title.values()))} ({name})"


def _choose() -> tuple[str, str]:
    """(assistant, language) from the sidebar; the language list is the pack's own."""
    assistant = st.sidebar.selectbox("Assistant", [PLAIN, *list_packs()], format_func=_pack_title, key="assistant")
    if assistant == PLAIN:
        return assistant, ""
    languages = list(load_pack(assistant).languages)
    names = {"zh": "中文 (zh)", "en": "English (en)"}
    lang = st.sidebar.radio("Language", languages, horizontal=True, key=f"assistant_lang_{assistant}",
                            format_func=lambda code: names.get(code, code))  # fmt: skip
    return assistant, lang


def _options() -> GenerationOptions:
    with st.sidebar.expander("Generation (plain assistant)"):
        max_new = st.slider("Max new tokens", 16, 1024, 256, step=16)
        temperature = st.slider("Temperature (0 = greedy)", 0.0, 1.5, 0.0, step=0.1)
    return GenerationOptions(max_new_tokens=max_new, temperature=temperature)


def _recorded() -> list:
    """The sidebar's voice note and photo (UploadedFile or None each), for the next message."""
    round_ = st.session_state.setdefault(ROUND_KEY, 0)
    with st.sidebar.expander("Record for the next message", icon=":material/mic:"):
        voice = st.audio_input("Voice note", key=f"voice_{round_}")
        photo = st.camera_input("Photo", key=f"photo_{round_}") if st.toggle("Camera", key="camera_on") else None
    return [voice, photo]


def media_uploads(files: list, verb: str = "attach") -> list[tuple[str, bytes]]:
    """(name, bytes) of uploaded files; one whose browser-declared type is no image or audio is refused by name
    (the Assistants and Sentiment pages both take media this way)."""
    for upload in files:
        declared = (upload.type or "").lower()
        if declared and not declared.startswith(MEDIA_TYPES):
            raise InputError(
                f"{upload.name}: the browser sent it as {declared}, not an image or a voice note; "
                f"{verb} one of {', '.join(ATTACHABLE)}"
            )
    return [(upload.name, upload.getvalue()) for upload in files]


def _uploads(submitted, recorded: list) -> list[tuple[str, bytes]]:
    """(name, bytes) of everything attached to this turn."""
    return media_uploads(
        [*submitted.files, *(f for f in [getattr(submitted, "audio", None), *recorded] if f is not None)]
    )


def _show_turn(turn: Turn) -> None:
    st.markdown(turn.content)
    for name in turn.files:
        st.caption(f":material/attach_file: {name}")
    _show_extras(turn)


def _show_extras(turn: Turn) -> None:
    if turn.escalation:
        st.warning(f"Escalated: {turn.escalation}", icon=":material/support_agent:")
    results = [call.get("result") or {} for call in turn.tool_calls]
    for disclaimer in dict.fromkeys(r["disclaimer"] for r in results if r.get("disclaimer")):  # once each, in order
        st.info(disclaimer, icon=":material/health_and_safety:")
    for note in turn.notes:
        st.caption(f":material/info: {note}")
    if turn.evidence:
        with st.expander("Read from the attachments", icon=":material/document_scanner:"):
            for block in turn.evidence.values():
                st.text(block)
    if turn.citations:
        with st.expander(f"Sources ({len(turn.citations)})", icon=":material/menu_book:"):
            for hit in turn.citations:
                st.markdown(f"**[{hit['citation']}]** {hit['title']} · score {hit['score']}")
                st.caption(hit["text"][:600])
    if turn.tool_calls:
        with st.expander(f"Tool calls ({len(turn.tool_calls)})", icon=":material/build:"):
            for call in turn.tool_calls:
                arguments = json.dumps(call["arguments"], ensure_ascii=False)
                st.markdown(f"`{call['name']}({arguments})` · {call.get('source', 'model')} · {call['seconds']:.2f} s")
                st.json(call["result"] if call["error"] is None else {"error": call["error"]}, expanded=False)


def _plain_turn(history: list[Turn], uploads, options: GenerationOptions) -> Turn:
    platform = current_platform()
    with st.spinner("Loading the models…"):
        platform.lm  # noqa: B018 - first use loads it; show the spinner for that, not for replies
        images, audio = decode_uploads(uploads)
        messages, read = prepare_turn(platform, [t.as_message() for t in history], images, audio)
    evidence = {k: v for k, v in evidence_blocks(read, "en").items() if v}
    answer = st.write_stream(stream_prepared(platform, messages, options))
    turn = Turn("assistant", answer or "", evidence=evidence, notes=list(read.notes))
    _show_extras(turn)
    return turn


def _pack_turn(history: list[Turn], uploads, pack: str, lang: str) -> Turn:
    with st.status("Retrieving, checking and answering…", expanded=False) as status:
        assistant = cached_assistant(current_profile(), pack, lang)
        images, audio = decode_uploads(uploads)
        message, earlier = history[-1].content, [t.as_message() for t in history[:-1]]
        reply = assistant.respond(message, earlier, images=images, audio=audio)
        status.update(label=f"{len(reply.citations)} sources, {len(reply.tool_calls)} tool calls", state="complete")
    steps = {step["step"]: step for step in reply.trace}
    escalation = None
    if reply.escalated:
        matched = steps.get("escalate", {}).get("matched")
        tools = [c["name"] for c in reply.tool_calls if (c.get("result") or {}).get("escalate") is True]
        escalation = f"the message matched {matched!r}" if matched else f"{', '.join(tools)} asked for a hand-off"
    evidence = {k: steps[k]["text"] for k in ("ocr", "transcribe") if k in steps}
    notes = [step["text"] for step in reply.trace if step["step"] == "note"]
    turn = Turn("assistant", reply.answer, citations=reply.citations, tool_calls=reply.tool_calls,
                escalation=escalation, evidence=evidence, notes=notes)  # fmt: skip
    st.markdown(turn.content)
    _show_extras(turn)
    return turn


def render() -> None:
    st.title("Assistants")
    assistant, lang = _choose()
    options = _options() if assistant == PLAIN else GenerationOptions()
    recorded = _recorded()
    if assistant == PLAIN:
        st.caption("The profile's language model; attached images and voice notes go through its adapters, OCR and "
                   "speech recognition.")  # fmt: skip
    else:
        pack = load_pack(assistant)
        st.caption(f"{pack.title.get(lang, assistant)} · retrieval from the pack's knowledge base, its tools "
                   f"({', '.join(pack.tools) or 'none'}) and its safety rules · replies in {lang}")  # fmt: skip
    history: list[Turn] = st.session_state.setdefault(f"assistant_history_{assistant}_{lang}", [])
    if st.sidebar.button("Clear conversation", icon=":material/delete:"):
        history.clear()
    for turn in history:
        with st.chat_message(turn.role):
            _show_turn(turn)
    submitted = st.chat_input("Ask something; attach images or voice notes", accept_file="multiple",
                              file_type=ATTACHABLE, accept_audio=True)  # fmt: skip
    if submitted is None:
        return
    text = submitted.text.strip()
    try:
        uploads = _uploads(submitted, recorded)
    except InputError as exc:
        show_error(exc)
        return
    if not text and not (uploads and assistant != PLAIN):
        st.warning("The message is empty: write some text"
                   + (" to go with the attachment." if uploads else ".") , icon=":material/edit:")  # fmt: skip
        return
    user = Turn("user", text, files=[name for name, _ in uploads])
    history.append(user)
    with st.chat_message("user"):
        _show_turn(user)
    with st.chat_message("assistant"):
        try:
            if assistant == PLAIN:
                reply = _plain_turn(history, uploads, options)
            else:
                reply = _pack_turn(history, uploads, assistant, lang)
        except PolyglmError as exc:
            history.pop()
            show_error(exc)
            return
        except Exception as exc:  # shown with its traceback; the session and the server go on
            history.pop()
            show_failure(exc)
            return
    if not user.content:  # a voice note or photo alone: later turns see what it said
        user.content = "\n\n".join(reply.evidence.values()) or f"({', '.join(user.files)})"
    history.append(reply)
    if any(recorded):  # used: redraw with an empty recorder and camera, so nothing looks attached still
        st.session_state[ROUND_KEY] += 1
        st.rerun()


PAGE = PageSpec(title="Assistants", icon=":material/forum:", url_path="assistants", order=10, render=render)
