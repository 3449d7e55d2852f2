"""The assistant fine-tune's data: no eval item leaks in, the forgetting guard's set stays unseen."""

import json
import re

import pytest

from polyglm.pipelines.finetune import GENERAL_QA
from polyglm.pipelines.lm_sft import SftOptions, _zh_number, build_corpus, general_conversations_sft, length_batches
from polyglm.scenarios.loader import list_packs, load_pack


def _norm(text: str) -> str:
    return re.sub(r"\W+", "", text.lower())


def _grams(text: str, n: int = 4) -> set[str]:
    text = _norm(text)
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


@pytest.fixture(scope="module")
def every_user_turn() -> list[str]:
    corpus = build_corpus(SftOptions(stride=1, sentiment_stride=1, held_out_per_pack=0), obs_role="user")
    return [m["content"] for conversation in corpus.train for m in conversation if m["role"] == "user"]


def _eval_questions() -> list[tuple[str, str]]:
    found = []
    for name in list_packs():
        path = load_pack(name).root / "data" / "eval.jsonl"
        if path.is_file():
            found += [(name, json.loads(line)["input"]) for line in path.read_text().splitlines() if line.strip()]
    return found


def test_no_eval_question_or_near_copy_is_trained_on(every_user_turn):
    questions = _eval_questions()
    assert len(questions) > 200
    turns = [(_norm(t), _grams(t)) for t in every_user_turn]
    leaks = []
    for pack, question in questions:
        q, grams = _norm(question), _grams(question)
        for text, turn_grams in turns:
            overlap = len(grams & turn_grams) / max(1, len(grams | turn_grams))
            if q in text or overlap >= 0.8:
                leaks.append((pack, question))
                break
    assert not leaks, f"{len(leaks)} eval questions are in the fine-tune data, e.g. {leaks[:3]}"


def test_the_forgetting_guard_questions_are_never_trained_on(every_user_turn):
    guard = {_norm(question) for _, question, _ in GENERAL_QA}
    assert not guard & {_norm(t) for t in every_user_turn}


def test_general_set_is_bilingual_and_correct():
    items = general_conversations_sft()
    langs = {lang for lang, _ in items}
    assert langs == {"zh", "en"}
    for _, (question, answer) in items:
        match = re.fullmatch(r"What is (\d+) plus (\d+)\?", question["content"])
        if match:
            assert answer["content"] == f"{match[1]} plus {match[2]} is {int(match[1]) + int(match[2])}."


def test_chinese_numerals():
    assert [_zh_number(n) for n in (3, 10, 14, 20, 47)] == ["三", "十", "十四", "二十", "四十七"]


def test_length_batches_hold_every_row_once_per_epoch_with_similar_lengths():
    lengths = [(i * 37) % 1000 for i in range(103)]
    batches = length_batches(lengths, 4, seed=0, epochs=2)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == sorted(list(range(103)) * 2)
    spread = max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread < 500  # random batches of this data spread ~900


def test_a_profile_whose_lm_has_the_delta_merged_is_refused_before_loading_it(isolated_cache):
    from polyglm.pipelines.finetune import FinetuneError
    from polyglm.pipelines.lm_sft import train_lm_delta

    with pytest.raises(FinetuneError, match=r"merged already.*--profile gemma-base"):
        train_lm_delta(SftOptions(profile="offline"))
