"""Helpers for scenario tests: write small throw-away packs and keep tool state out of the real cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from polyglm.scenarios.loader import deep_merge

TOOLS_PY = '''
from typing import Literal

from polyglm.scenarios.tooling import tool


@tool
def echo(text: str, times: int = 1) -> dict:
    """Repeat a text.

    Args:
        text: What to repeat.
        times: How many times.
    """
    if times < 1:
        raise ValueError("times must be at least 1")
    return {"text": text * times}


@tool(timeout_s=1.0)
def grade(level: Literal["easy", "hard"]) -> dict:
    """Grade something.

    Args:
        level: How hard it was.
    """
    return {"level": level}
'''

DOCS = {
    "returns-en": (
        "Returns policy",
        "en",
        "You can return items within 7 days of delivery.\n\nReturn shipping costs 10 yuan.",
    ),
    "returns-zh": ("退货政策", "zh", "签收后 7 天内可以无理由退货。\n\n退货运费 10 元。"),
    "shipping-en": ("Shipping", "en", "Standard delivery takes 2-4 working days. Express is next day."),
    "shipping-zh": ("配送说明", "zh", "标准配送 2-4 个工作日送达，顺丰次日达。"),
}


def manifest(name: str) -> dict:
    return {
        "name": name,
        "version": 1,
        "title": {"zh": "演示", "en": "Demo"},
        "languages": ["zh", "en"],
        "system_prompt": {
            "zh": "你是演示助手。今天是 {today}。\n工具：\n{tools}",
            "en": "You are a demo helper. Today is {today}.\nTools:\n{tools}",
        },
        "few_shot": {"en": [{"user": "Hi", "assistant": "Hello!"}]},
        "knowledge_base": {"folder": "kb", "chunk_chars": 200, "chunk_overlap": 20, "top_k": 2, "bm25_weight": 0.5},
        "tools": ["echo", "grade"],
        "finetune_data": "data/train.jsonl",
        "eval_set": "data/eval.jsonl",
        "safety": {
            "rules": {"zh": ["保持礼貌。"], "en": ["Be polite."]},
            "refuse_topics": ["politics"],
            "escalation": {"zh": "我帮您转人工。", "en": "I'll hand you over."},
        },
        "generation": {"max_new_tokens": 64, "temperature": 0.2},
    }


def write_doc(kb: Path, doc_id: str, title: str, lang: str, body: str) -> Path:
    path = kb / f"{doc_id}.md"
    front = yaml.safe_dump({"id": doc_id, "title": title, "lang": lang}, allow_unicode=True)
    path.write_text(f"---\n{front}---\n{body}\n", encoding="utf-8")
    return path


def write_pack(
    packs_dir: Path,
    name: str = "demo",
    overrides: dict | None = None,
    drop: tuple[str, ...] = (),
    tools_py: str | None = TOOLS_PY,
    docs: dict | None = None,
    manifest_text: str | None = None,
) -> Path:
    """A valid small pack in `packs_dir/name`, changed by `overrides` (deep-merged) and `drop` (keys removed)."""
    root = packs_dir / name
    (root / "kb").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    data = deep_merge(manifest(name), overrides or {})
    for key in drop:
        data.pop(key, None)
    text = manifest_text if manifest_text is not None else yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    (root / "scenario.yaml").write_text(text, encoding="utf-8")
    if tools_py is not None:
        (root / "tools.py").write_text(tools_py, encoding="utf-8")
    for doc_id, (title, lang, body) in (DOCS if docs is None else docs).items():
        write_doc(root / "kb", doc_id, title, lang, body)
    line = {
        "id": "t1",
        "lang": "en",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    }
    (root / "data" / "train.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    evals = [
        {"id": "e1", "lang": "en", "input": "How long is delivery?", "relevant_docs": ["shipping-en"]},
        {"id": "e2", "lang": "zh", "input": "退货运费多少？", "relevant_docs": ["returns-zh"]},
    ]
    (root / "data" / "eval.jsonl").write_text(
        "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in evals), encoding="utf-8"
    )
    return root


@pytest.fixture
def packs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "packs"
    folder.mkdir()
    return folder
