"""Paths named inside a file (a pack's YAML, an eval item) must stay inside the folder that holds them.

One rule for every such path, so a pack or data set copied from someone else cannot make polyglm read
(or train on, or show) files elsewhere on the machine: `..` segments, absolute paths and symlinks are
resolved first, and what lands outside the folder is refused.
"""

from __future__ import annotations

from pathlib import Path


def resolve_inside(root: Path, relative: str | Path) -> Path | None:
    """`relative` joined to `root`, fully resolved; None when it lands outside `root`.

    An absolute `relative` replaces `root` in the join (pathlib's rule), so it is accepted only when it
    names a place under `root`. Resolving follows symlinks: a link inside `root` that points out is out.
    """
    base = root.resolve()
    path = (base / relative).resolve()
    return path if path.is_relative_to(base) else None
