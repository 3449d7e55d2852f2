"""Chat with the profile's language model; attached images and voice notes go through its adapters."""

from __future__ import annotations

import streamlit as st

from polyglm.pipelines.attachments import decode_uploads
from polyglm.pipelines.chat import stream_reply
from polyglm.platform.engine import GenerationOptions
from polyglm.platform.errors import PolyglmError
from polyglm.platform.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from polyglm.ui import PageSpec
from polyglm.ui.state import current_platform, show_error

HISTORY_KEY = "chat_history"
ATTACHABLE = sorted(ext.lstrip(".") for ext in {*IMAGE_EXTENSIONS, *AUDIO_EXTENSIONS})


def _options() -> GenerationOptions:
    with st.sidebar.expander("Generation"):
        max_new = st.slider("Max new tokens", 16, 1024, 256, step=16)
        temperature = st.slider("Temperature (0 = greedy)", 0.0, 1.5, 0.0, step=0.1)
    return GenerationOptions(max_new_tokens=max_new, temperature=temperature)


def render() -> None:
    st.title("Chat")
    options = _options()
    history: list[dict] = st.session_state.setdefault(HISTORY_KEY, [])
    if st.sidebar.button("Clear conversation", icon=":material/delete:"):
        history.clear()
    for message in history:
        with st.chat_message(message["role"]):
            st.markdown(message["content"])
    submitted = st.chat_input("Ask something; attach images or voice notes", accept_file="multiple",
                              file_type=ATTACHABLE)  # fmt: skip
    if not submitted or not submitted.text.strip():
        if submitted and submitted.files:
            st.warning("Write a question to go with the attachment.")
        return
    prompt, uploads = submitted.text, [(f.name, f.getvalue()) for f in submitted.files]
    history.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
        for name, _ in uploads:
            st.caption(f":material/attach_file: {name}")
    with st.chat_message("assistant"):
        try:
            with st.spinner("Loading the models…"):
                platform = current_platform()
                platform.lm  # noqa: B018 - first use loads it; show the spinner for that, not for replies
                images, audio = decode_uploads(uploads)
            # Attachments belong to this turn only: history keeps the text of every turn.
            answer = st.write_stream(stream_reply(platform, history, options, images, audio))
        except PolyglmError as exc:
            history.pop()
            show_error(exc)
            return
    history.append({"role": "assistant", "content": answer})


PAGE = PageSpec(title="Chat", icon=":material/chat:", url_path="chat", order=10, render=render)
