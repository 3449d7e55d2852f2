"""Tools of the education pack: a sympy answer checker, a quiz generator and a quiz grader, plus planners.

This is the file the loader imports; the code lives in the package `education_tools/` beside it, one job a
module (see its `__init__.py`). Quizzes are rebuilt deterministically from their id
(topic-difficulty-count-seed); quizzes and grades are stored in SQLite under `state_dir("education")`.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def _import_package(folder: Path) -> types.ModuleType:
    """Import `folder` (a package beside this file) afresh, as `<this module>.<folder name>`.

    The loader runs this file by path as a top-level module with no parent package, so a relative
    `from .education_tools import ...` has nothing to resolve against. Importing the folder as a package
    by path lets its modules import each other relatively; naming it under this module keeps packs (and
    copies of one pack) apart, and dropping the previous load's modules first means a re-import of this
    file never runs stale code.
    """
    name = f"{__name__}.{folder.name}"
    for stale in [key for key in sys.modules if key == name or key.startswith(f"{name}.")]:
        del sys.modules[stale]
    locations = [str(folder)]
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=locations)
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package  # the package's relative imports look it up here
    spec.loader.exec_module(package)
    return package


_code = _import_package(Path(__file__).parent / "education_tools")

check_answer, generate_quiz, grade_quiz = _code.check_answer, _code.generate_quiz, _code.grade_quiz
plan_answer_check, plan_quiz, plan_grading = _code.plan_answer_check, _code.plan_quiz, _code.plan_grading
