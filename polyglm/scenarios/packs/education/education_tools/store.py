"""The SQLite store of quizzes and results, under `state_dir("education")`, with parameterised SQL only."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from polyglm.scenarios.tooling import state_dir

PACK = "education"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS quizzes (quiz_id TEXT PRIMARY KEY, topic TEXT NOT NULL,"
    " difficulty TEXT NOT NULL, count INTEGER NOT NULL, seed INTEGER NOT NULL, questions TEXT NOT NULL,"
    " created_at TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, quiz_id TEXT NOT NULL,"
    " student TEXT NOT NULL, score INTEGER NOT NULL, total INTEGER NOT NULL, answers TEXT NOT NULL,"
    " graded_at TEXT NOT NULL);"
)


def _connect() -> sqlite3.Connection:
    folder = Path(state_dir(PACK))
    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(folder / "education.sqlite3", timeout=5)
    conn.executescript(_SCHEMA)
    return conn


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write(sql: str, row: tuple) -> None:
    """Run one INSERT in its own transaction (`with conn` commits) and close the connection."""
    conn = _connect()
    with conn:
        conn.execute(sql, row)
    conn.close()


def save_quiz(quiz_id: str, topic: str, difficulty: str, count: int, seed: int, questions: list[dict]) -> None:
    """Store a generated quiz; the same id again replaces it (the same id always holds the same questions)."""
    questions_json = json.dumps(questions, ensure_ascii=False)
    _write(
        "INSERT OR REPLACE INTO quizzes VALUES (?, ?, ?, ?, ?, ?, ?)",
        (quiz_id, topic, difficulty, count, seed, questions_json, _now()),
    )


def stored_questions(quiz_id: str) -> list[dict] | None:
    """The questions stored under `quiz_id`, or None when that quiz was never generated here."""
    conn = _connect()
    with conn:
        row = conn.execute("SELECT questions FROM quizzes WHERE quiz_id = ?", (quiz_id,)).fetchone()
    conn.close()
    return json.loads(row[0]) if row else None


def save_result(quiz_id: str, student: str, score: int, total: int, answers: list[str]) -> None:
    """Record one graded attempt (every attempt is kept, so a student's progress can be followed)."""
    _write(
        "INSERT INTO results (quiz_id, student, score, total, answers, graded_at) VALUES (?, ?, ?, ?, ?, ?)",
        (quiz_id, student, score, total, json.dumps(answers, ensure_ascii=False), _now()),
    )
