"""Build the customer_service pack's data: orders.sql, train.jsonl and eval.jsonl.

    .venv/bin/python polyglm/scenarios/packs/customer_service/data/make_data.py

Deterministic (seed below): the same files on every run. The text lives in three YAML files beside
this script (kb_dialogues.yaml, tool_dialogues.yaml, eval_items.yaml); this script combines them with
the sample orders. Tool results in the conversations come from the pack's real tools (run against a
throw-away cache folder), and quoted passages from the real chunker, so training data, tools and
knowledge base cannot drift apart: a changed policy or order shows up as a changed line here.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from polyglm.scenarios import datagen
from polyglm.scenarios.datagen import PackContext, assistant, conversation, observation, read_yaml, user

SEED = 20261128
TODAY = date(2026, 11, 28)  # the sample store's clock (store_clock in orders.sql)
HERE = Path(__file__).resolve().parent
PACK = "customer_service"
MIN_TRAIN, MIN_EVAL = 200, 50


# ---------------------------------------------------------------- catalogue and orders


@dataclass(frozen=True)
class Product:
    sku: str
    name_en: str
    name_zh: str
    category: str  # electronics, large_appliance, accessory, ... (warranty rules key on it)
    price_cny: float
    returnable: bool  # for a change of mind
    note: str = ""  # why it is not returnable


CATALOGUE = {
    p.sku: p
    for p in [
        Product("EL-HP01", "Aurora wireless noise-cancelling headphones", "极光无线降噪耳机", "electronics", 899, True),
        Product("EL-PH01", "Lumen X5 smartphone 256 GB", "流明 X5 手机 256GB", "electronics", 3299, True),
        Product("EL-LT01", "Nimbus 14 laptop", "云境 14 笔记本电脑", "electronics", 5999, True),
        Product("EL-WT01", "Pulse smartwatch", "脉动智能手表", "electronics", 1299, True),
        Product("EL-SP01", "Mini Bluetooth speaker", "迷你蓝牙音箱", "electronics", 299, True),
        Product("EL-KB01", "K8 mechanical keyboard", "K8 机械键盘", "electronics", 459, True),
        Product("EL-KT01", "1.7 L electric kettle", "1.7 升电热水壶", "electronics", 199, True),
        Product("EL-AF01", "5 L air fryer", "5 升空气炸锅", "electronics", 499, True),
        Product("EL-PB01", "10,000 mAh power bank", "10000 毫安充电宝", "electronics", 149, True),
        Product("LA-FR01", "450 L double-door refrigerator", "450 升双门冰箱", "large_appliance", 4599, True),
        Product("LA-WM01", "10 kg front-load washing machine", "10 公斤滚筒洗衣机", "large_appliance", 3199, True),
        Product("LA-AC01", "1.5 HP inverter air conditioner", "1.5 匹变频空调", "large_appliance", 2899, True),
        Product("AC-CB01", "2 m USB-C cable", "2 米 USB-C 数据线", "accessory", 39, True),
        Product("AC-CS01", "Lumen X5 phone case", "流明 X5 手机壳", "accessory", 69, True),
        Product("AC-CH01", "65 W charger", "65W 充电器", "accessory", 129, True),
        Product("CL-JK01", "Down jacket", "羽绒服", "clothing", 699, True),
        Product("CL-SN01", "Running shoes", "跑步鞋", "clothing", 459, True),
        Product("CL-SW01", "Swimsuit", "泳衣", "clothing", 199, True),
        Product("HM-LP01", "LED desk lamp", "LED 台灯", "home", 239, True),
        Product("HM-BD01", "Cotton bedding set", "纯棉四件套", "home", 399, True),
        Product("CO-SK01", "Moisturising face cream 50 ml", "保湿面霜 50ml", "cosmetics", 289, True),
        Product("PS-MG01", "Engraved thermos mug", "定制刻字保温杯", "personalised", 159, False, "personalised"),
        Product("PS-PB01", "Custom photo book", "定制照片书", "personalised", 229, False, "personalised"),
        Product("FD-TE01", "Longjing green tea 250 g", "龙井绿茶 250g", "food", 268, False, "perishable food"),
        Product("FD-CH01", "Fresh cherries 2 kg", "新鲜车厘子 2kg", "food", 199, False, "perishable food"),
        Product("DG-SW01", "Photo editor licence", "修图软件激活码", "digital", 299, False, "digital goods"),
        Product("GC-0200", "Lumen gift card ¥200", "流明礼品卡 ¥200", "gift_card", 200, False, "gift card"),
        Product("CL-SC01", "Wool scarf (final sale)", "羊毛围巾（不退不换）", "clothing", 89, False, "final sale"),
    ]
}
NOTE_ZH = {
    "personalised": "个性化定制商品",
    "perishable food": "生鲜食品",
    "digital goods": "数字商品",
    "gift card": "礼品卡",
    "final sale": "不退不换商品",
}
CITIES_CN = [
    "Hangzhou",
    "Beijing",
    "Shanghai",
    "Chengdu",
    "Guangzhou",
    "Wuhan",
    "Xi'an",
    "Urumqi",
    "Nanjing",
    "Shenzhen",
]
CITIES_INTL = ["Singapore", "Los Angeles, USA", "London, UK", "Sydney, Australia", "Toronto, Canada", "Berlin, Germany"]
CARRIERS_CN = ["SF Express", "ZTO Express", "JD Logistics"]
NAMES = {
    "zh": ["王芳", "李强", "张伟", "刘洋", "陈静", "杨磊", "赵敏", "黄婷", "周杰", "吴霞"],
    "en": ["Emma Clark", "Liam Patel", "Olivia Chen", "Noah Smith", "Ava Müller", "Lucas Tan", "Mia Brown"],
}
STATUS_WEIGHTS = {
    "delivered": 45,
    "shipped": 15,
    "processing": 10,
    "pending_payment": 5,
    "cancelled": 10,
    "returned": 15,
}

# Hand-written orders behind the eval set and the headline conversations: one per refund outcome.
# (id, status, day offsets placed/shipped/delivered from TODAY, [(sku, qty)], tier, currency, customer language)
STORY_ORDERS = [
    ("A10023", "delivered", (-7, -6, -3), [("EL-HP01", 1), ("AC-CB01", 1)], "silver", "CNY", "zh"),
    ("A10024", "shipped", (-3, -2, None), [("EL-LT01", 1)], "gold", "CNY", "en"),
    ("A10025", "processing", (0, None, None), [("CL-JK01", 1), ("CL-SN01", 1)], "silver", "CNY", "zh"),
    ("A10026", "delivered", (-21, -20, -18), [("EL-WT01", 1)], "silver", "CNY", "zh"),
    ("A10027", "delivered", (-6, -4, -1), [("LA-FR01", 1)], "silver", "CNY", "en"),
    ("A10028", "delivered", (-8, -6, -4), [("PS-MG01", 2)], "silver", "CNY", "en"),
    ("A10029", "pending_payment", (0, None, None), [("EL-PH01", 1)], "silver", "CNY", "zh"),
    ("A10030", "cancelled", (-13, None, None), [("HM-BD01", 1)], "silver", "CNY", "en"),
    ("A10031", "returned", (-32, -31, -27), [("CL-SW01", 1)], "gold", "CNY", "zh"),
    ("A10032", "shipped", (-21, -20, None), [("EL-KT01", 1), ("AC-CB01", 2)], "silver", "CNY", "zh"),
    ("A10033", "delivered", (-5, -4, -2), [("EL-SP01", 1), ("FD-TE01", 1)], "silver", "CNY", "en"),
    ("A10034", "delivered", (-546, -545, -543), [("LA-WM01", 1)], "silver", "CNY", "zh"),
    ("A10035", "delivered", (-470, -469, -466), [("EL-KB01", 1)], "silver", "CNY", "zh"),
    ("A10036", "delivered", (-8, -7, -5), [("EL-AF01", 1)], "gold", "CNY", "zh"),
    ("A10037", "delivered", (-10, -9, -7), [("CL-SN01", 1)], "silver", "CNY", "en"),
    ("A10038", "delivered", (-9, -8, -6), [("HM-LP01", 1)], "silver", "CNY", "en"),
    ("A10039", "delivered", (-3, -2, -1), [("EL-PB01", 2), ("AC-CH01", 1)], "silver", "CNY", "zh"),
    ("B20001", "delivered", (-14, -13, -6), [("EL-HP01", 1)], "silver", "USD", "en"),
    ("B20002", "shipped", (-5, -4, None), [("EL-PH01", 1), ("AC-CS01", 1)], "gold", "USD", "zh"),
    ("B20003", "processing", (-1, None, None), [("CL-JK01", 1)], "silver", "USD", "en"),
    ("B20004", "delivered", (-40, -38, -29), [("EL-LT01", 1)], "silver", "USD", "en"),
]


def build_orders(rng: random.Random) -> list[dict]:
    orders = [_story_order(rng, *row) for row in STORY_ORDERS]
    orders += [_random_order(rng, f"A{n}", "CNY") for n in range(10040, 10062)]
    orders += [_random_order(rng, f"B{n}", "USD") for n in range(20005, 20010)]
    return orders


def _story_order(rng, order_id, status, offsets, lines, tier, currency, lang) -> dict:
    placed, shipped, delivered = (None if d is None else (TODAY + timedelta(days=d)).isoformat() for d in offsets)
    return _order(rng, order_id, status, placed, shipped, delivered, lines, tier, currency, lang)


def _random_order(rng: random.Random, order_id: str, currency: str) -> dict:
    status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
    transit = rng.randint(4, 12) if currency == "USD" else rng.randint(1, 4)
    shipped = delivered = None
    if status in ("delivered", "returned"):
        delivered_day = -rng.randint(1 if status == "delivered" else 12, 420)
        delivered, shipped = delivered_day, delivered_day - transit
        placed = shipped - rng.randint(0, 1)
    elif status == "shipped":
        shipped = -rng.randint(0, transit - 1) if transit > 1 else 0
        placed = shipped - rng.randint(0, 1)
    elif status == "cancelled":
        placed = -rng.randint(2, 200)
    else:
        placed = -rng.randint(0, 1) if status == "processing" else 0
    skus = [s for s in CATALOGUE if currency == "CNY" or CATALOGUE[s].category != "large_appliance"]
    lines = [(sku, rng.choice([1, 1, 1, 2])) for sku in rng.sample(skus, rng.choice([1, 1, 2, 2, 3]))]
    lang = "en" if currency == "USD" and rng.random() < 0.7 else rng.choice(["zh", "en"])
    tier = "gold" if rng.random() < 0.25 else "silver"
    days = (placed, shipped, delivered)
    placed, shipped, delivered = (None if d is None else (TODAY + timedelta(days=d)).isoformat() for d in days)
    return _order(rng, order_id, status, placed, shipped, delivered, lines, tier, currency, lang)


def _order(rng, order_id, status, placed, shipped, delivered, lines, tier, currency, lang) -> dict:
    items = [_item(CATALOGUE[sku], qty, currency) for sku, qty in lines]
    subtotal = round(sum(i["quantity"] * i["unit_price"] for i in items), 2)
    large = any(i["category"] == "large_appliance" for i in items)
    fee = _shipping_fee(subtotal, currency, large)
    carrier = _carrier(rng, currency) if shipped else None
    return {
        "order_id": order_id,
        "customer": rng.choice(NAMES[lang]),
        "lang": lang,
        "placed_at": placed,
        "status": status,
        "currency": currency,
        "shipping_fee": fee,
        "total": round(subtotal + fee, 2),
        "payment_method": _payment(rng, currency),
        "carrier": carrier,
        "tracking_number": _tracking(rng, carrier) if carrier else None,
        "shipped_at": shipped,
        "delivered_at": delivered,
        "ship_to": rng.choice(CITIES_INTL) if currency == "USD" else f"{rng.choice(CITIES_CN)}, China",
        "member_tier": tier,
        "items": items,
    }


def _item(product: Product, qty: int, currency: str) -> dict:
    price = product.price_cny if currency == "CNY" else round(product.price_cny / 7.1, 2)
    return {
        "sku": product.sku,
        "name_en": product.name_en,
        "name_zh": product.name_zh,
        "category": product.category,
        "quantity": qty,
        "unit_price": price,
        "returnable": int(product.returnable),
        "return_note": product.note or None,
    }


def _shipping_fee(subtotal: float, currency: str, large_appliance: bool) -> float:
    if currency == "USD":
        return 0.0 if subtotal >= 150 else 12.0
    return 0.0 if large_appliance or subtotal >= 99 else 8.0


def _carrier(rng: random.Random, currency: str) -> str:
    return rng.choice(["DHL", "EMS"]) if currency == "USD" else rng.choice(CARRIERS_CN)


def _payment(rng: random.Random, currency: str) -> str:
    if currency == "USD":
        return rng.choice(["visa", "mastercard", "paypal", "amex"])
    return rng.choice(["alipay", "alipay", "wechat_pay", "wechat_pay", "unionpay", "store_balance", "huabei"])


TRACKING_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "SF Express": lambda rng: f"SF{rng.randrange(10**11, 10**12)}",
    "ZTO Express": lambda rng: f"75{rng.randrange(10**11, 10**12)}",
    "JD Logistics": lambda rng: f"JD{rng.randrange(10**12, 10**13)}",
    "DHL": lambda rng: f"{rng.randrange(10**9, 10**10)}",
    "EMS": lambda rng: f"EA{rng.randrange(10**8, 10**9)}CN",
}


def _tracking(rng: random.Random, carrier: str) -> str:
    return TRACKING_FORMATS[carrier](rng)


# ---------------------------------------------------------------- orders.sql

SCHEMA_SQL = """\
-- Sample orders of the customer_service pack. GENERATED by data/make_data.py (edit that, not this).
-- Loaded into SQLite by tools.py on first use, under polyglm.scenarios.tooling.state_dir("customer_service").
-- One transaction: without it SQLite syncs the disk after every INSERT (seconds instead of milliseconds).
BEGIN TRANSACTION;
CREATE TABLE store_clock (
  today TEXT NOT NULL                 -- the sample store's date: return windows are counted to it
);
CREATE TABLE orders (
  order_id TEXT PRIMARY KEY CHECK (order_id GLOB '[A-Z][0-9][0-9][0-9][0-9][0-9]'),
  customer TEXT NOT NULL,
  lang TEXT NOT NULL CHECK (lang IN ('zh', 'en')),
  placed_at TEXT NOT NULL,            -- ISO dates
  status TEXT NOT NULL CHECK (status IN ('pending_payment', 'processing', 'shipped', 'delivered',
                                         'cancelled', 'returned')),
  currency TEXT NOT NULL CHECK (currency IN ('CNY', 'USD')),
  shipping_fee REAL NOT NULL,
  total REAL NOT NULL,                -- items + shipping
  payment_method TEXT NOT NULL,
  carrier TEXT,
  tracking_number TEXT,
  shipped_at TEXT,
  delivered_at TEXT,
  ship_to TEXT NOT NULL,
  member_tier TEXT NOT NULL CHECK (member_tier IN ('silver', 'gold'))
);
CREATE TABLE order_items (
  order_id TEXT NOT NULL REFERENCES orders(order_id),
  line INTEGER NOT NULL,
  sku TEXT NOT NULL,
  name_en TEXT NOT NULL,
  name_zh TEXT NOT NULL,
  category TEXT NOT NULL,
  quantity INTEGER NOT NULL CHECK (quantity > 0),
  unit_price REAL NOT NULL,
  returnable INTEGER NOT NULL,        -- 1 when a change-of-mind return is allowed
  return_note TEXT,                   -- why not: personalised, perishable food, digital goods, gift card, final sale
  PRIMARY KEY (order_id, line)
);
"""

ORDER_COLUMNS = [
    "order_id", "customer", "lang", "placed_at", "status", "currency", "shipping_fee", "total", "payment_method",
    "carrier", "tracking_number", "shipped_at", "delivered_at", "ship_to", "member_tier",
]  # fmt: skip
ITEM_COLUMNS = ["sku", "name_en", "name_zh", "category", "quantity", "unit_price", "returnable", "return_note"]


def sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def orders_sql(orders: list[dict]) -> str:
    lines = [SCHEMA_SQL, f"INSERT INTO store_clock VALUES ('{TODAY.isoformat()}');"]
    for order in orders:
        values = ", ".join(sql_literal(order[c]) for c in ORDER_COLUMNS)
        lines.append(f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) VALUES ({values});")
        for number, item in enumerate(order["items"], start=1):
            values = ", ".join(sql_literal(v) for v in (order["order_id"], number, *(item[c] for c in ITEM_COLUMNS)))
            lines.append(f"INSERT INTO order_items (order_id, line, {', '.join(ITEM_COLUMNS)}) VALUES ({values});")
    return "\n".join([*lines, "COMMIT;"]) + "\n"


# ---------------------------------------------------------------- conversation helpers


@dataclass
class Context(PackContext):
    """Everything the conversation builders share: the pack (see datagen) plus this pack's banks and orders."""

    intents: dict[str, dict]  # kb intent name -> entry of kb_dialogues.yaml
    bank: dict[str, Any]  # tool_dialogues.yaml
    orders: list[dict]

    def tone(self, lang: str, weights=(6, 2, 2, 1)) -> tuple[str, str]:
        name = self.rng.choices(["calm", "angry", "worried", "happy"], weights=weights)[0]
        entry = self.bank["tones"][name][lang]
        return self.pick(entry["user"]), self.pick(entry["assistant"])


