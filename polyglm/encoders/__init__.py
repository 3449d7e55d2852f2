"""Encoder registry: one file per encoder family, each registering itself under a profile `kind`.

Modules in this package are discovered by a sorted scan, so adding an encoder touches one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import cache
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(kind: str) -> Callable[[type], type]:
    """Class decorator: `kind` is the value of `kind:` in a profile part."""

    def decorate(cls: type) -> type:
        if kind in _REGISTRY:
            raise ValueError(f"encoder kind {kind!r} registered twice ({_REGISTRY[kind]} and {cls})")
        _REGISTRY[kind] = cls
        return cls

    return decorate


@cache
def _discover() -> None:
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{module}")


def encoder_kinds() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def encoder_class(kind: str) -> Any:
    _discover()
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown encoder kind {kind!r}; registered: {', '.join(sorted(_REGISTRY))}") from None
