"""Training checkpoints are read with `torch.load(weights_only=True)` only.

A full unpickle runs whatever code a planted, copied or downloaded checkpoint carries; weights-only
loading accepts tensors, numbers, strings and containers, which is all a polyglm checkpoint holds.
"""

from __future__ import annotations

import re
from pathlib import Path

from polyglm.platform.errors import InputError

_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's dict, read weights-only on the CPU; InputError naming the file and the fix otherwise."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated zip or a pickle with objects: the fix is the same
        raise InputError(
            f"checkpoint {path} cannot be read safely ({_reason(exc)}): it is damaged or holds more than weights, "
            f"which polyglm does not unpickle; delete it to train from the start"
        ) from None
    if not isinstance(checkpoint, dict):
        raise InputError(f"{path} is not a polyglm training checkpoint; delete it to train from the start")
    return checkpoint


def _reason(exc: Exception) -> str:
    """torch's reason in one plain line: its weights-only message spans lines and carries terminal colours."""
    found = _UNSUPPORTED_GLOBAL.search(str(exc))
    if found:
        return f"it references the Python object {found.group(1)}"
    plain = " ".join(_TERMINAL_COLOURS.sub("", str(exc)).split())
    return f"{type(exc).__name__}: {plain[:160]}"