def money(amount: float, currency: str, lang: str) -> str:
    number = f"{amount:,.2f}"
    if currency == "CNY":
        return f"¥{number}"
    return f"USD {number}" if lang == "en" else f"{number} 美元"


def join_names(names: list[str], lang: str) -> str:
    if lang == "zh":
        return "、".join(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def order_by_id(ctx: Context, order_id: str) -> dict:
    return next(o for o in ctx.orders if o["order_id"] == order_id)


# ---------------------------------------------------------------- conversation families


def kb_conversations(ctx: Context) -> Iterator[dict]:
    for intent in ctx.intents.values():
        for lang in ("en", "zh"):
            for question in intent["questions"][lang]:
                tone_user, tone_reply = ctx.tone(lang, weights=(7, 1, 2, 1))
                refs = ctx.references(intent["doc"], lang, intent["anchor"][lang])
                yield conversation(
                    lang,
                    [
                        ctx.system(lang, refs),
                        user(tone_user + question),
                        assistant(tone_reply + intent["answer"][lang]),
                    ],
                )


def status_conversations(ctx: Context) -> Iterator[dict]:
    extra = ctx.rng.sample(ctx.orders, 16)
    for order, lang in [(o, o["lang"]) for o in ctx.orders] + [(o, "zh" if o["lang"] == "en" else "en") for o in extra]:
        order_id = order["order_id"]
        typed = order_id.lower() if ctx.rng.random() < 0.1 else order_id
        tone_user, tone_reply = ctx.tone(lang)
        call = ctx.call("order_lookup", {"order_id": order_id})
        question = ctx.pick(ctx.bank["status_questions"][lang]).format(id=typed)
        opener = tone_reply + ctx.pick(ctx.bank["lookup_openers"][lang]).format(id=order_id)
        answer = ctx.pick(ctx.bank["status_answers"][call.result["status"]][lang]).format(
            **status_fields(ctx, call.result)
        )
        yield conversation(
            lang,
            [
                ctx.system(lang),
                user(tone_user + question),
                assistant(opener, [call]),
                observation(call),
                assistant(answer),
            ],
        )


def status_fields(ctx: Context, result: dict) -> dict:
    eta = ctx.bank["eta"][result["currency"]]
    return {
        **result,
        "id": result["order_id"],
        "carrier_zh": ctx.bank["carrier_zh"].get(result["carrier"], result["carrier"]),
        "items_en": join_names([i["name_en"] for i in result["items"]], "en"),
        "items_zh": join_names([i["name_zh"] for i in result["items"]], "zh"),
        "eta_en": eta["en"],
        "eta_zh": eta["zh"],
    }


REFUND_CASES = [
    ("A10023", "changed_mind"), ("A10023", "defective"), ("A10024", "changed_mind"), ("A10024", "not_received"),
    ("A10024", "defective"), ("A10025", "changed_mind"), ("A10026", "changed_mind"), ("A10026", "defective"),
    ("A10027", "damaged_in_transit"), ("A10027", "changed_mind"), ("A10028", "changed_mind"), ("A10028", "defective"),
    ("A10029", "changed_mind"), ("A10030", "changed_mind"), ("A10031", "defective"), ("A10032", "not_received"),
    ("A10033", "changed_mind"), ("A10034", "defective"), ("A10035", "defective"), ("A10036", "changed_mind"),
    ("A10037", "wrong_item"), ("A10038", "damaged_in_transit"), ("A10039", "not_received"), ("A10039", "wrong_item"),
    ("B20001", "changed_mind"), ("B20002", "not_received"), ("B20003", "changed_mind"), ("B20004", "defective"),
    ("B20004", "changed_mind"),
]  # fmt: skip
REASONS = ["changed_mind", "defective", "damaged_in_transit", "wrong_item", "not_received"]


def refund_conversations(ctx: Context) -> Iterator[dict]:
    stories = [(order_id, reason, order_by_id(ctx, order_id)["lang"]) for order_id, reason in REFUND_CASES]
    mirrored = [(order_id, reason, "en" if lang == "zh" else "zh") for order_id, reason, lang in stories[::2]]
    randoms = [
        (o["order_id"], ctx.pick(REASONS), o["lang"]) for o in ctx.rng.sample(ctx.orders[len(STORY_ORDERS) :], 14)
    ]
    for order_id, reason, lang in stories + mirrored + randoms:
        tone_user, tone_reply = ctx.tone(lang)
        question = tone_user + ctx.pick(ctx.bank["refund_questions"][reason][lang]).format(id=order_id)
        yield conversation(
            lang, [ctx.system(lang), user(question), *refund_turns(ctx, order_id, reason, lang, tone_reply)]
        )


def refund_turns(ctx: Context, order_id: str, reason: str, lang: str, tone_reply: str = "") -> list[dict]:
    """Assistant and observation turns for one eligibility check, handing off where the rules say a person decides."""
    call = ctx.call("refund_eligibility", {"order_id": order_id, "reason": reason})
    opener = tone_reply + ctx.pick(ctx.bank["eligibility_openers"][lang]).format(id=order_id)
    turns = [assistant(opener, [call]), observation(call)]
    result = call.result
    fields = refund_fields(ctx, result, lang)
    if result["decision"] in ctx.bank["review_handoff"]:
        spec = ctx.bank["review_handoff"][result["decision"]][lang]
        handoff = ctx.call(
            "handoff_to_human", {"summary": spec["summary"].format(**fields), "urgency": spec["urgency"]}
        )
        turns += [assistant("", [handoff]), observation(handoff)]
        fields |= {"ticket_id": handoff.result["ticket_id"], "wait": handoff.result["expected_wait_minutes"]}
        return [*turns, assistant(ctx.bank["review_answers"][lang].format(**fields))]
    return [*turns, assistant(ctx.bank["refund_answers"][result["decision"]][lang].format(**fields))]


def refund_fields(ctx: Context, result: dict, lang: str) -> dict:
    order = order_by_id(ctx, result["order_id"])
    kept = [i for i in order["items"] if not i["returnable"]]
    currency = result["currency"]
    fields = {
        **result,
        "id": result["order_id"],
        "days": result["days_since_delivery"],
        "amount": money(result["refund_amount"], currency, lang),
        "cite": f"{result['policy']}-{lang}",
        "status_zh": ctx.bank["status_zh"].get(result["status"], result["status"]),
        "delivered_at": order["delivered_at"],
        "items_en": join_names([i["name_en"] for i in kept] or ["items"], "en"),
        "items_zh": join_names([i["name_zh"] for i in kept] or ["商品"], "zh"),
        "notes_en": join_names(sorted({i["return_note"] for i in kept if i["return_note"]}) or ["final sale"], "en"),
        "notes_zh": join_names(
            sorted({NOTE_ZH[i["return_note"]] for i in kept if i["return_note"]}) or ["不退不换"], "zh"
        ),
    }
    fields |= _fee_notes(order, currency)
    partial = kept and len(kept) < len(order["items"])
    fields["partial_en"] = (
        f"; note that the {fields['items_en']} can't be returned for a change of mind" if partial else ""
    )
    fields["partial_zh"] = f"；其中{fields['items_zh']}不支持无理由退货，不在退款内" if partial else ""
    return fields


def _fee_notes(order: dict, currency: str) -> dict:
    if currency == "USD":
        return {
            "fee_note_en": " (you send it back with a courier of your choice, at your cost)",
            "fee_note_zh": "（需自行选择快递寄回，运费自理）",
        }
    if order["member_tier"] == "gold":
        return {"fee_note_en": " (pickup is free for Gold members)", "fee_note_zh": "（金卡会员免费上门取件）"}
    return {"fee_note_en": " (after the ¥10 pickup fee)", "fee_note_zh": "（已扣除 ¥10 上门取件费）"}


def followup_conversations(ctx: Context) -> Iterator[dict]:
    """Two-topic chats: an eligibility check, then a policy question answered from the quoted references."""
    eligible = [
        ("A10023", "changed_mind"),
        ("A10033", "changed_mind"),
        ("A10036", "changed_mind"),
        ("B20001", "changed_mind"),
    ]
    eligible += [("A10027", "damaged_in_transit"), ("A10037", "wrong_item")]
    for (order_id, reason), follow in zip(eligible, ctx.bank["followups"], strict=True):
        lang, intent = follow["lang"], ctx.intents[follow["intent"]]
        question = ctx.pick(ctx.bank["refund_questions"][reason][lang]).format(id=order_id)
        refs = ctx.references(intent["doc"], lang, intent["anchor"][lang])
        turns = refund_turns(ctx, order_id, reason, lang)
        yield conversation(
            lang,
            [ctx.system(lang, refs), user(question), *turns, user(follow["user"]), assistant(intent["answer"][lang])],
        )


def handoff_conversations(ctx: Context) -> Iterator[dict]:
    for request in ctx.bank["handoff_requests"]:
        lang = request["lang"]
        safety = request["urgency"] == "high" and request.get("doc") == "product-safety"
        openers = ctx.bank["handoff_openers"][lang]
        opener = openers[2] if safety else ctx.pick(openers[:2])
        call = ctx.call("handoff_to_human", {"summary": request["summary"], "urgency": request["urgency"]})
        refs = ctx.references(request["doc"], lang) if request.get("doc") else None
        answer = ctx.bank["handoff_answers"][lang].format(
            ticket_id=call.result["ticket_id"],
            urgency=request["urgency"],
            urgency_zh=ctx.bank["urgency_zh"][request["urgency"]],
            escalation=ctx.pack.safety.escalation[lang],
            wait=call.result["expected_wait_minutes"],
        )
        yield conversation(
            lang,
            [
                ctx.system(lang, refs),
                user(request["user"]),
                assistant(opener, [call]),
                observation(call),
                assistant(answer),
            ],
        )


def bad_id_conversations(ctx: Context) -> Iterator[dict]:
    """Malformed and injected order ids: the assistant asks for a real id and calls no tool."""
    for bad in ctx.bank["bad_ids"]:
        for lang in ("en", "zh"):
            question = ctx.pick(ctx.bank["bad_id_questions"][lang]).format(bad=bad)
            yield conversation(
                lang, [ctx.system(lang), user(question), assistant(ctx.pick(ctx.bank["bad_id_answers"][lang]))]
            )


def unknown_id_conversations(ctx: Context) -> Iterator[dict]:
    """Well-formed ids with no order: the tool's error comes back and the assistant asks to re-check."""
    for order_id in ctx.bank["unknown_ids"]:
        for lang in ("en", "zh"):
            call = ctx.call("order_lookup", {"order_id": order_id}, expect_error=True)
            question = ctx.pick(ctx.bank["status_questions"][lang]).format(id=order_id)
            opener = ctx.pick(ctx.bank["lookup_openers"][lang]).format(id=order_id)
            answer = ctx.bank["unknown_id_answers"][lang].format(id=order_id)
            yield conversation(
                lang,
                [ctx.system(lang), user(question), assistant(opener, [call]), observation(call), assistant(answer)],
            )


def injection_conversations(ctx: Context) -> Iterator[dict]:
    """Prompt injections: refuse, or run the normal checks as if the injected 'authority' were not there."""
    for item in ctx.bank["prompt_injections"]:
        lang = item["lang"]
        if "order" in item:
            question = item["user"].format(id=item["order"])
            turns = refund_turns(ctx, item["order"], item["reason"], lang)
            yield conversation(lang, [ctx.system(lang), user(question), *turns])
        else:
            yield conversation(lang, [ctx.system(lang), user(item["user"]), assistant(item["answer"])])


def out_of_scope_conversations(ctx: Context) -> Iterator[dict]:
    for item in ctx.bank["out_of_scope"]:
        yield conversation(item["lang"], [ctx.system(item["lang"]), user(item["user"]), assistant(item["answer"])])


FAMILIES = [
    kb_conversations,
    status_conversations,
    refund_conversations,
    followup_conversations,
    handoff_conversations,
    bad_id_conversations,
    unknown_id_conversations,
    injection_conversations,
    out_of_scope_conversations,
]


def build_train(ctx: Context) -> list[dict]:
    return datagen.train_set(ctx, FAMILIES, "cs-train")


# ---------------------------------------------------------------- eval set


def build_eval(ctx: Context, train: list[dict]) -> list[dict]:
    return datagen.eval_set(ctx, "cs-eval", read_yaml(HERE / "eval_items.yaml"), train, fact_fields=_fact_fields)


def _fact_fields(result: dict) -> dict:
    """A tool result as fact fields: amounts as the assistant writes them (1,299.00), so facts follow the orders."""
    return {key: f"{value:,.2f}" if isinstance(value, float) else value for key, value in result.items()}


# ---------------------------------------------------------------- main


def make_context(rng: random.Random, orders: list[dict]) -> Context:
    intents = {e["intent"]: e for e in read_yaml(HERE / "kb_dialogues.yaml")}
    bank = read_yaml(HERE / "tool_dialogues.yaml")
    return Context.for_pack(PACK, HERE, TODAY, rng, intents=intents, bank=bank, orders=orders)


def main() -> int:
    rng = random.Random(SEED)
    orders = build_orders(rng)
    (HERE / "orders.sql").write_text(orders_sql(orders), encoding="utf-8")
    with datagen.throwaway_cache():  # a fresh orders db and hand-off queue; never the user's cache
        ctx = make_context(rng, orders)
        train = build_train(ctx)
        evals = build_eval(ctx, train)
    print(f"{len(orders)} orders, {datagen.write_train_and_eval(HERE, train, evals, MIN_TRAIN, MIN_EVAL)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
