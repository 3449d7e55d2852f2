"""polyglm's Streamlit front end: `polyglm app` or `make run` starts it. Pages come from polyglm/ui/."""

from __future__ import annotations

import argparse
import sys

import streamlit as st

from polyglm.platform.config import DEFAULT_PROFILE
from polyglm.ui import discover_pages
from polyglm.ui.state import profile_picker


def _default_profile() -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--profile", default=DEFAULT_PROFILE)
    return parser.parse_known_args(sys.argv[1:])[0].profile


def main() -> None:
    st.set_page_config(page_title="polyglm", page_icon=":material/hub:", layout="wide")
    profile_picker(_default_profile())
    pages = [st.Page(p.render, title=p.title, icon=p.icon, url_path=p.url_path) for p in discover_pages()]
    st.navigation(pages).run()


main()
