"""Shared UI state: the app's switches, the chosen profile and its Platform (cached across reruns and sessions)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import streamlit as st

from polyglm.platform.config import DEFAULT_PROFILE, available_profiles
from polyglm.platform.loader import Platform, load_platform

PROFILE_KEY = "polyglm_profile"


@dataclass(frozen=True)
class AppSettings:
    """What `polyglm app` passes to the script after `--`; fixed for the server process, never per user."""

    profile: str = DEFAULT_PROFILE  # the profile a new browser session starts on
    training: bool = True  # training controls on the Models page (`--no-training` hides them)
    load_all: bool = True  # the Models page's "Load all parts" button (`--no-load-all` hides it)
    batch: bool = True  # the Batch evaluation page's runs (`--no-batch` switches them off)


def app_settings(argv: list[str] | None = None) -> AppSettings:
    """The switches in the script's arguments (sys.argv after `streamlit run app.py --`); others are ignored."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--profile", default=DEFAULT_PROFILE)
    parser.add_argument("--no-training", dest="training", action="store_false")
    parser.add_argument("--no-load-all", dest="load_all", action="store_false")
    parser.add_argument("--no-batch", dest="batch", action="store_false")
    args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)[0]
    return AppSettings(profile=args.profile, training=args.training, load_all=args.load_all, batch=args.batch)


@st.cache_resource(show_spinner=False)
def cached_platform(profile: str) -> Platform:
    # One Platform per profile per server process; its parts load lazily on first use.
    return load_platform(profile)


def current_profile() -> str:
    return st.session_state.get(PROFILE_KEY, DEFAULT_PROFILE)


def profile_picker(default: str) -> str:
    profiles = available_profiles()
    st.session_state.setdefault(PROFILE_KEY, default if default in profiles else DEFAULT_PROFILE)
    return st.sidebar.selectbox("Model profile", profiles, key=PROFILE_KEY)


def current_platform() -> Platform:
    return cached_platform(current_profile())


def show_error(exc: Exception) -> None:
    st.error(str(exc), icon=":material/error:")


def show_failure(exc: Exception) -> None:
    """An unexpected error: its type and message, the traceback in an expander; the app stays up."""
    st.error(f"Internal error ({type(exc).__name__}): {exc}. The app is still running: try again or report it.",
             icon=":material/bug_report:")  # fmt: skip
    with st.expander("Traceback"):
        st.exception(exc)
