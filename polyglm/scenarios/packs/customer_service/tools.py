"""Tools of the customer-service pack: an orders database (SQLite, seeded from data/orders.sql),
the refund rules of the knowledge base as code, and a hand-off queue.

The sample store's clock is part of its seed data (`store_clock`), so the return windows in the
sample orders, the training conversations and the eval set stay true on any day; a real deployment
would read the date from the system instead. Every query is parameterised, and order ids are checked
against a strict pattern before any query runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from polyglm.scenarios.tooling import PlannedCall, planner, state_dir, tool

PACK = "customer_service"
SEED = Path(__file__).parent / "data" / "orders.sql"
ORDER_ID = re.compile(r"^[A-Z][0-9]{5}$")
CHANGE_OF_MIND_DAYS = 7  # returns-policy
QUALITY_DAYS = 15  # defective-wrong-items
DAMAGE_REPORT_DAYS = 2  # damaged-in-transit: 48 hours
LOST_AFTER_DAYS = 14  # order-tracking: 10 working days without movement
RETURN_PICKUP_FEE = {"CNY": 10.0, "USD": 0.0}  # international change-of-mind returns are sent by the customer
WARRANTY_DAYS = {"electronics": 365, "large_appliance": 730, "accessory": 182}  # warranty policy
WAIT_MINUTES = {"high": 2, "normal": 10, "low": 30}  # contact-support: priority queue first

Reason = Literal["changed_mind", "defective", "damaged_in_transit", "wrong_item", "not_received"]


# ---------------------------------------------------------------- database


def orders_db() -> Path:
    """The SQLite file for the current seed, built once under the pack's state folder.

    The name carries a hash of orders.sql, so editing the seed builds a fresh database.
    """
    digest = hashlib.sha256(SEED.read_bytes()).hexdigest()[:12]
    path = state_dir(PACK) / f"orders-{digest}.sqlite"
    if not path.is_file():
        _build(path)
    return path


def _build(path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".orders.", suffix=".partial")
    os.close(fd)
    try:
        with closing(sqlite3.connect(tmp)) as conn:
            conn.executescript(SEED.read_text(encoding="utf-8"))
            conn.commit()
        os.replace(tmp, path)  # atomic: a concurrent first use never sees a half-built file
    finally:
        Path(tmp).unlink(missing_ok=True)


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{orders_db()}?mode=ro", uri=True)  # tools only read orders
    conn.row_factory = sqlite3.Row
    return conn


def _checked_order_id(order_id: str) -> str:
    cleaned = order_id.strip().upper()
    if not ORDER_ID.match(cleaned):
        raise ValueError(
            f"order id must be one letter followed by 5 digits, e.g. A10023; got {order_id!r}. "
            "Ask the customer to copy it from My Orders."
        )
    return cleaned


def _store_today(conn: sqlite3.Connection) -> date:
    return date.fromisoformat(conn.execute("SELECT today FROM store_clock").fetchone()["today"])


def _fetch_order(conn: sqlite3.Connection, order_id: str) -> dict:
    row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    if row is None:
        raise ValueError(f"no order {order_id} was found; ask the customer to check the number in My Orders")
    items = conn.execute(
        "SELECT sku, name_en, name_zh, category, quantity, unit_price, returnable, return_note "
        "FROM order_items WHERE order_id = ? ORDER BY line",
        (order_id,),
    ).fetchall()
    order = dict(row)
    order["items"] = [{**dict(item), "returnable": bool(item["returnable"])} for item in items]
    return order


# ---------------------------------------------------------------- order_lookup


@tool(timeout_s=2.0)
def order_lookup(order_id: str) -> dict:
    """Look up an order: status, dates, carrier and tracking number, items and amounts.

    Args:
        order_id: The order number, e.g. "A10023" (one letter followed by 5 digits).
    """
    with closing(_connect()) as conn:
        order = _fetch_order(conn, _checked_order_id(order_id))
    public = ("order_id", "status", "placed_at", "shipped_at", "delivered_at", "carrier", "tracking_number")
    money = ("currency", "shipping_fee", "total", "payment_method", "ship_to", "member_tier")
    result = {key: order[key] for key in (*public, *money)}
    result["items"] = [
        {key: item[key] for key in ("name_en", "name_zh", "category", "quantity", "unit_price", "returnable")}
        for item in order["items"]
    ]
    return result


# ---------------------------------------------------------------- refund_eligibility


@dataclass(frozen=True)
class Decision:
    """The outcome of the refund rules for one order and reason."""

    eligible: bool  # a refund (or replacement) can be granted now
    decision: str  # machine-readable outcome, e.g. return_then_refund
    explanation: str  # one sentence for the assistant to put in the customer's language
    policy: str  # knowledge-base topic to cite (add -en / -zh)
    refund_amount: float = 0.0  # what would be refunded, in the order's currency
    return_shipping: str = "none"  # who pays return shipping: customer, store, none
    deadline: str | None = None  # last day of the relevant window (ISO date)
    needs_review: bool = False  # a human agent must decide


@tool(timeout_s=2.0)
def refund_eligibility(order_id: str, reason: Reason) -> dict:
    """Check whether an order can be refunded for a reason, by the store's return and refund rules.

    Args:
        order_id: The order number, e.g. "A10023" (one letter followed by 5 digits).
        reason: Why the customer wants a refund: changed_mind, defective, damaged_in_transit,
            wrong_item or not_received.
    """
    with closing(_connect()) as conn:
        order = _fetch_order(conn, _checked_order_id(order_id))
        today = _store_today(conn)
    rule = _STATUS_RULES[order["status"]]
    decision = rule(order, reason, today)
    days = (today - date.fromisoformat(order["delivered_at"])).days if order["delivered_at"] else None
    return {
        "order_id": order["order_id"],
        "status": order["status"],
        "reason": reason,
        "days_since_delivery": days,
        "currency": order["currency"],
        **decision.__dict__,
    }


def _items_total(order: dict, only_returnable: bool = False) -> float:
    items = [i for i in order["items"] if i["returnable"] or not only_returnable]
    return round(sum(i["quantity"] * i["unit_price"] for i in items), 2)


def _days_since(day: str | None, today: date) -> int:
    return (today - date.fromisoformat(day)).days if day else 0


def _deadline(day: str, days: int) -> str:
    return date.fromordinal(date.fromisoformat(day).toordinal() + days).isoformat()


def _unpaid(order: dict, reason: str, today: date) -> Decision:
    return Decision(
        False,
        "nothing_to_refund",
        "The order was never paid; unpaid orders cancel after 30 minutes.",
        "payment-methods",
    )


def _already_closed(order: dict, reason: str, today: date) -> Decision:
    return Decision(
        False, "already_refunded", f"The order is {order['status']}; its refund has already been issued.", "refunds"
    )


def _processing(order: dict, reason: str, today: date) -> Decision:
    return Decision(
        True,
        "cancel_for_full_refund",
        "The order has not shipped: cancelling it refunds everything automatically within 2 hours.",
        "cancel-or-change-order",
        refund_amount=order["total"],
    )


def _shipped(order: dict, reason: str, today: date) -> Decision:
    in_transit = _days_since(order["shipped_at"], today)
    if reason == "not_received" and in_transit >= LOST_AFTER_DAYS:
        return Decision(
            True,
            "lost_parcel_refund_or_reship",
            f"The parcel has been in transit {in_transit} days; it counts as lost: reship or full refund.",
            "order-tracking",
            refund_amount=order["total"],
        )
    if reason == "not_received":
        return Decision(
            False,
            "wait_for_delivery",
            f"The parcel shipped {in_transit} days ago and is still in transit; it counts as lost after "
            f"{LOST_AFTER_DAYS} days without delivery.",
            "order-tracking",
            deadline=_deadline(order["shipped_at"], LOST_AFTER_DAYS),
        )
    if reason == "changed_mind":
        return Decision(
            True,
            "refuse_delivery_or_return",
            "Shipped orders cannot be cancelled; refuse the delivery or return within 7 days of delivery.",
            "cancel-or-change-order",
            refund_amount=_change_of_mind_refund(order),
            return_shipping="customer",
        )
    return Decision(
        False,
        "report_after_delivery",
        "The order is still in transit; report a problem with the items after delivery.",
        "order-tracking",
    )


def _change_of_mind_refund(order: dict) -> float:
    fee = 0.0 if order["member_tier"] == "gold" else RETURN_PICKUP_FEE[order["currency"]]
    return max(0.0, round(_items_total(order, only_returnable=True) - fee, 2))


def _delivered(order: dict, reason: str, today: date) -> Decision:
    return _DELIVERED_RULES[reason](order, _days_since(order["delivered_at"], today))


def _changed_mind(order: dict, days: int) -> Decision:
    deadline = _deadline(order["delivered_at"], CHANGE_OF_MIND_DAYS)
    if days > CHANGE_OF_MIND_DAYS:
        explanation = f"Delivered {days} days ago; change-of-mind returns close after {CHANGE_OF_MIND_DAYS} days."
        return Decision(False, "return_window_closed", explanation, "returns-policy", deadline=deadline)
    if not any(item["returnable"] for item in order["items"]):
        explanation = (
            "These items cannot be returned for a change of mind (personalised, perishable, opened or final sale)."
        )
        return Decision(False, "item_not_returnable", explanation, "returns-policy", deadline=deadline)
    fee_note = "free pickup for Gold members" if order["member_tier"] == "gold" else "return shipping is deducted"
    partial = not all(item["returnable"] for item in order["items"])
    explanation = f"Within {CHANGE_OF_MIND_DAYS} days of delivery; {fee_note}" + (
        "; only the returnable items are refunded." if partial else "."
    )
    return Decision(
        True,
        "return_then_refund",
        explanation,
        "returns-policy",
        refund_amount=_change_of_mind_refund(order),
        return_shipping="customer",
        deadline=deadline,
    )


def _defective(order: dict, days: int) -> Decision:
    if days <= QUALITY_DAYS:
        return Decision(
            True,
            "refund_or_exchange",
            f"A quality problem within {QUALITY_DAYS} days: full refund or exchange, the store pays shipping.",
            "defective-wrong-items",
            refund_amount=order["total"],
            return_shipping="store",
            deadline=_deadline(order["delivered_at"], QUALITY_DAYS),
        )
    warranty = max((WARRANTY_DAYS.get(item["category"], 0) for item in order["items"]), default=0)
    if days <= warranty:
        return Decision(
            False,
            "warranty_repair",
            f"After {QUALITY_DAYS} days a defect is repaired free under warranty instead of refunded.",
            "warranty",
            return_shipping="store",
            deadline=_deadline(order["delivered_at"], warranty),
        )
    return Decision(False, "warranty_expired", "The quality-return and warranty periods have both ended.", "warranty")


def _damaged(order: dict, days: int) -> Decision:
    if days <= DAMAGE_REPORT_DAYS:
        return Decision(
            True,
            "full_refund_or_replacement",
            "Damage reported within 48 hours of delivery: replacement or full refund, nothing to pay.",
            "damaged-in-transit",
            refund_amount=order["total"],
            return_shipping="store",
            deadline=_deadline(order["delivered_at"], DAMAGE_REPORT_DAYS),
        )
    return Decision(
        False,
        "needs_review",
        "Damage reported more than 48 hours after delivery needs a review by a human agent.",
        "damaged-in-transit",
        needs_review=True,
    )


def _wrong_item(order: dict, days: int) -> Decision:
    if days <= QUALITY_DAYS:
        return Decision(
            True,
            "replacement_or_refund",
            "Wrong or missing items reported within 15 days: the store sends the right item or refunds.",
            "defective-wrong-items",
            refund_amount=order["total"],
            return_shipping="store",
            deadline=_deadline(order["delivered_at"], QUALITY_DAYS),
        )
    return Decision(
        False, "report_window_closed", "Wrong items must be reported within 15 days.", "defective-wrong-items"
    )


def _not_received_but_delivered(order: dict, days: int) -> Decision:
    return Decision(
        False,
        "investigate_delivery",
        "The carrier recorded delivery; a human agent opens an investigation with the carrier.",
        "order-tracking",
        needs_review=True,
    )


# order status -> rule; delivered orders are decided by reason. Each rule mirrors a kb document.
_STATUS_RULES: dict[str, Callable[[dict, str, date], Decision]] = {
    "pending_payment": _unpaid,
    "processing": _processing,
    "shipped": _shipped,
    "delivered": _delivered,
    "cancelled": _already_closed,
    "returned": _already_closed,
}
_DELIVERED_RULES: dict[str, Callable[[dict, int], Decision]] = {
    "changed_mind": _changed_mind,
    "defective": _defective,
    "damaged_in_transit": _damaged,
    "wrong_item": _wrong_item,
    "not_received": _not_received_but_delivered,
}


# ---------------------------------------------------------------- handoff_to_human


@tool(timeout_s=2.0)
def handoff_to_human(summary: str, urgency: Literal["low", "normal", "high"]) -> dict:
    """Hand the conversation to a human agent with a short summary; returns the ticket.

    Args:
        summary: Two or three sentences for the agent: the customer's problem, order ids and what was tried.
        urgency: high for safety problems, fraud or double charges; normal for most cases; low for feedback.
    """
    text = " ".join(summary.split())
    if not 5 <= len(text) <= 2000:
        raise ValueError("summary must be 5 to 2000 characters: say what the customer needs and the order id")
    queue = state_dir(PACK) / "handoffs.jsonl"
    number = 100001 + (sum(1 for _ in queue.open(encoding="utf-8")) if queue.is_file() else 0)
    ticket = {"ticket_id": f"H{number}", "urgency": urgency, "expected_wait_minutes": WAIT_MINUTES[urgency]}
    with queue.open("a", encoding="utf-8") as out:
        out.write(json.dumps({**ticket, "summary": text}, ensure_ascii=False) + "\n")
    return {**ticket, "agent_hours": "09:00-22:00 Beijing time", "escalate": True}


# ---------------------------------------------------------------- planners (before generation)

ORDER_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])([A-Za-z][0-9]{5})(?![0-9])")
# First match wins, most specific first: "the refund never arrived" is not a change of mind.
REFUND_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(words, re.IGNORECASE))
    for reason, words in (
        ("not_received", r"not (?:yet )?received|never (?:arrived|came|got)|(?:hasn't|has not|didn't|did not|haven't) "
                         r"(?:arrived|come|got|received)|没收到|未收到|没到|还没到货|一直没收到"),
        ("wrong_item", r"\bwrong\b|not what I ordered|发错|错发|不是我买的|不是我订的"),
        ("damaged_in_transit", r"\bdent|damaged|crushed|smashed|cracked|arrived broken|压坏|摔坏|破损|磕坏|凹|碎了"),
        ("defective", r"broken|stopped working|doesn't work|does not work|not working|won't (?:turn on|charge|start)|"
                      r"faulty|defective|坏了|不转|不工作|故障|开不了机|充不进电|不能用"),
        ("changed_mind", r"changed? my mind|don't want|do not want|no longer want|\breturn\b|send (?:it )?back|"
                         r"\brefund\b|不想要|不要了|退货|退款|能退|想退"),
    )
)  # fmt: skip
HANDOFF_TRIGGERS: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (label, urgency, re.compile(words, re.IGNORECASE))
    for label, urgency, words in (
        ("Safety problem", "high", r"spark|smok(?:e|ing)|fire|flames?|burning smell|bulg|swell|swollen|explod|melt|"
                                   r"electric shock|冒火花|冒烟|起火|着火|烧焦|鼓包|爆炸|漏电|触电"),
        ("Billing problem", "high", r"charged twice|double[- ]charged|charged two times|unauthori[sz]ed|fraud|"
                                    r"重复扣款|扣了两次|多扣|盗刷"),
        ("Customer asked for a person", "normal", r"\b(?:human|manager|supervisor|real person|agent)\b|"
                                                  r"人工|真人|经理|主管|投诉"),
    )
)  # fmt: skip


def refund_reason(message: str) -> str | None:
    """The refund reason a message states, or None when it does not ask for a refund or return."""
    return next((reason for reason, pattern in REFUND_REASONS if pattern.search(message)), None)


@planner
def plan_order_requests(message: str, lang: str):
    """An order id in the message: check refund eligibility when a refund is asked for, else look it up."""
    reason = refund_reason(message)
    for order_id in dict.fromkeys(m.upper() for m in ORDER_IN_TEXT.findall(message)):
        if reason is None:
            yield PlannedCall("order_lookup", {"order_id": order_id}, f"the message names order {order_id}")
            continue
        checked = yield PlannedCall(
            "refund_eligibility", {"order_id": order_id, "reason": reason}, f"order {order_id}: {reason}"
        )
        if checked.ok and checked.result.get("needs_review"):
            summary = f"Order {order_id}, {reason}: the refund rules need a review. Customer wrote: {message[:300]}"
            yield PlannedCall("handoff_to_human", {"summary": summary, "urgency": "normal"}, "refund needs review")


@planner
def plan_handoff(message: str, lang: str) -> list[PlannedCall]:
    """Safety problems, billing errors and explicit requests for a person go to a human at once."""
    for label, urgency, pattern in HANDOFF_TRIGGERS:
        if pattern.search(message):
            summary = f"{label}. Customer wrote: {' '.join(message.split())[:300]}"
            return [PlannedCall("handoff_to_human", {"summary": summary, "urgency": urgency}, label.lower())]
    return []
