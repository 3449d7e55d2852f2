"""Pack planners on messages written the way people write them (beyond the packs' eval items, which
test_packs.py runs through every planner)."""

from __future__ import annotations

import json


def test_planners_read_ages_percentages_and_skipped_answers_as_people_write_them():
    """Beyond the eval items: a child's age in years is not an infant's in months, a percentage of a number
    and "is A equal to B?" are a problem and an answer, and a skipped quiz question keeps its place."""
    from polyglm.scenarios.packs.education.education_tools.planners import plan_answer_check, plan_grading
    from polyglm.scenarios.packs.medical.tools import screen_red_flags

    def age(message: str) -> int:
        return screen_red_flags(message, "zh")[0].arguments["age_years"]

    assert age("孩子 6 岁，吃了花生后嘴唇肿了，还喘不过气。") == 6
    assert age("孩子6个月，发烧39度") == age("月龄3，发烧38.5度") == age("宝宝 10 天，不吃奶，发烧") == 0

    def check(message: str) -> dict | None:
        planned = plan_answer_check(message, "en")
        return planned[0].arguments if planned else None

    assert check("Is 3/4 + 1/8 equal to 7/8?") == {"problem": "3/4 + 1/8", "answer": "7/8"}
    assert check("20% of 250 = 50?") == {"problem": "20% of 250", "answer": "50"}
    assert check("50% of the class passed, is that good?") is None
    [graded] = plan_grading("Mark quiz quadratic_equations-medium-4-1 for Ann: 1) x = 2 2) skipped 3) 跳过", "en")
    assert graded.arguments["answers"] == ["x = 2", "", ""]


def test_quiz_answers_are_read_however_the_student_lists_them():
    """Numbered or not, with 、，, or ; between them, after "answers:" or 答案是: one answer per question, in
    order. "5、跳过、7" is three answers, not an item numbered 5 (numbers must run 1, 2, 3 ...)."""
    from polyglm.scenarios.packs.education.education_tools.planners import plan_grading

    def graded(message: str) -> tuple[list[str], str]:
        [call] = plan_grading(message, "zh")
        return call.arguments["answers"], call.arguments["student"]

    quiz = "fractions-easy-3-42"
    for message in (
        f"测验 {quiz} 的答案：5、跳过、7",
        f"{quiz} 答案是 5，跳过，7",
        f"{quiz} 答案：1、5 2、跳过 3、7",
        f"quiz {quiz} answers: 1) 5 2) skipped 3) 7",
        f"quiz {quiz} my answers are 5; skipped; 7",
    ):
        assert graded(message)[0] == ["5", "", "7"], message
    assert graded(f"{quiz} answers: 5, 12, 7")[0] == ["5", "12", "7"]
    assert graded(f"{quiz}: 1.5, 2.5, 1,000")[0] == ["1.5", "2.5", "1,000"]  # decimals and thousands stay whole
    assert graded(f"{quiz} answers: 1. 3/4 2. 1/2")[0] == ["3/4", "1/2"]
    assert graded(f"Grade quiz {quiz} for me: 5 cm, 13 cm. I'm Raj.") == (["5 cm", "13 cm"], "Raj")


def test_social_sentiment_counts_labelled_posts_with_its_tools_and_labels_single_posts_itself():
    from polyglm.scenarios.packs.social_sentiment.tools import plan_hashtags, plan_post_statistics

    parsed = [{"id": "p1", "date": "2026-10-01", "text": "My daily swim, 按天打卡 #beach", "polarity": "positive"}]
    posts = f"```json\n{json.dumps(parsed, ensure_ascii=False)}\n```"  # its text says "daily": data, not the question

    def planned(message: str) -> list[tuple[str, dict]]:
        return [(p.name, p.arguments) for p in plan_post_statistics(message, "en") + plan_hashtags(message, "en")]

    assert planned(f"Summarise these posts:\n{posts}") == [("aggregate_sentiment", {"posts": parsed})]
    assert planned(f"每天的情感走势，按天看：\n{posts}") == [("sentiment_trend", {"posts": parsed, "by": "day"})]
    assert planned(f"Per topic, please:\n{posts}") == [("sentiment_trend", {"posts": parsed, "by": "hashtag"})]
    assert planned("Which hashtags does this post use: Loving the sun #summer #beach") == [
        ("extract_hashtags", {"text": "Loving the sun #summer #beach"})
    ]
    for single in (
        "Label this post: exam week again #finals",
        "What is a hashtag?",
        "Which hashtags are trending?",
        "这条帖子是什么情绪？#期末周#",
        "Summarise:\n```json\n[1, 2]\n```",
        "Summarise:\n```json\n[{broken\n```",
    ):
        assert planned(single) == [], single
