"""The OpenAPI 3.1 document of the whole public API, built as a Python dict.

One source for every function's routes: ``document()`` is served at ``GET /v1/openapi.json``
(functions/docs). Each operation names the function that serves it (``x-function``), and
tests/unit/test_openapi.py checks the document against the code both ways: every route any
function registers is documented with its method, every documented operation has a handler,
and the gateway sends it to that function. Add a route, add it here.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from shared.order_rules import MAX_CLIENT_ORDER_ID, MAX_USER_ID
from shared.params import TIME_MS_MAX

JSON = dict[str, Any]

DECIMAL_PATTERN: Final = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"
SIGNED_DECIMAL_PATTERN: Final = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
MARKET_PATTERN: Final = r"^[A-Z0-9]{2,12}-[A-Z0-9]{2,12}$"
ASSET_PATTERN: Final = r"^[A-Z0-9]{2,12}$"


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: JSON) -> JSON:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(
    required: dict[str, JSON],
    optional: dict[str, JSON] | None = None,
    *,
    closed: bool = False,
    description: str | None = None,
    examples: list[JSON] | None = None,
) -> JSON:
    """An object schema; ``closed`` (request bodies) refuses unknown fields, as the API does."""
    out: JSON = {"type": "object", "properties": {**required, **(optional or {})}}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    if examples:
        out["examples"] = examples
    return out


def array(items: JSON) -> JSON:
    return {"type": "array", "items": items}


STR: Final[JSON] = {"type": "string"}
INT: Final[JSON] = {"type": "integer"}
BOOL: Final[JSON] = {"type": "boolean"}
MS: Final[JSON] = {"type": "integer", "description": "milliseconds since the epoch (UTC)"}
DEC: Final[JSON] = ref("Decimal")
SDEC: Final[JSON] = ref("SignedDecimal")


DATETIME: Final[JSON] = {"type": "string", "format": "date-time"}
ADDRESS: Final[JSON] = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}
TIME_MS: Final[JSON] = {"type": "integer", "minimum": 0, "maximum": TIME_MS_MAX}
CHAIN_RULES: Final[dict[str, JSON]] = {
    "confirmations": {
        "type": "integer",
        "minimum": 1,
        "maximum": 10000,
        "description": "blocks before a deposit is credited (default: DEPOSIT_CONFIRMATIONS)",
    },
    "min_deposit": {**DEC, "description": "smaller deposits are recorded, never credited"},
    "withdrawal_fee": {**DEC, "description": "charged on top of each withdrawal's amount"},
    "min_withdrawal": DEC,
    "withdrawal_daily_limit": {**DEC, "description": "per user, rolling 24 h; none if absent"},
    "sweep_threshold": {**DEC, "description": "a deposit address holding this much is swept"},
}
"""The wallet's rules of an asset (shared.wallet.assets), in the asset's precision."""
WITHDRAWAL_STATES: Final = [
    "requested", "rejected", "signed", "broadcast", "confirmed", "failed", "refunded",
]  # fmt: skip
DEPOSIT_STATUSES: Final = [
    "pending", "crediting", "credited", "orphaned", "below_minimum", "rejected",
]  # fmt: skip


def _schemas() -> dict[str, JSON]:
    order_fields_required = {
        "order_id": INT,
        "market": STR,
        "side": ref("Side"),
        "status": ref("OrderStatus"),
        "filled": DEC,
        "filled_quote": DEC,
        "fee": DEC,
    }
    return {
        # -------------------------------------------------------------- conventions
        "Decimal": {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "maxLength": 41,
            "description": "An exact non-negative decimal as a string (never a JSON number).",
            "examples": ["0.15", "2000", "0"],
        },
        "SignedDecimal": {
            "type": "string",
            "pattern": SIGNED_DECIMAL_PATTERN,
            "description": "An exact decimal as a string; may be negative (changes, deltas).",
            "examples": ["-0.01"],
        },
        "Error": obj(
            {
                "error": obj(
                    {
                        "code": {
                            "type": "string",
                            "description": "stable snake_case code to branch on",
                            "examples": ["insufficient_funds"],
                        },
                        "message": {"type": "string", "description": "for people"},
                    },
                    closed=True,
                )
            },
            closed=True,
        ),
        "Side": {"type": "string", "enum": ["buy", "sell"]},
        "OrderType": {"type": "string", "enum": ["limit", "market"]},
        "TimeInForce": {"type": "string", "enum": ["GTC", "IOC", "FOK"]},
        "SelfTradePrevention": {
            "type": "string",
            "enum": ["cancel_taker", "cancel_maker", "cancel_both"],
        },
        "OrderStatus": {
            "type": "string",
            "enum": ["open", "partially_filled", "filled", "cancelled"],
        },
        "MarketStatus": {"type": "string", "enum": ["open", "halted"]},
        "Scope": {"type": "string", "enum": ["read", "trade", "withdraw"]},
        # -------------------------------------------------------------- auth
        "Credentials": obj(
            {
                "email": {"type": "string", "maxLength": 254, "format": "email"},
                "password": {"type": "string", "maxLength": 256},
            },
            closed=True,
            examples=[{"email": "alice@example.com", "password": "correct horse battery"}],
        ),
        "SignedUp": obj({"user_id": STR}),
        "TokenPair": obj(
            {
                "access_token": {"type": "string", "description": "a JWT (EdDSA)"},
                "refresh_token": STR,
                "token_type": {"type": "string", "const": "Bearer"},
                "expires_in": {"type": "integer", "description": "seconds"},
            }
        ),
        "Reauth": obj(
            {"password": {"type": "string", "maxLength": 256}},
            closed=True,
            examples=[{"password": "correct horse battery"}],
        ),
        "FreshToken": obj(
            {
                "access_token": {"type": "string", "description": "a JWT (EdDSA)"},
                "token_type": {"type": "string", "const": "Bearer"},
                "expires_in": {"type": "integer", "description": "seconds"},
                "auth_time": {
                    "type": "integer",
                    "description": "seconds since the epoch: now (the token's auth_time claim)",
                },
            },
            description="An access token of the same session, proved now.",
        ),
        "PasswordChange": obj(
            {
                "password": {
                    "type": "string",
                    "maxLength": 256,
                    "description": "the current password: the proof",
                },
                "new_password": {"type": "string", "maxLength": 256},
            },
            closed=True,
            examples=[{"password": "correct horse battery", "new_password": "a new long phrase"}],
        ),
        "RoleChange": obj(
            {"role": {"type": "string", "enum": ["user", "admin"]}},
            closed=True,
            examples=[{"role": "user"}],
        ),
        "RefreshRequest": obj(
            {"refresh_token": {"type": "string", "minLength": 1, "maxLength": 200}},
            closed=True,
        ),
        "Me": obj(
            {
                "user_id": STR,
                "email": nullable(STR),
                "role": {"type": "string", "enum": ["user", "admin"]},
                "via": {"type": "string", "enum": ["jwt", "oidc", "api_key"]},
                "scopes": array(ref("Scope")),
                "api_key_id": nullable(STR),
                "auth_time": nullable(
                    {
                        "type": "integer",
                        "description": "when the password was last given (seconds since the "
                        "epoch): login or reauth; null for an API key",
                    }
                ),
            }
        ),
        "NewApiKey": obj(
            {
                "label": {"type": "string", "minLength": 1, "maxLength": 64},
                "scopes": {**array(ref("Scope")), "minItems": 1, "maxItems": 3},
            },
            closed=True,
            examples=[{"label": "my bot", "scopes": ["read", "trade"]}],
        ),
        "ApiKey": obj(
            {
                "id": {"type": "string", "pattern": "^ak_[0-9a-f]{24}$"},
                "label": STR,
                "scopes": array(ref("Scope")),
                "created_at": nullable({"type": "string", "format": "date-time"}),
            }
        ),
        "ApiKeyCreated": {
            "allOf": [
                ref("ApiKey"),
                obj({"secret": {"type": "string", "description": "shown once, never again"}}),
            ]
        },
        "ApiKeyList": obj({"api_keys": array(ref("ApiKey"))}),
        # -------------------------------------------------------------- market data
        "ServerTime": obj({"server_time": MS}),
        "Chain": obj(
            {
                "kind": {"type": "string", "enum": ["native", "erc20"]},
                "decimals": nullable({"type": "integer", "minimum": 0}),
            },
            {
                "contract": nullable({"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}),
                **CHAIN_RULES,
            },
            description=(
                "Where the asset lives on chain: the native coin or an ERC-20 token (and, in "
                "admin answers, the wallet's rules that were set)."
            ),
        ),
        "Asset": obj(
            {
                "asset": {"type": "string", "pattern": ASSET_PATTERN},
                "precision": {"type": "integer", "minimum": 0, "maximum": 18},
            },
            {"chain": nullable(ref("Chain"))},
        ),
        "AssetList": obj({"assets": array(ref("Asset"))}),
        "Market": obj(
            {
                "market": {"type": "string", "pattern": MARKET_PATTERN},
                "base": STR,
                "quote": STR,
                "tick": DEC,
                "step": DEC,
                "min_amount": DEC,
                "min_notional": DEC,
                "maker_fee": DEC,
                "taker_fee": DEC,
                "status": ref("MarketStatus"),
            }
        ),
        "MarketList": obj({"markets": array(ref("Market"))}),
        "PriceLevel": {
            "type": "array",
            "prefixItems": [DEC, DEC],
            "items": False,
            "minItems": 2,
            "description": "[price, total amount]",
        },
        "Depth": obj(
            {
                "bids": {**array(ref("PriceLevel")), "description": "best (highest) first"},
                "asks": {**array(ref("PriceLevel")), "description": "best (lowest) first"},
                "seq": {"type": "integer", "description": "the depth version, +1 per change"},
            }
        ),
        "Ticker": obj(
            {
                "market": STR,
                "last": nullable(DEC),
                "open": nullable(DEC),
                "high": nullable(DEC),
                "low": nullable(DEC),
                "volume": DEC,
                "quote_volume": DEC,
                "change": nullable(SDEC),
                "trades": INT,
                "ts": nullable(MS),
            },
            description="A rolling 24 h window (docs/marketdata.md).",
        ),
        "TickerList": obj({"tickers": array(ref("Ticker"))}),
        "PublicTrade": obj(
            {
                "trade_id": INT,
                "market": STR,
                "price": DEC,
                "amount": DEC,
                "quote": DEC,
                "taker_side": ref("Side"),
                "ts": MS,
            }
        ),
        "PublicTradeList": obj({"trades": array(ref("PublicTrade"))}),
        "Kline": obj(
            {
                "open_time": MS,
                "open": DEC,
                "high": DEC,
                "low": DEC,
                "close": DEC,
                "volume": DEC,
                "quote_volume": DEC,
                "trades": INT,
            }
        ),
        "KlineList": obj({"klines": array(ref("Kline"))}),
        # -------------------------------------------------------------- account
        "Balances": {
            "type": "object",
            "additionalProperties": obj({"available": DEC, "frozen": DEC}),
            "description": "Per asset code.",
            "examples": [{"ETH": {"available": "1.5", "frozen": "0.1"}}],
        },
        "PlaceOrder": obj(
            {
                "market": {"type": "string", "minLength": 1, "maxLength": 32},
                "side": ref("Side"),
                "type": ref("OrderType"),
            },
            {
                "price": nullable({**DEC, "description": "limit orders only"}),
                "amount": nullable({**DEC, "description": "base amount"}),
                "quote_amount": nullable({**DEC, "description": "market buys only"}),
                "time_in_force": {**ref("TimeInForce"), "default": "GTC"},
                "post_only": {"type": "boolean", "default": False},
                "client_order_id": nullable(
                    {"type": "string", "minLength": 1, "maxLength": MAX_CLIENT_ORDER_ID}
                ),
                "stp": {**ref("SelfTradePrevention"), "default": "cancel_taker"},
            },
            closed=True,
            description=(
                "A limit order gives price and amount; a market sell gives amount; a market "
                "buy gives exactly one of amount and quote_amount. post_only only with GTC; "
                "market orders are GTC or IOC (both: immediate or cancel). Prices on the "
                "market's tick, amounts on its step and at least min_amount, price x amount "
                "(or quote_amount) at least min_notional."
            ),
            examples=[
                {
                    "market": "ETH-USDT",
                    "side": "buy",
                    "type": "limit",
                    "price": "1995.5",
                    "amount": "0.15",
                    "client_order_id": "my-order-1",
                },
                {
                    "market": "ETH-USDT",
                    "side": "sell",
                    "type": "limit",
                    "price": "2100",
                    "amount": "0.2",
                    "time_in_force": "GTC",
                    "post_only": True,
                },
                {"market": "ETH-USDT", "side": "buy", "type": "market", "quote_amount": "100"},
            ],
        ),
        "Order": obj(
            order_fields_required,
            {
                "type": ref("OrderType"),
                "price": nullable(DEC),
                "amount": nullable(DEC),
                "quote_amount": nullable(DEC),
                "time_in_force": ref("TimeInForce"),
                "post_only": BOOL,
                "client_order_id": nullable(STR),
                "reason": nullable(
                    {
                        "type": "string",
                        "description": "why it ended: ioc_expired, no_liquidity, "
                        "self_trade_prevented, insufficient_funds, cancelled_by_user",
                    }
                ),
                "fee_asset": STR,
                "frozen": {**DEC, "description": "what the order still holds"},
                "ts": MS,
                "updated_ts": MS,
            },
            description=(
                "An order's state. filled in base, filled_quote in quote, fee in what the "
                "order receives (base for a buy, quote for a sell). A cancel answers with the "
                "fields it knows (order_id, market, side, status, filled, filled_quote, fee, "
                "reason)."
            ),
        ),
        "OrderList": obj({"orders": array(ref("Order")), "next_cursor": nullable(STR)}),
        "OwnTrade": obj(
            {
                "trade_id": INT,
                "market": STR,
                "order_id": INT,
                "side": ref("Side"),
                "role": {"type": "string", "enum": ["maker", "taker"]},
                "price": DEC,
                "amount": DEC,
                "quote": DEC,
                "fee": DEC,
                "fee_asset": STR,
                "ts": MS,
            }
        ),
        "OwnTradeList": obj({"trades": array(ref("OwnTrade")), "next_cursor": nullable(STR)}),
        "LedgerEntry": obj(
            {
                "id": INT,
                "asset": STR,
                "delta_available": SDEC,
                "delta_frozen": SDEC,
                "available": DEC,
                "frozen": DEC,
                "reason": STR,
                "ref": STR,
                "seq": INT,
                "ts": MS,
            }
        ),
        "Ledger": obj({"ledger": array(ref("LedgerEntry")), "next_cursor": nullable(STR)}),
        "Pending": obj(
            {
                "command_id": STR,
                "status": {"type": "string", "const": "pending"},
            },
            description="Queued, not applied yet: poll GET /v1/commands/{id}.",
        ),
        "CommandStatus": obj(
            {
                "command_id": STR,
                "status": {"type": "string", "enum": ["applied", "rejected"]},
                "seq": {"type": "integer", "description": "the matcher's sequence number"},
                "ok": BOOL,
                "reason": nullable({"type": "string", "description": "the engine's reason"}),
                "order": nullable(ref("Order")),
            },
            {"orders": {**array(ref("Order")), "description": "cancel all: what it cancelled"}},
        ),
        # -------------------------------------------------------------- wallet
        "DepositAddress": obj(
            {
                "asset": STR,
                "chain_id": INT,
                "address": {**ADDRESS, "description": "EIP-55 checksummed"},
                "kind": {"type": "string", "enum": ["native", "erc20"]},
                "contract": nullable(ADDRESS),
                "decimals": INT,
                "confirmations": {"type": "integer", "description": "needed before crediting"},
                "min_deposit": {**DEC, "description": "smaller deposits are not credited"},
            },
            description="The caller's address on the asset's chain (one per user and chain).",
        ),
        "ChainDeposit": obj(
            {
                "id": {"type": "string", "description": "chain id : tx hash : log index"},
                "asset": STR,
                "amount": DEC,
                "tx_hash": STR,
                "log_index": {"type": "integer", "description": "-1 for a native transfer"},
                "block_number": INT,
                "confirmations": INT,
                "confirmations_required": INT,
                "status": {"type": "string", "enum": DEPOSIT_STATUSES},
                "dust": {
                    "type": "string",
                    "pattern": "^[0-9]+$",
                    "description": "token units below the asset's precision, not credited",
                },
                "address": STR,
                "created_at": DATETIME,
                "credited_at": nullable(DATETIME),
            }
        ),
        "DepositList": obj({"deposits": array(ref("ChainDeposit")), "next_cursor": nullable(STR)}),
        "NewWithdrawal": obj(
            {
                "asset": {"type": "string", "maxLength": 12},
                "amount": {**DEC, "description": "what arrives; the fee is charged on top"},
                "address": {
                    **ADDRESS,
                    "description": (
                        "EIP-55: mixed case with a valid checksum, or all lowercase or all "
                        "uppercase (no checksum); stored and shown checksummed"
                    ),
                },
            },
            closed=True,
            examples=[
                {
                    "asset": "ETH",
                    "amount": "0.05",
                    "address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                }
            ],
        ),
        "Withdrawal": obj(
            {
                "id": STR,
                "asset": STR,
                "amount": DEC,
                "fee": DEC,
                "address": STR,
                "state": {"type": "string", "enum": WITHDRAWAL_STATES},
                "tx_hash": nullable(STR),
                "error": nullable(STR),
                "created_at": DATETIME,
                "updated_at": DATETIME,
            }
        ),
        "WithdrawalList": obj(
            {"withdrawals": array(ref("Withdrawal")), "next_cursor": nullable(STR)}
        ),
        "WithdrawalPending": obj(
            {
                "withdrawal_id": STR,
                "command_id": STR,
                "state": {"type": "string", "const": "requested"},
            },
            description="Stored and queued; the matcher has not answered in time.",
        ),
        # -------------------------------------------------------------- admin
        "NewChain": obj(
            {
                "kind": {"type": "string", "enum": ["native", "erc20"]},
                "decimals": {"type": "integer", "minimum": 0, "maximum": 77},
            },
            {
                "contract": nullable({"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}),
                **{name: nullable(rule) for name, rule in CHAIN_RULES.items()},
            },
            closed=True,
            description="Decimal rules within the asset's precision; kept only when given.",
        ),
        "ChainRules": obj(
            {},
            {name: nullable(rule) for name, rule in CHAIN_RULES.items()},
            closed=True,
            description=(
                "At least one field: a value replaces the rule, null removes it (the "
                "wallet's default applies), an absent field keeps it."
            ),
            examples=[{"withdrawal_fee": "0.001", "withdrawal_daily_limit": "50"}],
        ),
        "NewAsset": obj(
            {
                "asset": {"type": "string", "pattern": ASSET_PATTERN},
                "precision": {"type": "integer", "minimum": 0, "maximum": 18},
            },
            {"chain": nullable(ref("NewChain"))},
            closed=True,
            examples=[
                {
                    "asset": "LINK",
                    "precision": 8,
                    "chain": {
                        "kind": "erc20",
                        "contract": "0x514910771AF9Ca656af840dff83E8264EcF986CA",
                        "decimals": 18,
                    },
                },
            ],
        ),
        "NewMarket": obj(
            {
                "base": {"type": "string", "maxLength": 12},
                "quote": {"type": "string", "maxLength": 12},
                "tick": DEC,
                "step": DEC,
                "min_amount": DEC,
                "min_notional": DEC,
                "maker_fee": {**DEC, "description": "a fraction below 0.1, 6 decimals at most"},
                "taker_fee": DEC,
            },
            {
                "market": nullable({"type": "string", "description": "BASE-QUOTE if given"}),
                "status": {**ref("MarketStatus"), "default": "open"},
            },
            closed=True,
            examples=[
                {
                    "base": "LINK",
                    "quote": "USDT",
                    "tick": "0.001",
                    "step": "0.01",
                    "min_amount": "0.1",
                    "min_notional": "5",
                    "maker_fee": "0.001",
                    "taker_fee": "0.002",
                },
            ],
        ),
        "MarketChange": obj(
            {},
            {
                "maker_fee": nullable(DEC),
                "taker_fee": nullable(DEC),
                "status": nullable(ref("MarketStatus")),
            },
            closed=True,
            description="At least one field; status halted stops new orders, open resumes.",
            examples=[{"maker_fee": "0.0005", "taker_fee": "0.0015"}],
        ),
        "NewDeposit": obj(
            {
                "user_id": {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID},
                "asset": {"type": "string", "maxLength": 12},
                "amount": DEC,
                "ref": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "description": "unique: a second deposit with it is refused (409)",
                },
            },
            closed=True,
            examples=[
                {
                    "user_id": "3f9c2a1e8b7d4c6f9a0b1c2d3e4f5a6b",
                    "asset": "USDT",
                    "amount": "1000",
                    "ref": "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060:0",
                },
            ],
        ),
        "DepositCredited": obj(
            {
                "command_id": STR,
                "seq": INT,
                "user_id": STR,
                "asset": STR,
                "amount": DEC,
                "ref": STR,
            }
        ),
        "AdminUser": obj(
            {
                "user_id": STR,
                "email": nullable(STR),
                "role": {"type": "string", "enum": ["user", "admin"]},
                "created_at": nullable({"type": "string", "format": "date-time"}),
            }
        ),
        "AuditAsset": obj(
            {
                "balances": {**DEC, "description": "sum of all accounts, fees included"},
                "fees": DEC,
                "deposits": DEC,
                "withdrawals": {**DEC, "description": "settled withdrawals"},
                "ok": BOOL,
            }
        ),
        "AuditMismatch": obj(
            {
                "kind": {"type": "string", "enum": ["conservation", "negative_balance", "frozen"]},
                "asset": STR,
                "message": STR,
            },
            {
                "user_id": STR,
                "actual": SDEC,
                "expected": SDEC,
                "available": SDEC,
                "frozen": SDEC,
            },
        ),
        "Audit": obj(
            {
                "ok": BOOL,
                "checked_at": {"type": "string", "format": "date-time"},
                "seq": {"type": "integer", "description": "the last command the check saw"},
                "assets": {"type": "object", "additionalProperties": ref("AuditAsset")},
                "mismatches": array(ref("AuditMismatch")),
            }
        ),
    }


# ------------------------------------------------------------------------------------------
# operations
# ------------------------------------------------------------------------------------------

PUBLIC: Final[list[JSON]] = []
USER: Final[list[JSON]] = [
    {"bearerAuth": []},
    {"apiKey": [], "apiTimestamp": [], "apiSignature": []},
]
SESSION: Final[list[JSON]] = [{"bearerAuth": []}]
ADMIN: Final[list[JSON]] = [{"bearerAuth": []}]

_ERRORS: Final = {
    400: ("BadRequest", "The request does not fit the rules (the code names the rule)."),
    401: (
        "Unauthorized",
        "No valid token or API-key signature (invalid_token, token_expired; session_revoked: "
        "the token's session ended: a logout, a password or role change), or a sensitive "
        "action without a recent proof of who the caller is (fresh_auth_required: POST "
        "/v1/auth/reauth, then retry with the new token).",
    ),
    403: ("Forbidden", "Authenticated, but not allowed (scope, role)."),
    404: ("NotFound", "No such thing, or someone else's."),
    409: ("Conflict", "Clashes with the current state (duplicates, a halted market)."),
    413: ("PayloadTooLarge", "The body is over the size limit (API_MAX_BODY_BYTES, 64 KiB)."),
    415: ("UnsupportedMediaType", "The body must be application/json."),
    422: (
        "Unprocessable",
        "Well formed, but refused now (insufficient_funds, would_take, fok_not_filled, "
        "daily_limit_exceeded, idempotency_key_reused).",
    ),
    429: ("TooManyRequests", "Over a rate limit; retry after Retry-After seconds."),
    503: (
        "Unavailable",
        "A backing service (the database, market data, the queue, an identity provider's "
        "keys) is unavailable; nothing was done. Retry.",
    ),
}


def _responses() -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for status, (name, description) in _ERRORS.items():
        response: JSON = {
            "description": description,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        if status == 429:
            response["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}
            }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "schema": {"type": "string"},
                    "description": (
                        'Bearer realm="api"; for fresh_auth_required also '
                        'error="insufficient_user_authentication" and max_age (RFC 9470)'
                    ),
                }
            }
        out[name] = response
    return out


def ok(description: str, schema: JSON | None = None, headers: JSON | None = None) -> JSON:
    out: JSON = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    if headers:
        out["headers"] = headers
    return out


def err(*statuses: int) -> dict[str, JSON]:
    return {str(s): {"$ref": f"#/components/responses/{_ERRORS[s][0]}"} for s in sorted(statuses)}


PENDING: Final[JSON] = ok(
    "Queued; the matcher has not answered in time. Poll GET /v1/commands/{id}.",
    ref("Pending"),
    {"Location": {"schema": {"type": "string"}, "description": "/v1/commands/{id}"}},
)


def path_param(
    name: str, schema: JSON | None = None, description: str | None = None, example: str = ""
) -> JSON:
    out: JSON = {"name": name, "in": "path", "required": True, "schema": schema or STR}
    if description:
        out["description"] = description
    if example:
        out["examples"] = {"example": {"value": example}}
    return out


def query(name: str, schema: JSON, description: str | None = None, required: bool = False) -> JSON:
    out: JSON = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        out["description"] = description
    return out


MARKET_PARAM: Final = path_param(
    "market", {"type": "string", "pattern": MARKET_PATTERN}, example="ETH-USDT"
)
CLIENT_ORDER_ID: Final = path_param("client_order_id", example="my-order-1")
LIMIT: Final = {"$ref": "#/components/parameters/Limit"}
CURSOR: Final = {"$ref": "#/components/parameters/Cursor"}
IDEMPOTENCY: Final = {"$ref": "#/components/parameters/IdempotencyKey"}


def op(
    function: str,
    operation_id: str,
    summary: str,
    *,
    tag: str,
    security: list[JSON],
    responses: dict[str, JSON],
    parameters: list[JSON] | None = None,
    body: str | None = None,
    description: str | None = None,
) -> JSON:
    out: JSON = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "x-function": function,
        "security": security,
    }
    if description:
        out["description"] = description
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
        responses = {**responses, **err(413)}  # any body may be too large (shared.http)
    out["responses"] = dict(sorted(responses.items()))
    return out


def _paths() -> dict[str, dict[str, JSON]]:
    auth_errors = err(400, 415, 429)
    # A token or API key: 503 when an OIDC issuer's keys cannot be fetched (shared.auth).
    user_errors = err(401, 403, 429, 503)
    # Market data is read from Redis (and Postgres when Redis lacks a definition): 503 when
    # they cannot be read (functions/queries).
    public = err(400, 503)
    return {
        # ------------------------------------------------------------ auth
        "/v1/auth/signup": {
            "post": op(
                "auth", "signup", "Create an account", tag="auth", security=PUBLIC,
                body="Credentials",
                responses={"201": ok("Created", ref("SignedUp")), **auth_errors, **err(409)},
            )
        },
        "/v1/auth/login": {
            "post": op(
                "auth", "login", "Log in: an access token and a refresh token", tag="auth",
                security=PUBLIC, body="Credentials",
                description=(
                    "Wrong passwords are limited per (email, client address) and per client "
                    "address (AUTH_FAILURES_*): a client that keeps failing gets 429 with "
                    "Retry-After; a client that has not been failing is never refused. The "
                    "access token carries sid (its session), epoch and auth_time (now)."
                ),
                responses={"200": ok("Tokens", ref("TokenPair")), **auth_errors, **err(401)},
            )
        },
        "/v1/auth/refresh": {
            "post": op(
                "auth", "refresh", "Trade a refresh token for a new pair (it is spent)",
                tag="auth", security=PUBLIC, body="RefreshRequest",
                responses={"200": ok("Tokens", ref("TokenPair")), **err(400, 401, 415)},
            )
        },
        "/v1/auth/logout": {
            "post": op(
                "auth", "logout", "End the session of a refresh token", tag="auth",
                security=PUBLIC, body="RefreshRequest",
                description=(
                    "Its refresh tokens and its access tokens stop working at once (401 "
                    "session_revoked), on the HTTP API and the live feed."
                ),
                responses={"204": ok("Logged out"), **err(400, 401, 415, 503)},
            )
        },
        "/v1/auth/reauth": {
            "post": op(
                "auth", "reauth", "Prove who you are again: a fresh access token", tag="auth",
                security=SESSION, body="Reauth",
                description=(
                    "The password again, for the actions that need a proof from the last "
                    "few minutes (FRESH_AUTH_MAX_AGE_S, 5 by default): creating an API key "
                    "with trade or withdraw, a withdrawal with a token, a role change. "
                    "Answers an access token of the same session whose auth_time is now; "
                    "later refreshes of the session keep that auth_time. Wrong passwords "
                    "count as login failures do (429). 403 for an API key, or for an "
                    "external identity (external_identity: prove it at the identity "
                    "provider)."
                ),
                responses={
                    "200": ok("A fresh token", ref("FreshToken")),
                    **err(400, 401, 403, 415, 429, 503),
                },
            )
        },
        "/v1/auth/password": {
            "post": op(
                "auth", "changePassword", "Change the password; every session ends",
                tag="auth", security=SESSION, body="PasswordChange",
                description=(
                    "The current password is the proof (wrong: 401 invalid_credentials, "
                    "counted as login failures: 429). Every session of the user ends at once "
                    "(this one too: its tokens answer 401 session_revoked); the answer is a "
                    "new session's pair. 400 weak_password for a short new one."
                ),
                responses={
                    "200": ok("A new session", ref("TokenPair")),
                    **err(400, 401, 403, 415, 429, 503),
                },
            )
        },
        "/v1/auth/me": {
            "get": op(
                "auth", "me", "Who is calling", tag="auth", security=USER,
                responses={"200": ok("The caller", ref("Me")), **err(401, 503)},
            )
        },
        "/v1/api-keys": {
            "post": op(
                "auth", "createApiKey", "Create an API key (its secret is shown once)",
                tag="api-keys", security=SESSION, body="NewApiKey",
                description=(
                    "A key with the trade or withdraw scope outlives any token: making one "
                    "needs a recent proof (401 fresh_auth_required: POST /v1/auth/reauth)."
                ),
                responses={
                    "201": ok("Created", ref("ApiKeyCreated")),
                    **err(400, 401, 403, 409, 415, 503),
                },
            ),
            "get": op(
                "auth", "listApiKeys", "The caller's API keys", tag="api-keys",
                security=SESSION,
                responses={"200": ok("Keys", ref("ApiKeyList")), **err(401, 403, 503)},
            ),
        },
        "/v1/api-keys/{id}": {
            "delete": op(
                "auth", "deleteApiKey", "Revoke an API key", tag="api-keys", security=SESSION,
                parameters=[path_param("id", example="ak_0123456789abcdef01234567")],
                responses={"204": ok("Revoked"), **err(401, 403, 404, 503)},
            )
        },
        # ------------------------------------------------------------ market data
        "/v1/time": {
            "get": op(
                "queries", "serverTime", "The server's clock", tag="market data",
                security=PUBLIC, responses={"200": ok("Now", ref("ServerTime")), **public},
            )
        },
        "/v1/assets": {
            "get": op(
                "queries", "listAssets", "Assets, with their chain details", tag="market data",
                security=PUBLIC, responses={"200": ok("Assets", ref("AssetList")), **public},
            )
        },
        "/v1/markets": {
            "get": op(
                "queries", "listMarkets", "Markets", tag="market data", security=PUBLIC,
                responses={"200": ok("Markets", ref("MarketList")), **public},
            )
        },
        "/v1/markets/{market}": {
            "get": op(
                "queries", "getMarket", "One market", tag="market data", security=PUBLIC,
                parameters=[MARKET_PARAM],
                responses={"200": ok("The market", ref("Market")), **public, **err(404)},
            )
        },
        "/v1/markets/{market}/depth": {
            "get": op(
                "queries", "getDepth", "The order book's top levels", tag="market data",
                security=PUBLIC, parameters=[MARKET_PARAM, LIMIT],
                responses={"200": ok("Depth", ref("Depth")), **public, **err(404)},
            )
        },
        "/v1/markets/{market}/ticker": {
            "get": op(
                "queries", "getTicker", "The 24 h ticker", tag="market data", security=PUBLIC,
                parameters=[MARKET_PARAM],
                responses={"200": ok("Ticker", ref("Ticker")), **public, **err(404)},
            )
        },
        "/v1/tickers": {
            "get": op(
                "queries", "listTickers", "Every market's 24 h ticker", tag="market data",
                security=PUBLIC,
                responses={"200": ok("Tickers", ref("TickerList")), **public},
            )
        },
        "/v1/markets/{market}/trades": {
            "get": op(
                "queries", "listPublicTrades", "Recent trades, newest first",
                tag="market data", security=PUBLIC, parameters=[MARKET_PARAM, LIMIT],
                responses={"200": ok("Trades", ref("PublicTradeList")), **public, **err(404)},
            )
        },
        "/v1/markets/{market}/klines": {
            "get": op(
                "queries", "listKlines", "OHLCV candles, oldest first", tag="market data",
                security=PUBLIC,
                parameters=[
                    MARKET_PARAM,
                    query(
                        "interval",
                        {"type": "string", "enum": ["1m", "5m", "15m", "1h", "4h", "1d"]},
                        required=True,
                    ),
                    query("start", TIME_MS, "open time, ms"),
                    query("end", TIME_MS, "open time, ms"),
                    LIMIT,
                ],
                responses={"200": ok("Candles", ref("KlineList")), **public, **err(404)},
            )
        },
        # ------------------------------------------------------------ account
        "/v1/balances": {
            "get": op(
                "queries", "getBalances", "The caller's balances", tag="account",
                security=USER, description="Needs the read scope.",
                responses={"200": ok("Balances", ref("Balances")), **err(400), **user_errors},
            )
        },
        "/v1/orders": {
            "get": op(
                "queries", "listOrders", "The caller's orders, newest first", tag="orders",
                security=USER,
                parameters=[
                    query("market", STR),
                    query("status", {"type": "string", "enum": ["open", "closed"]}),
                    LIMIT,
                    CURSOR,
                ],
                responses={"200": ok("A page", ref("OrderList")), **err(400), **user_errors},
            ),
            "post": op(
                "orders", "placeOrder", "Place an order", tag="orders", security=USER,
                parameters=[IDEMPOTENCY], body="PlaceOrder",
                description=(
                    "Needs the trade scope. Checked against the market before anything is "
                    "queued (codes: unknown_market, market_halted, bad_price, bad_tick, "
                    "bad_amount, bad_step, below_min_amount, below_min_notional, "
                    "invalid_order); then the matcher's verdict within a short wait: 201 "
                    "with the order, or 202 while it is pending. The engine's refusals: "
                    "insufficient_funds, would_take, fok_not_filled (422), "
                    "duplicate_client_order_id (409)."
                ),
                responses={
                    "201": ok(
                        "Accepted by the matcher: the order's state",
                        ref("Order"),
                        {
                            "Location": {"schema": STR, "description": "/v1/orders/{order_id}"},
                            "X-Command-Id": {"schema": STR},
                        },
                    ),
                    "202": PENDING,
                    **err(400, 409, 415, 422, 503),
                    **user_errors,
                },
            ),
            "delete": op(
                "orders", "cancelAllOrders", "Cancel all the caller's open orders",
                tag="orders", security=USER,
                parameters=[query("market", STR, "only this market"), IDEMPOTENCY],
                responses={
                    "200": ok("What was cancelled", obj({"orders": array(ref("Order"))})),
                    "202": PENDING,
                    **err(400, 422, 503),
                    **user_errors,
                },
            ),
        },
        "/v1/orders/{order_id}": {
            "get": op(
                "queries", "getOrder", "One of the caller's orders", tag="orders",
                security=USER, parameters=[path_param("order_id", example="1")],
                responses={"200": ok("The order", ref("Order")), **err(400, 404), **user_errors},
            ),
            "delete": op(
                "orders", "cancelOrder", "Cancel one of the caller's orders", tag="orders",
                security=USER, parameters=[path_param("order_id", example="1"), IDEMPOTENCY],
                responses={
                    "200": ok("The cancelled order", ref("Order")),
                    "202": PENDING,
                    **err(400, 404, 422, 503),
                    **user_errors,
                },
            ),
        },
        "/v1/orders/by-client-id/{client_order_id}": {
            "get": op(
                "queries", "getOrderByClientId", "The caller's newest order with a client id",
                tag="orders", security=USER, parameters=[CLIENT_ORDER_ID],
                responses={"200": ok("The order", ref("Order")), **err(400, 404), **user_errors},
            ),
            "delete": op(
                "orders", "cancelOrderByClientId", "Cancel the open order with a client id",
                tag="orders", security=USER,
                parameters=[CLIENT_ORDER_ID, IDEMPOTENCY],
                responses={
                    "200": ok("The cancelled order", ref("Order")),
                    "202": PENDING,
                    **err(400, 404, 422, 503),
                    **user_errors,
                },
            ),
        },
        "/v1/trades": {
            "get": op(
                "queries", "listOwnTrades", "The caller's fills, newest first", tag="account",
                security=USER, parameters=[query("market", STR), LIMIT, CURSOR],
                responses={"200": ok("A page", ref("OwnTradeList")), **err(400), **user_errors},
            )
        },
        "/v1/ledger": {
            "get": op(
                "queries", "getLedger", "The caller's balance history, newest first",
                tag="account", security=USER, parameters=[query("asset", STR), LIMIT, CURSOR],
                responses={"200": ok("A page", ref("Ledger")), **err(400), **user_errors},
            )
        },
        "/v1/commands/{id}": {
            "get": op(
                "orders", "getCommand", "The fate of a command the caller sent",
                tag="orders", security=USER,
                parameters=[path_param("id", description="the command id of a 202 answer")],
                responses={
                    "200": ok("Applied or rejected", ref("CommandStatus")),
                    "202": PENDING,
                    **err(404, 503),
                    **user_errors,
                },
            )
        },
        # ------------------------------------------------------------ wallet
        "/v1/deposits/address": {
            "get": op(
                "wallet", "getDepositAddress", "The caller's deposit address for an asset",
                tag="wallet", security=USER,
                parameters=[
                    query("asset", {"type": "string", "pattern": ASSET_PATTERN}, required=True)
                ],
                description=(
                    "Needs the read scope. Made on the first call, the same afterwards; one "
                    "per user and chain (ETH and its tokens share it). unknown_asset, "
                    "no_chain (the asset is not on a chain): 400."
                ),
                responses={
                    "200": ok("The address", ref("DepositAddress")),
                    **err(400),
                    **user_errors,
                },
            )
        },
        "/v1/deposits": {
            "get": op(
                "wallet", "listDeposits", "The caller's chain deposits, newest first",
                tag="wallet", security=USER,
                parameters=[query("asset", STR), LIMIT, CURSOR],
                description=(
                    "Needs the read scope. Every transfer seen to the caller's address, "
                    "pending ones with their confirmations so far."
                ),
                responses={"200": ok("A page", ref("DepositList")), **err(400), **user_errors},
            )
        },
        "/v1/withdrawals": {
            "get": op(
                "wallet", "listWithdrawals", "The caller's withdrawals, newest first",
                tag="wallet", security=USER,
                parameters=[query("asset", STR), LIMIT, CURSOR],
                responses={
                    "200": ok("A page", ref("WithdrawalList")), **err(400), **user_errors,
                },
            ),
            "post": op(
                "wallet", "requestWithdrawal", "Withdraw to an address on the chain",
                tag="wallet", security=USER, parameters=[IDEMPOTENCY], body="NewWithdrawal",
                description=(
                    "Needs the withdraw scope; with a token also a recent proof (401 "
                    "fresh_auth_required: POST /v1/auth/reauth); an API key with the withdraw "
                    "scope is its own proof. Checked before anything is stored (400: "
                    "unknown_asset, no_chain, bad_amount, below_min_withdrawal, "
                    "invalid_address, invalid_checksum); the "
                    "asset's daily limit per user (422 daily_limit_exceeded). The matcher "
                    "holds amount + fee (422 insufficient_funds); 202 when it has not "
                    "answered in time. A retry with the same Idempotency-Key answers with "
                    "the same withdrawal (409 idempotency_key_in_use while the first is "
                    "still being stored)."
                ),
                responses={
                    "201": ok(
                        "Held by the matcher; the sender signs and sends it",
                        ref("Withdrawal"),
                        {
                            "Location": {"schema": STR, "description": "/v1/withdrawals/{id}"},
                            "X-Command-Id": {"schema": STR},
                        },
                    ),
                    "202": ok(
                        "Stored and queued; the matcher has not answered in time",
                        ref("WithdrawalPending"),
                        {"Location": {"schema": STR, "description": "/v1/withdrawals/{id}"}},
                    ),
                    **err(400, 409, 415, 422, 503),
                    **user_errors,
                },
            ),
        },
        "/v1/withdrawals/{id}": {
            "get": op(
                "wallet", "getWithdrawal", "One of the caller's withdrawals", tag="wallet",
                security=USER,
                parameters=[path_param("id", example="wd_0123456789abcdef0123456789abcdef")],
                responses={
                    "200": ok("The withdrawal", ref("Withdrawal")),
                    **err(400, 404),
                    **user_errors,
                },
            )
        },
        # ------------------------------------------------------------ admin
        "/v1/admin/assets": {
            "post": op(
                "admin", "createAsset", "List an asset", tag="admin", security=ADMIN,
                body="NewAsset",
                responses={
                    "201": ok("Listed", ref("Asset")),
                    "202": PENDING,
                    **err(400, 401, 403, 409, 415, 503),
                },
            )
        },
        "/v1/admin/assets/{asset}/chain": {
            "patch": op(
                "admin", "updateAssetChain", "Change an asset's deposit and withdrawal rules",
                tag="admin", security=ADMIN,
                parameters=[
                    path_param("asset", {"type": "string", "pattern": ASSET_PATTERN}, example="ETH")
                ],
                body="ChainRules",
                responses={
                    "200": ok("The asset now", ref("Asset")),
                    **err(400, 401, 403, 404, 415, 503),
                },
            )
        },
        "/v1/admin/markets": {
            "post": op(
                "admin", "createMarket", "Open a market", tag="admin", security=ADMIN,
                body="NewMarket",
                responses={
                    "201": ok("Created", ref("Market")),
                    "202": PENDING,
                    **err(400, 401, 403, 409, 415, 503),
                },
            )
        },
        "/v1/admin/markets/{market}": {
            "patch": op(
                "admin", "updateMarket", "Change a market's fees, halt or resume it",
                tag="admin", security=ADMIN, parameters=[MARKET_PARAM], body="MarketChange",
                responses={
                    "200": ok("The market now", ref("Market")),
                    "202": PENDING,
                    **err(400, 401, 403, 404, 415, 503),
                },
            )
        },
        "/v1/admin/deposits": {
            "post": op(
                "admin", "creditDeposit", "Credit a user (until the wallet watcher does)",
                tag="admin", security=ADMIN, body="NewDeposit",
                responses={
                    "201": ok("Credited", ref("DepositCredited")),
                    "202": PENDING,
                    **err(400, 401, 403, 409, 415, 503),
                },
            )
        },
        "/v1/admin/users/{id_or_email}": {
            "get": op(
                "admin", "findUser", "A user by id or email", tag="admin", security=ADMIN,
                parameters=[path_param("id_or_email", example="alice@example.com")],
                responses={"200": ok("The user", ref("AdminUser")), **err(401, 403, 404, 503)},
            ),
            "patch": op(
                "admin", "changeRole", "Give a user a role", tag="admin", security=ADMIN,
                parameters=[path_param("id_or_email", example="alice@example.com")],
                body="RoleChange",
                description=(
                    "A change ends every session of the user at once (their tokens name the "
                    "old role). Needs the admin's recent proof (401 fresh_auth_required)."
                ),
                responses={
                    "200": ok("The user", ref("AdminUser")),
                    **err(400, 401, 403, 404, 415, 503),
                },
            ),
        },
        "/v1/admin/audit": {
            "get": op(
                "admin", "audit", "Run the conservation check over the database", tag="admin",
                security=ADMIN,
                description=(
                    "Per asset: sum of all balances (fees included) == deposits - settled "
                    "withdrawals; no negative balance; every account's frozen == its open "
                    "orders' holds + its held withdrawals. ok is false when anything differs."
                ),
                responses={"200": ok("The report", ref("Audit")), **err(401, 403, 503)},
            )
        },
        # ------------------------------------------------------------ this document
        "/v1/openapi.json": {
            "get": op(
                "docs", "openapi", "This document", tag="meta", security=PUBLIC,
                responses={"200": ok("OpenAPI 3.1", {"type": "object"})},
            )
        },
    }  # fmt: skip


_DESCRIPTION: Final = """\
The public API of the exchange: JSON over HTTPS under one base URL.

