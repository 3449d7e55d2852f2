"""Shared UI state: the chosen profile and its Platform, cached across reruns and sessions."""

from __future__ import annotations

import streamlit as st

from polyglm.platform.config import DEFAULT_PROFILE, available_profiles
from polyglm.platform.loader import Platform, load_platform

PROFILE_KEY = "polyglm_profile"


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
