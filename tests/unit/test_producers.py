"""The producers' permission table and command signatures (shared.producers)."""

from __future__ import annotations

from typing import get_args

import orjson
import pytest

from shared.config import ConfigError
from shared.messages import AnyCommand, Deposit, PlaceOrder, RefundWithdrawal, encode
from shared.producers import (
    ALLOWED,
    MATCHER_MADE,
    RefusedCommandError,
    Signer,
    Verifier,
    new_keys_document,
    parse_keys,
    public_document,
    signature_attributes,
)


def test_every_command_type_has_a_producer() -> None:
    sent = set().union(*ALLOWED.values())
    missing = [t.__name__ for t in get_args(AnyCommand) if t not in sent | MATCHER_MADE]
    assert missing == [], f"add these to the producer that sends them: {missing}"


def test_signed_by_the_right_producer_verifies_and_nothing_else_does() -> None:
    doc = new_keys_document()
    private, _ = parse_keys(orjson.dumps(doc).decode())
    _, public = parse_keys(orjson.dumps(public_document(doc)).decode())
    verifier = Verifier(public)
    cmd = Deposit(id="d", user="u", asset="ETH", amount=1, ref="r")
    data = encode(cmd)

    watcher = Signer({"watcher": private["watcher"]})
    assert verifier.check(cmd, data, "u", watcher.attributes(Deposit, data, "u")) == "watcher"
    with pytest.raises(PermissionError):
        Signer({"orders": private["orders"]}).attributes(Deposit, data, "u")
    # Locally one document holds every key: the first producer allowed signs.
    everyone = Signer(private)
    assert everyone.attributes(PlaceOrder, data, "u")["producer"] == "orders"
    assert everyone.attributes(RefundWithdrawal, data, "u")["producer"] == "sender"

    def reason(attrs: dict[str, str], key: str = "u") -> str:
        with pytest.raises(RefusedCommandError) as info:
            verifier.check(cmd, data, key, attrs)
        return info.value.reason

    good = watcher.attributes(Deposit, data, "u")
    assert reason({}) == "unsigned"
    assert reason({**good, "producer": "nobody"}) == "unknown_producer"
    assert reason({**good, "producer": "orders"}) == "bad_signature"
    assert reason({**good, "signature": "@@"}) == "bad_signature"
    assert reason(good, key="v") == "bad_signature"
    assert reason({**good, "signature": good["signature"][:-4]}) == "bad_signature"  # too short
    with pytest.raises(RefusedCommandError, match="bad_signature"):  # the data changed
        verifier.check(cmd, data[:-1] + b" ", "u", good)
    orders_attrs = {"producer": "orders", "signature": good["signature"]}
    assert reason(orders_attrs) == "bad_signature"
    by_orders = signature_attributes("orders", private["orders"], data, "u")
    assert reason(by_orders) == "forbidden_command"


def test_a_bad_keys_document_is_refused_without_showing_a_key() -> None:
    for text, words in [
        ("nope", "not JSON"),
        ("{}", "map producers"),
        ('{"thief": "x"}', "unknown producer"),
        ('{"orders": "-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----"}', "Ed25519"),
    ]:
        with pytest.raises(ConfigError, match=words):
            parse_keys(text)
