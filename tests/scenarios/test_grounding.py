"""Grounding: specifics an answer states must appear in what the assistant was shown, or it quotes instead."""

import pytest

from polyglm.pipelines.chat import language_of
from polyglm.pipelines.scenario_chat import ScenarioAssistant
from polyglm.scenarios.grounding import (
    UNGROUNDED_SHARE,
    best_sentences,
    chinese_number,
    claims,
    contradicted_verdicts,
    fallback_answer,
    mend_citations,
    pack_terms,
    passage_sentences,
    restates,
    support_share,
    unsupported,
    with_evidence,
)
from polyglm.scenarios.loader import load_pack

SHOWN = (
    "Today is 2026-11-30. Warranty: electronics have a 1-year warranty. Card refunds take 3-7 working days. "
    "We ship from Hangzhou."
)


@pytest.mark.parametrize(
    ("answer", "missing"),
    [
        ("Electronics come with a 1-year warranty.", []),
        ("Electronics come with an 8-week warranty.", ["8 week"]),  # the invented duration of the issue report
        ("Card refunds take 3 to 7 working days.", []),
        ("Card refunds take 2 weeks.", ["2 week"]),
        ("Card refunds take 3-7 working hours.", ["3 hour", "7 hour"]),  # the numbers are shown, the unit is not
        ("We ship from Guangzhou.", ["guangzhou"]),
        ("We ship from Hangzhou.", []),
        ("1. Check the order page\n2. Wait for the refund", []),  # list markers are not claims
        ("退款需要三到七个工作日。", []),  # Chinese numerals are numbers
        ("退款需要两周。", ["2 week"]),
        ("We answer within 30 days.", ["30 day"]),  # today's date in the prompt is not "30 days"
        ("Ｒefunds take ３–７ working days", []),  # full-width forms
        ("Pay at https://www.pandavill.com/pay?step=2 today", ["pandavill.com"]),  # an invented link, not "2"
        ("Mail help@hangzhou-shop.example", ["hangzhou-shop.example"]),
    ],
)
def test_unsupported_specifics_are_found(answer, missing):
    assert [c.text for c in unsupported(answer, [SHOWN])] == missing


def test_the_question_and_pack_terms_count():
    medical = pack_terms(load_pack("medical").root)
    assert "ibuprofen" in medical and "布洛芬" in medical
    assert [c.text for c in unsupported("Take ibuprofen.", ["Paracetamol helps."], medical)] == ["ibuprofen"]
    assert unsupported("Take ibuprofen.", ["Paracetamol helps.", "Can I take ibuprofen?"], medical) == []
    assert [c.kind for c in claims("服用布洛芬 400 毫克", medical)] == ["number", "term"]


def test_small_chinese_numerals():
    assert [chinese_number(t) for t in ("七", "十二", "三十", "一百零五", "两", "天")] == [7, 12, 30, 105, 2, None]


def test_the_fallback_quotes_the_closest_sentence_with_its_citation():
    passages = [("Cash refunds are instant. Card refunds take 3-7 working days.", "refunds-en#1"),
                ("We ship from Hangzhou.", "shipping-en#0")]  # fmt: skip
    answer = fallback_answer("How long does a card refund take?", passages, "en")
    assert "\u201cCard refunds take 3-7 working days.\u201d [refunds-en#1]" in answer
    assert "Hangzhou" not in answer  # shares no word with the question
    assert "资料原文" in fallback_answer("银行卡退款要多久？", [("银行卡退款需要3-7个工作日。", "r-zh#0")], "zh")
    assert "won't guess" in fallback_answer("What?", [], "en")


def test_headings_say_what_the_sentence_under_them_answers():
    passage = ("## Who pays return shipping\nFor a change-of-mind return the pickup is a flat fee of 10 yuan.\n"
               "## Refund times\nCard refunds take 3-7 working days. Returns are checked first.")  # fmt: skip
    [(sentence, citation)] = best_sentences("Who pays for return shipping?", [(passage, "returns-en#0")], k=1)
    assert sentence.startswith("For a change-of-mind return") and citation == "returns-en#0"
    chinese = "## 退货运费\n无理由退货上门取件统一收 10 元。\n## 退款时间\n银行卡退款 3-7 个工作日到账。"
    assert best_sentences("退货运费谁出？", [(chinese, "r-zh#0")], k=1)[0][0] == "无理由退货上门取件统一收 10 元。"


