"""@tool schemas from hints + docstrings, argument checks, time limits, error results, pack tools."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import sys
import time
from typing import Literal, Optional

import pytest

from polyglm.scenarios.loader import load_pack
from polyglm.scenarios.schema import ScenarioError
from polyglm.scenarios.tooling import (
    ToolArgumentError,
    ToolSpec,
    call_tool,
    load_tools,
    parse_docstring,
    state_dir,
    tool,
    tool_spec,
    validate_arguments,
)
from tests.scenarios.conftest import write_pack


@tool
def search_products(
    query: str,
    limit: int,
    max_price: float,
    in_stock: bool,
    tags: list[str],
    sort: Literal["price", "rating"],
    page: Optional[int] = None,  # noqa: UP045 - the old spelling must work too
    note: str | None = None,
) -> dict:
    """Search the catalogue.

    Longer explanation that continues
    on a second line.

    Args:
        query: Words to look for.
        limit: How many results,
            at most 50.
        max_price (float): Highest price in yuan.
        in_stock: Only items in stock.
        tags: Tags that must all match.
        sort: Sort order.
        page: Page number, from 1.
        note: Free text for the log.

    Returns:
        A dict with the results.
    """
    return {"query": query, "limit": limit}


@tool(timeout_s=0.2)
def slow_tool(seconds: float) -> dict:
    """Sleep.

    Args:
        seconds: How long.
    """
    time.sleep(seconds)
    return {"slept": seconds}


@tool
def picky(value: int) -> dict:
    """Refuse odd numbers.

    Args:
        value: A number.
    """
    if value % 2:
        raise ValueError(f"value must be even, got {value}")
    if value == 0:
        raise RuntimeError("a bug in the tool")
    return {"half": value // 2} if value != 4 else {"not json": {1, 2}}


def test_decorator_returns_the_original_function_with_a_spec():
    assert search_products("tea", 1, 1.0, True, [], "price") == {"query": "tea", "limit": 1}
    spec = tool_spec(search_products)
    assert isinstance(spec, ToolSpec) and spec.function is search_products
    assert spec.name == "search_products" and spec.timeout_s == 5.0
    assert tool_spec(slow_tool).timeout_s == 0.2
    assert spec.description == "Search the catalogue. Longer explanation that continues on a second line."


def test_schema_comes_from_hints_and_the_args_section():
    assert tool_spec(search_products).parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Words to look for."},
            "limit": {"type": "integer", "description": "How many results, at most 50."},
            "max_price": {"type": "number", "description": "Highest price in yuan."},
            "in_stock": {"type": "boolean", "description": "Only items in stock."},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags that must all match."},
            "sort": {"type": "string", "enum": ["price", "rating"], "description": "Sort order."},
            "page": {"type": "integer", "nullable": True, "description": "Page number, from 1.", "default": None},
            "note": {"type": "string", "nullable": True, "description": "Free text for the log.", "default": None},
        },
        "required": ["query", "limit", "max_price", "in_stock", "tags", "sort"],
        "additionalProperties": False,
    }


def test_schema_dict_is_a_fresh_copy():
    schema = tool_spec(search_products).schema()
    schema["parameters"]["properties"].clear()
    assert tool_spec(search_products).parameters["properties"]


def test_parse_docstring_ignores_other_sections():
    description, args = parse_docstring(
        """Do it.

        Args:
            a: First.
            b (int): Second,
                continued.

        Raises:
            ValueError: when bad.
        """
    )
    assert description == "Do it." and args == {"a": "First.", "b": "Second, continued."}


def define(source: str):
    namespace: dict = {}
    exec("from typing import Literal\nfrom polyglm.scenarios.tooling import tool\n" + source, namespace)
    return namespace


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "@tool\ndef f(x) -> dict:\n    '''Doc.\n\n    Args:\n        x: X.\n    '''\n",
            "parameter `x` needs a type hint",
        ),
        ("@tool\ndef f(x: int) -> dict:\n    '''Doc.'''\n", "parameter `x` needs a line in the docstring"),
        ("@tool\ndef f() -> dict:\n    '''Doc.\n\n    Args:\n        y: Y.\n    '''\n", "documents ['y']"),
        ("@tool\ndef f(*a: int) -> dict:\n    '''Doc.\n\n    Args:\n        a: A.\n    '''\n", "*args/**kwargs"),
        ("@tool\ndef f(x: set) -> dict:\n    '''Doc.\n\n    Args:\n        x: X.\n    '''\n", "not supported"),
        (
            "@tool\ndef f(x: dict[int, str]) -> dict:\n    '''Doc.\n\n    Args:\n        x: X.\n    '''\n",
            "keys are strings",
        ),
        ("@tool\ndef f(x: int | str) -> dict:\n    '''Doc.\n\n    Args:\n        x: X.\n    '''\n", "Optional"),
        ("@tool\ndef f(x: Literal['a', 1]) -> dict:\n    '''Doc.\n\n    Args:\n        x: X.\n    '''\n", "Literal"),
        ("@tool\ndef f() -> dict:\n    pass\n", "needs a docstring"),
        ("@tool\ndef f(x: 'Missing') -> dict:\n    '''Doc.\n\n    Args:\n        x: X.\n    '''\n", "cannot resolve"),
        ("@tool(timeout_s=0)\ndef f() -> dict:\n    '''Doc.'''\n", "timeout_s must be positive"),
    ],
)
def test_badly_described_tools_are_refused_at_definition(source, problem):
    with pytest.raises(ScenarioError, match=problem.replace("*", r"\*").replace("[", r"\[").replace("]", r"\]")):
        define(source)


VALID = {"query": "tea", "limit": 3, "max_price": 20, "in_stock": False, "tags": ["green"], "sort": "rating"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"colour": "red"}, "unknown argument(s) ['colour']"),
        ({"limit": "3"}, "argument `limit` must be of type integer, got str '3'"),
        ({"limit": True}, "argument `limit` must be of type integer, got bool"),
        ({"in_stock": 1}, "argument `in_stock` must be of type boolean"),
        ({"sort": "name"}, "argument `sort` must be one of ['price', 'rating'], got 'name'"),
        ({"tags": ["ok", 3]}, "argument `tags` item 1 must be of type string"),
        ({"tags": "green"}, "argument `tags` must be of type array"),
        ({"query": None}, "argument `query` must not be null"),
    ],
)
def test_arguments_are_checked_against_the_schema(change, problem):
    with pytest.raises(ToolArgumentError) as caught:
        validate_arguments(search_products, {**VALID, **change})
    assert problem in str(caught.value)


@tool
def tally(posts: list[dict], weights: dict[str, float]) -> dict:
    """Weigh posts.

    Args:
        posts: Posts as objects.
        weights: Weight per label.
    """
    return {"n": len(posts)}


def test_objects_map_to_json_objects_and_their_values_are_checked():
    properties = tool_spec(tally).parameters["properties"]
    assert properties["posts"] == {"type": "array", "items": {"type": "object"}, "description": "Posts as objects."}
    assert properties["weights"] == {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "Weight per label.",
    }
    assert call_tool(tally, {"posts": [{"text": "hi"}], "weights": {"pos": 1, "neg": 0.5}}).result == {"n": 1}
    assert "argument `posts` item 0 must be of type object" in call_tool(tally, {"posts": ["hi"], "weights": {}}).error
    bad = call_tool(tally, {"posts": [], "weights": {"pos": "high"}})
    assert bad.error == "tool `tally`: argument `weights` entry 'pos' must be of type number, got str 'high'"


def test_missing_required_arguments_and_non_objects_are_refused():
    with pytest.raises(ToolArgumentError, match=r"missing required argument\(s\) \['sort'\]"):
        validate_arguments(search_products, {k: v for k, v in VALID.items() if k != "sort"})
    with pytest.raises(ToolArgumentError, match="arguments must be an object, got list"):
        validate_arguments(search_products, ["tea"])


def test_valid_arguments_pass_including_ints_for_floats_and_nulls_for_optionals():
    assert validate_arguments(search_products, {**VALID, "page": None, "note": None}) == {
        **VALID,
        "page": None,
        "note": None,
    }


def test_call_tool_records_a_result():
    call = call_tool(search_products, VALID)
    assert call.ok and call.result == {"query": "tea", "limit": 3} and call.error is None
    assert call.name == "search_products" and call.arguments == VALID and 0 <= call.seconds < 1
    assert json.loads(call.observation()) == {"query": "tea", "limit": 3}
    assert call.as_dict()["result"] == call.result
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.error = "x"


def test_bad_arguments_become_an_error_result_not_an_exception():
    call = call_tool(search_products, {"query": "tea"})
    assert not call.ok and call.result is None and "missing required argument" in call.error
    assert json.loads(call.observation()) == {"error": call.error}


def test_a_value_error_becomes_an_error_result_with_its_message():
    call = call_tool(picky, {"value": 3})
    assert call.error == "value must be even, got 3"


def test_other_exceptions_propagate_and_non_json_results_are_refused():
    with pytest.raises(RuntimeError, match="a bug in the tool"):
        call_tool(picky, {"value": 0})
    with pytest.raises(ScenarioError, match="JSON-serialisable dict"):
        call_tool(picky, {"value": 4})


def test_a_slow_tool_times_out_without_hanging():
    started = time.perf_counter()
    call = call_tool(slow_tool, {"seconds": 5.0})
    assert time.perf_counter() - started < 1.0
    assert call.error == "tool `slow_tool` timed out after 0.2 s; try again later or hand off to a human"
    assert 0.2 <= call.seconds < 1.0
    assert call_tool(slow_tool, {"seconds": 0.01}).ok
    assert call_tool(slow_tool, {"seconds": 0.3}, timeout_s=2.0).ok  # a caller may allow more


def test_plain_functions_are_not_tools():
    with pytest.raises(ScenarioError, match="decorate it with @tool"):
        call_tool(print, {})


def test_state_dir_lives_in_the_cache_and_is_created(isolated_cache):
    path = state_dir("demo_pack")
    assert path == isolated_cache / "scenario_state" / "demo_pack" and path.is_dir()
    with pytest.raises(ScenarioError, match="not a pack name"):
        state_dir("../escape")


def test_load_tools_imports_tools_py_by_path_in_yaml_order(packs_dir):
    write_pack(packs_dir, overrides={"tools": ["grade", "echo"]})
    tools = load_tools(load_pack("demo", packs_dir))
    assert [t.__name__ for t in tools] == ["grade", "echo"]
    assert tools[0].__module__ == "polyglm_pack_demo_tools" and "polyglm_pack_demo_tools" in sys.modules
    assert call_tool(tools[1], {"text": "ab", "times": 2}).result == {"text": "abab"}
    assert call_tool(tools[1], {"text": "ab", "times": 0}).error == "times must be at least 1"


# ---------------------------------------------------------------- the customer_service tools (SQLite)


@pytest.fixture
def shop(isolated_cache):
    return {fn.__name__: fn for fn in load_tools(load_pack("customer_service"))}


@pytest.mark.parametrize(
    "injection",
    ["A10023' OR '1'='1", "A10023; DROP TABLE orders;--", "1 UNION SELECT * FROM orders", 'A10023" OR ""="', "A1002"],
)
def test_sql_injection_is_refused_before_any_query(shop, injection, isolated_cache):
    call = call_tool(shop["order_lookup"], {"order_id": injection})
    assert call.error.startswith("order id must be one letter followed by 5 digits, e.g. A10023; got ")
    refund = call_tool(shop["refund_eligibility"], {"order_id": injection, "reason": "changed_mind"})
    assert "one letter followed by 5 digits" in refund.error
    database = next((isolated_cache / "scenario_state" / "customer_service").glob("orders-*.sqlite"))
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 48  # nothing dropped or changed


def test_order_lookup_reads_the_seeded_database(shop, isolated_cache):
    result = call_tool(shop["order_lookup"], {"order_id": " a10023 "}).result  # trimmed and upper-cased
    assert result["order_id"] == "A10023" and result["status"] == "delivered" and result["total"] == 938.0
    assert result["delivered_at"] == "2026-11-25" and [i["name_en"] for i in result["items"]] == [
        "Aurora wireless noise-cancelling headphones",
        "2 m USB-C cable",
    ]
    assert "customer" not in result  # no personal data in tool output
    assert list((isolated_cache / "scenario_state" / "customer_service").glob("orders-*.sqlite"))
    missing = call_tool(shop["order_lookup"], {"order_id": "A99999"})
    assert missing.error.startswith("no order A99999 was found")


@pytest.mark.parametrize(
    ("order_id", "reason", "decision", "eligible", "refund"),
    [
        ("A10023", "changed_mind", "return_then_refund", True, 928.0),  # 899 + 39 - ¥10 pickup
        ("A10033", "changed_mind", "return_then_refund", True, 289.0),  # the tea is perishable: speaker only
        ("A10036", "changed_mind", "return_then_refund", True, 499.0),  # Gold: free pickup
        ("B20001", "changed_mind", "return_then_refund", True, 126.62),  # international: no pickup fee
        ("A10026", "changed_mind", "return_window_closed", False, 0.0),
        ("A10026", "defective", "warranty_repair", False, 0.0),
        ("A10028", "changed_mind", "item_not_returnable", False, 0.0),
        ("A10025", "changed_mind", "cancel_for_full_refund", True, 1158.0),
        ("A10027", "damaged_in_transit", "full_refund_or_replacement", True, 4599.0),
        ("A10038", "damaged_in_transit", "needs_review", False, 0.0),
        ("A10032", "not_received", "lost_parcel_refund_or_reship", True, 277.0),
        ("A10024", "not_received", "wait_for_delivery", False, 0.0),
        ("A10034", "defective", "warranty_repair", False, 0.0),
        ("A10035", "defective", "warranty_expired", False, 0.0),
        ("A10037", "wrong_item", "replacement_or_refund", True, 459.0),
        ("A10029", "changed_mind", "nothing_to_refund", False, 0.0),
        ("A10031", "defective", "already_refunded", False, 0.0),
    ],
)
def test_refund_rules_follow_the_knowledge_base(shop, order_id, reason, decision, eligible, refund):
    result = call_tool(shop["refund_eligibility"], {"order_id": order_id, "reason": reason}).result
    assert (result["decision"], result["eligible"], result["refund_amount"]) == (decision, eligible, refund)


def test_refund_reason_must_be_one_of_the_listed_reasons(shop):
    call = call_tool(shop["refund_eligibility"], {"order_id": "A10023", "reason": "because"})
    assert "argument `reason` must be one of ['changed_mind'" in call.error


def test_handoff_numbers_tickets_in_the_state_folder(shop, isolated_cache):
    first = call_tool(shop["handoff_to_human"], {"summary": "Customer wants a person.", "urgency": "normal"})
    second = call_tool(shop["handoff_to_human"], {"summary": "电池鼓包，安全问题。", "urgency": "high"})
    assert (first.result["ticket_id"], second.result["ticket_id"]) == ("H100001", "H100002")
    assert second.result["expected_wait_minutes"] == 2
    queue = (isolated_cache / "scenario_state" / "customer_service" / "handoffs.jsonl").read_text(encoding="utf-8")
    assert "电池鼓包" in queue
    assert "summary must be" in call_tool(shop["handoff_to_human"], {"summary": " ", "urgency": "low"}).error


def test_only_safety_screens_read_attached_text():
    """OCR text or a transcript reaches a planner marked reads_attachments, never an ordinary one: text in
    a photo must not be able to make the order planner look up an order."""
    from polyglm.scenarios.tooling import planner, run_planners

    seen: dict[str, str] = {}

    @planner
    def ordinary(message: str, lang: str) -> list:
        seen["ordinary"] = message
        return []

    @planner(reads_attachments=True)
    def screen(message: str, lang: str) -> list:
        seen["screen"] = message
        return []

    assert run_planners([ordinary, screen], {}, "see attached", "en", attached_text="order A-1; chest pain") == []
    assert seen == {"ordinary": "see attached", "screen": "see attached\norder A-1; chest pain"}
