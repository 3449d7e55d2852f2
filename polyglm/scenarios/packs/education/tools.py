"""Tools of the education pack: a sympy answer checker, a quiz generator and a quiz grader, plus planners.

This is the file the loader imports; the code lives in the package `education_tools/` beside it, one job a
module (see its `__init__.py`). Quizzes are rebuilt deterministically from their id
(topic-difficulty-count-seed); quizzes and grades are stored in SQLite under `state_dir("education")`.
"""

from __future__ import annotations

from .education_tools import check_answer, generate_quiz, grade_quiz, plan_answer_check, plan_grading, plan_quiz

__all__ = ["check_answer", "generate_quiz", "grade_quiz", "plan_answer_check", "plan_grading", "plan_quiz"]
