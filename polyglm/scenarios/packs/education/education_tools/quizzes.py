"""The quiz tools: `generate_quiz` builds a quiz from its id, `grade_quiz` marks a student's answers to it.

A quiz id is topic-difficulty-count-seed, and the questions are rebuilt deterministically from it, so a
quiz can be graded even where it was never stored (another machine, a cleared cache).
"""

from __future__ import annotations

import random
import re
import unicodedata
from typing import Literal

from polyglm.scenarios.tooling import tool

from . import store
from .questions import TOPICS, Question, canonical_topic, question

QUIZ_ID = re.compile(r"^([a-z_]{3,30})-(easy|medium|hard)-(\d{1,2})-(\d{1,9})$")
STUDENT = re.compile(r"^[^\W_][\w .'\-]{0,39}$")


def build_quiz(topic: str, difficulty: str, count: int, seed: int) -> list[Question]:
    """`count` different questions of `topic`, the same for the same arguments on every machine."""
    rng = random.Random(f"{topic}|{difficulty}|{seed}")
    questions: list[Question] = []
    seen: set[str] = set()
    for _ in range(count * 20):  # retry duplicates; templates have far more than 20 variants
        q = question(TOPICS[topic], rng, difficulty)
        if q["en"] not in seen:
            seen.add(q["en"])
            questions.append(q)
        if len(questions) == count:
            break
    return questions


@tool(timeout_s=3.0)
def generate_quiz(topic: str, difficulty: Literal["easy", "medium", "hard"], count: int, seed: int) -> dict:
    """Build a short quiz (questions in Chinese and English, with answers for the tutor) and store it.

    Args:
        topic: One of linear_equations, quadratic_equations, fractions_percentages, ratios, pythagoras,
            area_volume, probability, speed, density, pressure, ohms_law, work_energy_power, newtons_laws
            (Chinese names such as 一元二次方程 or 欧姆定律 also work).
        difficulty: easy, medium or hard.
        count: Number of questions, 1 to 20.
        seed: Any whole number 0..999999999; the same seed gives the same quiz.
    """
    key = canonical_topic(topic)
    if difficulty not in ("easy", "medium", "hard"):
        raise ValueError(f"difficulty must be easy, medium or hard, got {difficulty!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 20:
        raise ValueError(f"count must be a whole number from 1 to 20, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 999_999_999:
        raise ValueError(f"seed must be a whole number from 0 to 999999999, got {seed!r}")
    questions = build_quiz(key, difficulty, count, seed)
    quiz_id = f"{key}-{difficulty}-{count}-{seed}"
    store.save_quiz(quiz_id, key, difficulty, count, seed, questions)
    return {
        "quiz_id": quiz_id,
        "topic": key,
        "difficulty": difficulty,
        "questions": [{"n": i + 1, "en": q["en"], "zh": q["zh"]} for i, q in enumerate(questions)],
        "answers_for_tutor": [{"n": i + 1, "answer": q["answer"]} for i, q in enumerate(questions)],
        "note": "Show the questions only; keep the answers until the student has replied, then call grade_quiz.",
    }


def _numbers(text: str) -> list[float]:
    """Pull the numbers out of an answer such as "x = -3 or x=2", "3/4", "25 %", "x₁=2, x₂=3" or "4 m/s^2"."""
    text = unicodedata.normalize("NFKC", text.replace("²", "").replace("³", ""))
    text = re.sub(r"\^\s*\d", "", text)
    text = re.sub(r"[A-Za-z]\w*\s*=", " ", text)
    text = text.replace("−", "-").replace("±", "+-")
    values: list[float] = []
    for sign, num, den in re.findall(r"(\+-|-)?\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?", text):
        value = float(num) / float(den) if den and float(den) else float(num)
        values += [value, -value] if sign == "+-" else [-value if sign == "-" else value]
    return values


def _matches(given: str, question: Question) -> bool:
    got, want = sorted(_numbers(given)), sorted(question["values"])
    return len(got) == len(want) and all(
        abs(g - w) <= question["tol"] * max(1.0, abs(w)) for g, w in zip(got, want, strict=True)
    )


def _load_quiz(quiz_id: str) -> list[Question]:
    if not isinstance(quiz_id, str):
        raise ValueError("quiz_id must be text such as 'pythagoras-easy-5-42'")
    match = QUIZ_ID.match(quiz_id)
    if not match:
        raise ValueError(
            f"malformed quiz_id {quiz_id[:60]!r}: expected topic-difficulty-count-seed, "
            "e.g. 'pythagoras-easy-5-42', as returned by generate_quiz"
        )
    topic, difficulty, count, seed = match.group(1), match.group(2), int(match.group(3)), int(match.group(4))
    if topic not in TOPICS or not 1 <= count <= 20:
        raise ValueError(f"unknown quiz {quiz_id!r}: no such topic or count out of range 1..20")
    stored = store.stored_questions(quiz_id)
    return stored if stored is not None else build_quiz(topic, difficulty, count, seed)


@tool(timeout_s=3.0)
def grade_quiz(quiz_id: str, answers: list[str], student: str) -> dict:
    """Mark a student's answers to a quiz made by generate_quiz and save the score.

    Args:
        quiz_id: The id returned by generate_quiz, e.g. "pythagoras-easy-5-42".
        answers: One answer per question in order, e.g. ["x = 4", "13 cm", ""]; use "" for a skipped question.
        student: The student's name or nickname (1-40 letters, digits, spaces, . ' -).
    """
    questions = _load_quiz(quiz_id)
    if not isinstance(student, str) or not STUDENT.match(student.strip()):
        raise ValueError("student must be 1-40 characters: letters, digits, spaces, . ' - (no symbols or SQL)")
    if not isinstance(answers, list) or not all(isinstance(a, str) and len(a) <= 100 for a in answers):
        raise ValueError("answers must be a list of strings of at most 100 characters each")
    if len(answers) != len(questions):
        raise ValueError(
            f"quiz {quiz_id} has {len(questions)} questions but {len(answers)} answers were given; "
            "use '' for a skipped question"
        )
    results = [
        {"n": i + 1, "given": a, "expected": q["answer"], "correct": bool(a.strip()) and _matches(a, q)}
        for i, (a, q) in enumerate(zip(answers, questions, strict=True))
    ]
    score = sum(r["correct"] for r in results)
    store.save_result(quiz_id, student.strip(), score, len(questions), answers)
    return {
        "quiz_id": quiz_id,
        "student": student.strip(),
        "score": score,
        "total": len(questions),
        "percent": round(100 * score / len(questions)),
        "results": results,
        "saved": True,
    }
