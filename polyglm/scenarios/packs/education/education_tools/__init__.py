"""The education pack's code, one job a module (tools.py, the file the loader imports, re-exports it):

- checker: the sympy answer checker (`check_answer`)
- questions: the quiz questions of every topic, one template-driven family
- quizzes: the quiz tools (`generate_quiz`, `grade_quiz`)
- store: the SQLite store of quizzes and results
- planners: the rule-run planners (`plan_answer_check`, `plan_quiz`, `plan_grading`)
"""

from .checker import check_answer
from .planners import plan_answer_check, plan_grading, plan_quiz
from .quizzes import generate_quiz, grade_quiz

__all__ = ["check_answer", "generate_quiz", "grade_quiz", "plan_answer_check", "plan_grading", "plan_quiz"]