- **Money** is always an exact decimal string (`"0.15"`), never a JSON number; a number where a
  decimal string belongs is refused (400). Amounts are in the market's base asset, prices and
  quote values in its quote asset, each with at most the asset's precision.
- **Errors** are `{"error": {"code", "message"}}` with a fitting status; `code` is stable.
  Someone else's ids answer 404, as unknown ones do.
- **Authentication**: `Authorization: Bearer <access token>` (from `/v1/auth/login`), or an API
  key: `X-API-Key`, `X-API-Timestamp` (ms since the epoch) and `X-API-Signature`, the lowercase
  hex HMAC-SHA256 with the key's secret of `timestamp + METHOD + path + ("?" + query) + body`.
  A signature is accepted once and within a few seconds of the server's clock. API keys carry
  scopes: `read`, `trade`, `withdraw`. Admin routes need an admin's access token.
- **Sessions end at once**: a logout ends its session's tokens, a password or role change all of
  the user's (401 `session_revoked`). **Sensitive actions** (an API key with `trade` or
  `withdraw`, a withdrawal with a token, a role change) need a proof of who you are from the
  last few minutes: the token's `auth_time` (login, or `POST /v1/auth/reauth` with the
  password); else 401 `fresh_auth_required`.
- **Orders are asynchronous underneath**: a write answers 201/200 with the matcher's verdict
  when it comes within a short wait, else 202 with a `command_id` to poll at
  `/v1/commands/{id}`. An `Idempotency-Key` header makes a retry return the first attempt's
  result instead of placing a second order.
