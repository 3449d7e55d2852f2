"""What the chosen profile holds and what is loaded: names, sizes, device, load time, memory."""

from __future__ import annotations

import os

import streamlit as st

from polyglm.platform.config import PART_ROLES
from polyglm.platform.errors import PolyglmError
from polyglm.platform.inventory import profile_status
from polyglm.ui import PageSpec
from polyglm.ui.state import current_platform, current_profile, show_error


def _rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 1e6


def render() -> None:
    st.title("Models")
    status = profile_status(current_profile())
    st.subheader(f"Profile `{status.name}` — {status.title}")
    st.dataframe(
        [
            {
                "part": p.role,
                "kind": p.kind,
                "source": p.source,
                "present": p.present,
                "size (MB)": round(p.bytes / 1e6, 1),
                "licence": p.licence,
            }
            for p in status.parts
        ],
        hide_index=True,
    )
    for part in status.parts:
        if part.problem:
            st.warning(part.problem)
    st.subheader("Compute")
    st.caption(status.compute["hardware"])
    st.dataframe(
        [{"job": job, "dtype": d["dtype"], "why": d["reason"]} for job, d in status.compute["dtypes"].items()],
        hide_index=True,
    )
    platform = current_platform()
    if st.button("Load all parts", icon=":material/download:", disabled=not status.ready):
        progress = st.progress(0.0, text="loading…")
        roles = [r for r in PART_ROLES if r in platform.profile.parts]
        for done, role in enumerate(roles, start=1):
            try:
                platform.get(role)
            except (PolyglmError, OSError) as exc:
                show_error(exc)
                break
            progress.progress(done / len(roles), text=f"loaded {role}")
    st.subheader("Loaded")
    if not platform.stats:
        st.info("Nothing loaded yet: parts load on first use (send a chat message, or press Load all parts).")
    else:
        st.dataframe(
            [
                {
                    "part": s.role,
                    "model": os.path.basename(s.path),
                    "parameters (M)": round(s.parameters / 1e6, 2),
                    "device": s.device,
                    "dtype": s.dtype,
                    "load time (s)": round(s.seconds, 2),
                }
                for s in platform.stats.values()
            ],
            hide_index=True,
        )
    st.metric("Server process memory (RSS)", f"{_rss_mb():,.0f} MB")


PAGE = PageSpec(title="Models", icon=":material/memory:", url_path="models", order=90, render=render)