def test_evidence_follows_an_answer_that_leaves_out_the_specific_asked_for():
    passages = [("## Returns\nMost items can be returned within 7 days of delivery. Items must be unused, with tags. "
                 "Card refunds arrive within a week.", "returns-en#0")]  # fmt: skip
    question = "How many days do I have to send a sweater back?"
    vague = "Unused items with their tags can be sent back."
    given = with_evidence(vague, question, passages, "en")
    assert given.startswith(vague) and "\u201cMost items can be returned within 7 days of delivery.\u201d" in given
    assert "with tags" not in given[len(vague) :]  # restated by the answer: not quoted again
    stated = "You have 7 days from delivery; the item must be unused, with tags."
    assert with_evidence(stated, question, passages, "en") == stated  # it says all that was asked and found
    assert restates("Refunds take 3-7 working days.", "Refunds to cards take 3-7 working days.")
    assert not restates("Refunds take 3 working days.", "Refunds to cards take 3-7 working days.")
    shipped = {"order_id": "A10024", "status": "shipped"}
    told = with_evidence("It is on its way.", "Where is order A10024?", [], "en", [("order_lookup", shipped)])
    assert told == "It is on its way. The order_lookup tool returned: order_id: A10024; status: shipped."
    said = "Order A10024 has shipped."  # every value the tool returned: nothing to add
    assert with_evidence(said, "Where is order A10024?", [], "en", [("order_lookup", shipped)]) == said


def test_sentences_end_at_stops_not_at_decimals_or_domains():
    text = "For m/s divide by 3.6. Mail support@lumen.store for help. 体温 38.5 度以上。请尽快去医院就医。"
    assert [s for s, _ in passage_sentences(text)] == [
        "For m/s divide by 3.6.", "Mail support@lumen.store for help.", "体温 38.5 度以上。", "请尽快去医院就医。"
    ]  # fmt: skip


def test_a_table_row_is_read_with_its_header():
    """The circle's area formula is a table row under "图形 | 面积公式": read alone, "圆的面积公式是什么？"
    quoted the common-mistakes line about circles instead (edu-eval-050)."""
    passage = (
        "## 平面图形面积\n| 图形 | 面积公式 |\n|---|---|\n| 长方形 | 长 × 宽 |\n"
        "| 圆 | `S = πr^2`，周长 `C = 2πr` |\n\n**周长**是图形一周的长度。\n## 常见错误\n- 圆的面积公式中把直径当半径。"
    )
    assert [s for s, _ in passage_sentences(passage)] == [
        "长方形 | 长 × 宽", "圆 | `S = πr^2`，周长 `C = 2πr`", "周长是图形一周的长度。", "圆的面积公式中把直径当半径。"
    ]  # fmt: skip
    [(sentence, _)] = best_sentences("圆的面积公式是什么？", [(passage, "area-volume-zh#0")], k=1)
    assert sentence == "圆 | `S = πr^2`，周长 `C = 2πr`"


WARRANTY = [
    ("保修期从签收之日开始计算：\n- 电子产品（手机、耳机）：1 年\n- 大家电整机 2 年，压缩机 5 年。", "warranty-zh#0"),
    ("支持支付宝、微信支付和银行卡付款，订单号就是购买凭证，不需要纸质发票。", "payment-methods-zh#1"),
]


