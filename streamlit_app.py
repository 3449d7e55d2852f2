"""polyglm's Streamlit front end: `polyglm app` or `make run` starts it. Pages come from polyglm/ui/."""

from __future__ import annotations

import streamlit as st

from polyglm.ui import discover_pages
from polyglm.ui.state import app_settings, profile_picker


def main() -> None:
    st.set_page_config(page_title="polyglm", page_icon=":material/hub:", layout="wide")
    profile_picker(app_settings().profile)
    pages = [st.Page(p.render, title=p.title, icon=p.icon, url_path=p.url_path) for p in discover_pages()]
    st.navigation(pages).run()


main()
