"""Plain chat with the profile's language model; replies stream token by token."""

from __future__ import annotations

import streamlit as st

from polyglm.pipelines.chat import stream_reply
from polyglm.platform.engine import GenerationOptions
from polyglm.platform.errors import PolyglmError
from polyglm.ui import PageSpec
from polyglm.ui.state import current_platform, show_error

HISTORY_KEY = "chat_history"


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
    prompt = st.chat_input("Ask something")
    if not prompt:
        return
    history.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
    with st.chat_message("assistant"):
        try:
            with st.spinner("Loading the language model…"):
                platform = current_platform()
                platform.lm  # noqa: B018 - first use loads it; show the spinner for that, not for replies
            answer = st.write_stream(stream_reply(platform, history, options))
        except PolyglmError as exc:
            history.pop()
            show_error(exc)
            return
    history.append({"role": "assistant", "content": answer})


PAGE = PageSpec(title="Chat", icon=":material/chat:", url_path="chat", order=10, render=render)