- Every response carries `X-Request-Id`. Rate limits answer 429 with `Retry-After`.
"""


@cache
def document() -> JSON:
    """The document (built once; treat it as read-only)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Exchange API",
            "version": "1.0.0",
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "the local exchange"}],
        "tags": [
            {"name": "auth", "description": "accounts and sessions"},
            {"name": "api-keys", "description": "scoped keys for programs"},
            {"name": "market data", "description": "public, from the matcher's market data"},
            {"name": "account", "description": "the caller's balances and history"},
            {"name": "orders", "description": "placing, cancelling, following orders"},
            {"name": "wallet", "description": "deposit addresses, deposits, withdrawals"},
            {"name": "admin", "description": "operators only"},
            {"name": "meta", "description": "this document"},
        ],
        "security": USER,
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "parameters": {
                "Limit": query("limit", {"type": "integer", "minimum": 1}, "page size"),
                "Cursor": query(
                    "cursor",
                    {
                        "type": "string",
                        "maxLength": 512,
                        "pattern": "^[A-Za-z0-9_-]+[.][A-Za-z0-9_-]{22}$",
                    },
                    "next_cursor of the previous page: opaque and signed, valid only for the "
                    "listing and the user it was made for (else 400 invalid_cursor)",
                ),
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                    "description": (
                        "Retrying with the same key and the same request answers with the "
                        "first attempt's command (kept 24 h); another request with the key: "
                        "422 idempotency_key_reused."
                    ),
                },
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "An access token: EdDSA, claims iss aud sub role iat exp, sid (its "
                        "session), epoch (the user's session epoch at issue) and auth_time "
                        "(when the password was last given; absent when unknown)."
                    ),
                },
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "apiTimestamp": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Timestamp",
                    "description": "milliseconds since the epoch; part of the signature",
                },
                "apiSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Signature",
                    "description": "hex HMAC-SHA256 of timestamp + METHOD + path[?query] + body",
                },
            },
        },
    }
