"""Streamlit pages (widgets only; they call pipelines). Each module defines PAGE; found by a sorted scan."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    title: str  # shown in the navigation
    icon: str  # a material icon name, e.g. ":material/chat:"
    url_path: str  # stable URL segment
    order: int  # position in the navigation
    render: Callable[[], None]  # draws the page


def discover_pages() -> list[PageSpec]:
    pages = []
    for name in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        module = importlib.import_module(f"{__name__}.{name}")
        if hasattr(module, "PAGE"):
            pages.append(module.PAGE)
    return sorted(pages, key=lambda p: p.order)