@pytest.mark.parametrize(
    ("answer", "mended", "moved"),
    [
        # the fact is the warranty passage's, the citation its neighbour's
        ("耳机保修 1 年，大家电 2 年 [payment-methods-zh]。", "耳机保修 1 年，大家电 2 年 [warranty-zh]。",
         [("payment-methods-zh", "warranty-zh")]),
        # each citation cites the text since the one before it: the second one is right and stays
        ("耳机保修 1 年 [payment-methods-zh]。订单号就是购买凭证，不需要发票 [payment-methods-zh]。",
         "耳机保修 1 年 [warranty-zh]。订单号就是购买凭证，不需要发票 [payment-methods-zh]。",
         [("payment-methods-zh", "warranty-zh")]),
        ("耳机保修 1 年 [warranty-zh#0]。", "耳机保修 1 年 [warranty-zh#0]。", []),  # right: kept as written
        ("耳机保修 1 年 [warranty-en]。", "耳机保修 1 年 [warranty-zh]。",
         [("warranty-en", "warranty-zh")]),  # a document it was not shown
        ("可以用微信支付 [warranty-zh]。", "可以用微信支付 [payment-methods-zh]。",
         [("warranty-zh", "payment-methods-zh")]),  # no specifics: the words decide
        ("请联系客服 [warranty-zh]。", "请联系客服 [warranty-zh]。", []),  # no passage holds it better: kept
    ],
)  # fmt: skip
def test_a_citation_moves_to_the_passage_that_holds_what_it_cites(answer, mended, moved):
    assert mend_citations(answer, WARRANTY) == (mended, moved)


def test_a_quiz_is_quoted_without_its_answers_and_in_the_students_language():
    """generate_quiz returns answers_for_tutor: quoted, they gave a student the answers before answering."""
    from polyglm.scenarios.tooling import load_tools

    quiz = next(fn for fn in load_tools(load_pack("education")) if fn.__name__ == "generate_quiz")
    result = quiz("density", "easy", 2, 1)
    answers = [a["answer"] for a in result["answers_for_tutor"]]
    english = fallback_answer("Give me 2 easy density questions.", [], "en", [("generate_quiz", result)])
    assert result["questions"][0]["en"] in english and not any(a in english for a in answers)
    assert language_of(english) == "en" and "keep the answers" not in english
    chinese = fallback_answer("出两道密度题。", [], "zh", [("generate_quiz", result)])
    assert result["questions"][0]["zh"] in chinese and result["questions"][0]["en"] not in chinese


@pytest.mark.parametrize(
    ("question", "lang", "problem", "answer", "verdict", "not_said"),
    [
        ("解方程 4x + 7 = 31，我得 x = 6，对吗？", "zh", "4x + 7 = 31", "x = 6", "verdict: 正确", "not correct"),
        ("2/5 + 1/3 我算的是 3/8，对不对？", "zh", "2/5 + 1/3", "3/8", "verdict: 不对", "正确"),
        ("Solve 2(x + 5) = 18. I wrote x = 13.", "en", "2(x + 5) = 18", "x = 13", "verdict: not correct", "不对"),
    ],
)
def test_an_answer_check_is_stated_in_the_students_words(question, lang, problem, answer, verdict, not_said):
    """A student who asks "对吗？" is told 正确 or 不对, not "correct: True" in the middle of Chinese."""
    from polyglm.scenarios.tooling import load_tools

    check = next(fn for fn in load_tools(load_pack("education")) if fn.__name__ == "check_answer")
    given = fallback_answer(question, [], lang, [("check_answer", check(problem, answer))])
    assert verdict in given and not_said not in given and "verdict_" not in given


@pytest.mark.parametrize(
    ("answer", "correct", "contradiction"),
    [
        ("把 x = 3 代回去，左边是 4，右边是 10，不相等，所以还不对。", True, ["不对"]),
        ("结果是正确，正确的是 2。", True, []),
        ("x = 6 不正确。", False, []),  # the wrong-word is read before the right-word it holds
        ("Check: x = 4 is correct.", False, ["correct"]),
        ("This is not correct, so check again.", False, []),
        ("Let's look at the steps together.", True, []),  # no verdict stated: nothing to contradict
    ],
)
def test_an_answer_stating_the_opposite_of_a_checks_verdict_is_caught(answer, correct, contradiction):
    result = {"problem": "expand (x + 4)(x - 1)", "correct": correct}
    assert [c.text for c in contradicted_verdicts(answer, [result])] == contradiction
    assert contradicted_verdicts(answer, [{"status": "shipped"}]) == []  # a result that checks nothing


