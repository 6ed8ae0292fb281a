"""What the console shows of a dead letter before any service is involved: why it was
dead-lettered, read from its attributes, and a preview of its data that hides secrets and
control characters and stays short."""

from __future__ import annotations

import orjson

from shared import dead_letters
from shared.producers import REFUSALS
from shared.pubsub import DELIVERY_COUNT_ATTR, ERROR_ATTR, REASON_ATTR


def test_the_reason_comes_from_the_matcher_or_from_pubsubs_delivery_count() -> None:
    refused = {REASON_ATTR: "bad_signature", ERROR_ATTR: "refused: it does not match"}
    assert dead_letters._reason(refused) == ("bad_signature", "refused: it does not match", None)
    assert dead_letters._reason({DELIVERY_COUNT_ATTR: "10", "producer": "orders"}) == (
        "delivery_attempts", "the matcher did not acknowledge it in 10 deliveries", 10,
    )  # fmt: skip
    assert dead_letters._reason({}) == ("unknown", "", None)
    # Every refusal of the matcher is final: re-driven, it would be refused again.
    assert set(REFUSALS) | {"undecodable"} == dead_letters.FINAL_REASONS
    assert "delivery_attempts" not in dead_letters.FINAL_REASONS


def test_the_preview_hides_secrets_and_control_characters_and_is_short() -> None:
    doc = {"command": "deposit", "id": "c-1", "api_key": "k-123", "nested": {"password": "p"}}
    shown = orjson.loads(dead_letters.preview(orjson.dumps(doc)))
    assert shown == {**doc, "api_key": "(removed)", "nested": {"password": "(removed)"}}
    assert dead_letters.preview(b"\x00\x1b[31mred\xff") == "\ufffd\ufffd[31mred\ufffd"
    long = dead_letters.preview(orjson.dumps({"id": "x" * 5000}))
    assert len(long) == dead_letters.PREVIEW_CHARS and long.endswith("…")


def test_a_command_is_recognised_by_its_id_and_type() -> None:
    command = dead_letters._command_of(b'{"command": "place_order", "id": "o-1"}')
    assert command == ("o-1", "place_order")
    assert dead_letters._command_of(b"[1, 2]") == (None, None)
    assert dead_letters._command_of(b"not json") == (None, None)