@pytest.mark.usefixtures("isolated_cache")
def test_a_student_told_a_right_answer_is_wrong_gets_the_checks_verdict(tiny_platform, monkeypatch):
    """The offline LM's working for a correct expansion ended "所以还不对" and passed every other guard
    (edu-eval-018): the student must read the checker's 正确, not the model's 不对."""
    wrong = "我查一下。左边和右边不相等，所以还不对。"
    reply = _assistant(tiny_platform, "education", "zh", wrong, monkeypatch).respond(
        "展开 (x + 4)(x - 1)，我写 x^2 + 3x - 4，对吗？"
    )
    grounding = next(s for s in reply.trace if s["step"] == "grounding")
    assert grounding["fallback"] and grounding["unsupported"] == ["不对"]
    assert "verdict: 正确" in reply.answer and "不对" not in reply.answer


def test_a_specific_the_user_or_a_tool_gave_does_not_move_a_citation():
    passages = [("孩子发烧时多喝水、多休息，精神差要及时就医。", "fever-zh#0"),
                ("误服药物请立即拨打 120 或去医院。", "medicine-storage-zh#2")]  # fmt: skip
    answer = "孩子发烧精神差请及时就医，加重请拨打 120 [fever-zh]。"
    assert mend_citations(answer, passages)[1] == [("fever-zh", "medicine-storage-zh")]  # "120" decides alone
    assert mend_citations(answer, passages, known=["advice: 加重请拨打 120"]) == (answer, [])  # the triage's 120


def test_the_fallback_states_what_the_tools_returned():
    result = {
        "order_id": "A10024",
        "status": "shipped",
        "tracking_number": "SF496813232381",
        "delivered_at": None,
        "items": [{"name_en": "Nimbus 14 laptop", "name_zh": "云境 14 笔记本电脑", "quantity": 1}],
        "leaflets": ["fever-en", "when-to-see-a-doctor-en"],
    }
    answer = fallback_answer("Where is my parcel?", [], "en", [("order_lookup", result)])
    assert (
        "The order_lookup tool returned: order_id: A10024; status: shipped; tracking_number: SF496813232381;" in answer
    )
    assert "leaflets: fever-en, when-to-see-a-doctor-en" in answer and "items: Nimbus 14 laptop / 1;" in answer
    assert "delivered_at" not in answer and "won't guess" in answer
    assert "items: 云境 14 笔记本电脑 / 1" in fallback_answer("包裹到哪了？", [], "zh", [("order_lookup", result)])


def test_the_interaction_a_drug_lookup_found_is_stated_not_only_its_disclaimer():
    """The records a tool returns are what it found: "万艾可 + 硝酸甘油" answered with the disclaimer alone
    (the offline LM, med-eval-024) must be followed by the contraindication."""
    from polyglm.scenarios.tooling import load_tools

    lookup = next(fn for fn in load_tools(load_pack("medical")) if fn.__name__ == "drug_interactions")
    result = lookup(["万艾可", "硝酸甘油"])
    answer = "查不到相互作用并不代表可以放心合用。"
    given = with_evidence(answer, "万艾可和硝酸甘油能一起用吗？", [], "zh", [("drug_interactions", result)])
    assert "interactions: sildenafil, nitroglycerin / contraindicated /" in given and "禁止合用" in given
    assert "drugs: 万艾可 / sildenafil / 西地那非" in given


def test_support_share_is_the_share_of_the_answers_words_it_was_shown():
    passages = ["Change-of-mind returns are accepted within 7 days of delivery."]
    assert support_share("Returns are accepted within 7 days of delivery.", passages) == 1.0
    assert support_share("No worries, let me look that up for you.", passages) < UNGROUNDED_SHARE
    assert support_share("退货需在签收后七天内申请。", ["签收后 7 天内可以申请退货"]) > 0.5
    assert support_share("", passages) == 0.0


def _assistant(tiny_platform, pack: str, lang: str, answer: str, monkeypatch) -> ScenarioAssistant:
    assistant = ScenarioAssistant(tiny_platform, load_pack(pack), lang)
    monkeypatch.setattr(assistant, "_generate", lambda messages: answer)  # script the model: the guard is under test
    return assistant


@pytest.mark.usefixtures("isolated_cache")
def test_an_invented_duration_is_replaced_by_the_cited_passage(tiny_platform, monkeypatch):
    assistant = _assistant(tiny_platform, "customer_service", "en", "You can return it within 30 days.", monkeypatch)
    reply = assistant.respond("How many days do I have to return an item I changed my mind about?")
    grounding = next(s for s in reply.trace if s["step"] == "grounding")
    assert grounding["fallback"] and grounding["unsupported"] == ["30 day"]
    assert grounding["model_answer"] == "You can return it within 30 days."
    assert "30 days" not in reply.answer and "[" in reply.answer and "]" in reply.answer
    cited = reply.answer.rsplit("[", 1)[1].rstrip("]")
    assert cited in {c["citation"] for c in reply.citations}  # it quotes one of the passages it was given


@pytest.mark.usefixtures("isolated_cache")
def test_a_grounded_answer_stands_and_only_evidence_it_leaves_out_follows(tiny_platform, monkeypatch):
    answer = "Change-of-mind returns are accepted within 7 days of delivery."
    assistant = _assistant(tiny_platform, "customer_service", "en", answer, monkeypatch)
    reply = assistant.respond("How many days do I have to return an item I changed my mind about?")
    assert reply.answer.startswith(answer + " From the sources: \u201c")
    grounding = next(s for s in reply.trace if s["step"] == "grounding")
    assert grounding["evidence_added"] and not grounding["fallback"] and grounding["model_answer"] == answer
    quoted = reply.answer[len(answer) :]
    assert "within 7 days of delivery" not in quoted  # the sentence the answer restates is not quoted again
    assert {c.rstrip("]") for c in quoted.split("[")[1:]} <= {c["citation"] for c in reply.citations}
    assistant.grounding_guard = False  # switched off: the model's words stand, the trace still says why
    invented = _assistant(tiny_platform, "customer_service", "en", "Within 30 days.", monkeypatch)
    invented.grounding_guard = False
    reply = invented.respond("How many days do I have to return an item I changed my mind about?")
    assert reply.answer == "Within 30 days." and next(s for s in reply.trace if s["step"] == "grounding")[
        "unsupported"] == ["30 day"]  # fmt: skip


@pytest.mark.usefixtures("isolated_cache")
def test_a_grounded_answer_citing_the_wrong_passage_is_given_with_the_right_one(tiny_platform, monkeypatch):
    answer = "Change-of-mind returns are accepted within 7 days of delivery [payment-methods-en]."
    assistant = _assistant(tiny_platform, "customer_service", "en", answer, monkeypatch)
    reply = assistant.respond("How many days do I have to return an item I changed my mind about?")
    grounding = next(s for s in reply.trace if s["step"] == "grounding")
    assert grounding["citations_mended"] == [("payment-methods-en", "returns-policy-en")]
    assert reply.answer.startswith(answer.replace("payment-methods-en", "returns-policy-en"))
    assert grounding["model_answer"] == answer  # the trace keeps what the model wrote


@pytest.mark.usefixtures("isolated_cache")
def test_a_chinese_answer_falls_back_in_chinese(tiny_platform, monkeypatch):
    assistant = _assistant(tiny_platform, "customer_service", "zh", "无理由退货需要在三十天内申请。", monkeypatch)
    reply = assistant.respond("不想要了，收货后几天内可以退货？")
    assert "资料原文" in reply.answer and "三十" not in reply.answer


@pytest.mark.usefixtures("isolated_cache")
def test_an_answer_that_ignores_what_it_was_shown_falls_back_with_the_tool_results(tiny_platform, monkeypatch):
    assistant = _assistant(tiny_platform, "customer_service", "en", "No worries, let me look that up.", monkeypatch)
    reply = assistant.respond("Where's my parcel? Order A10024.")
    grounding = next(s for s in reply.trace if s["step"] == "grounding")
    assert grounding["unsupported"] == [] and grounding["ungrounded"] and grounding["fallback"]
    assert grounding["support"] < UNGROUNDED_SHARE and grounding["model_answer"] == "No worries, let me look that up."
    assert "order_lookup" in reply.answer and "SF496813232381" in reply.answer  # the planner's lookup, stated
