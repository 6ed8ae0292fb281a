"""The named schemas of the API's answers, for the OpenAPI document (api.openapi).

Request bodies are not here: their schemas come from their msgspec structs, declared with
the routes. These are the answers' shapes, written by hand until each has a struct of its
own; a route names one in ``ok("...", "Order")``.
"""

from __future__ import annotations

from api.openapi import (
    ADDRESS,
    ASSET_PATTERN,
    BOOL,
    CHAIN_RULES,
    DATETIME,
    DEC,
    DECIMAL_PATTERN,
    DEPOSIT_STATUSES,
    INT,
    JSON,
    MARKET_PATTERN,
    MS,
    SDEC,
    SIGNED_DECIMAL_PATTERN,
    STR,
    WITHDRAWAL_STATES,
    array,
    nullable,
    obj,
    ref,
)


def schemas() -> dict[str, JSON]:
    """The named schemas of answers (and the conventions), by name."""
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
        "SignedUp": obj({"user_id": STR}),
        "TokenPair": obj(
            {
                "access_token": {"type": "string", "description": "a JWT (EdDSA)"},
                "token_type": {"type": "string", "const": "Bearer"},
                "expires_in": {"type": "integer", "description": "seconds"},
            },
            {
                "refresh_token": {
                    "type": "string",
                    "description": (
                        "absent when the request asked for the refresh_token cookie "
                        "(refresh_cookie, or a refresh that presented the cookie)"
                    ),
                }
            },
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
                "two_factor": {"type": "boolean", "description": "two-factor authentication on"},
            }
        ),
        "TwoFactorState": obj(
            {
                "enabled": BOOL,
                "pending": {"type": "boolean", "description": "enrolled, not confirmed yet"},
                "recovery_codes_left": INT,
            }
        ),
        "TwoFactorEnrolment": obj(
            {
                "secret": {"type": "string", "description": "base32, for typing into an app"},
                "otpauth_uri": {
                    "type": "string",
                    "description": "otpauth://totp/... (RFC 6238, 6 digits, 30 s): show as a QR",
                },
            }
        ),
        "TwoFactorRecoveryCodes": obj(
            {
                "recovery_codes": {
                    **array(STR),
                    "description": "shown once, never again; each works once instead of a code",
                }
            }
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
                        "self_trade_prevented, insufficient_funds, cancelled_by_user, expired, "
                        "oco (the other order of its list traded, triggered or was cancelled)",
                    }
                ),
                "fee_asset": STR,
                "frozen": {**DEC, "description": "what the order still holds"},
                "ts": MS,
                "updated_ts": MS,
                "stop": {
                    "type": "string",
                    "enum": ["stop_loss", "take_profit"],
                    "description": "a stop order's kind (only on stop orders)",
                },
                "stop_price": {**DEC, "description": "only on stop orders"},
                "expires_at": {**MS, "description": "good till date (only when it has one)"},
                "list_id": {**INT, "description": "its OCO list (only on a list's orders)"},
                "triggered_ts": {**MS, "description": "when its stop triggered (queries)"},
            },
            description=(
                "An order's state. filled in base, filled_quote in quote, fee in what the "
                "order receives (base for a buy, quote for a sell). A cancel answers with the "
                "fields it knows (order_id, market, side, status, filled, filled_quote, fee, "
                "reason)."
            ),
        ),
        "OrderList": obj({"orders": array(ref("Order")), "next_cursor": nullable(STR)}),
        "OcoList": obj(
            {
                "list_id": INT,
                "market": STR,
                "side": ref("Side"),
                "status": {"type": "string", "enum": ["open", "done"]},
                "limit_order_id": INT,
                "stop_order_id": INT,
                "reason": nullable(
                    {
                        "type": "string",
                        "description": "why it is done: traded, triggered, or a cancel's reason",
                    }
                ),
            },
            description="An OCO list: a limit order and a stop-loss order; one cancels the other.",
        ),
        "OcoLists": obj({"lists": array(ref("OcoList")), "next_cursor": nullable(STR)}),
        "AmendedOrder": obj(
            {
                "order_id": INT,
                "market": STR,
                "side": ref("Side"),
                "price": DEC,
                "amount": {**DEC, "description": "the new total amount"},
                "filled": DEC,
                "frozen": DEC,
                "kept_priority": BOOL,
            },
            description="An order after an amend; kept_priority: it kept its place in the queue.",
        ),
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
                "status": {"type": "string", "enum": ["applied", "rejected", "lost"]},
                "seq": nullable(
                    {"type": "integer", "description": "the matcher's sequence number"}
                ),
                "ok": BOOL,
                "reason": nullable(
                    {
                        "type": "string",
                        "description": "the engine's reason; no_longer_queued when lost",
                    }
                ),
                "order": nullable(ref("Order")),
            },
            {
                "orders": {**array(ref("Order")), "description": "cancel all: what it cancelled"},
                "message": {**STR, "description": "lost: what happened"},
            },
            description=(
                "applied or rejected by the matcher; lost: accepted, but neither applied nor "
                "queued any more, so it never will be (only locally, where the Pub/Sub "
                "emulator forgets messages when it stops; docs/decisions/0008)."
            ),
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
        "Withdrawal": obj(
            {
                "id": STR,
                "asset": STR,
                "amount": DEC,
                "fee": DEC,
                "address": STR,
                "state": {
                    "type": "string",
                    "enum": WITHDRAWAL_STATES,
                    "description": (
                        "confirmed: mined with the asset's confirmations and settled in the"
                        " books (balances are final); broadcast until then"
                    ),
                },
                "tx_hash": nullable(STR),
                "error": nullable(STR),
                "created_at": DATETIME,
                "updated_at": DATETIME,
            }
        ),
        "WithdrawalAddress": obj(
            {
                "address": ADDRESS,
                "label": STR,
                "created_at": DATETIME,
                "usable_from": {
                    **DATETIME,
                    "description": "from when it may receive withdrawals (allow-list on)",
                },
                "usable": BOOL,
            }
        ),
        "WithdrawalAllowListSetting": obj(
            {
                "on": BOOL,
                "off_from": nullable(
                    {**DATETIME, "description": "a switch-off asked for takes effect then"}
                ),
                "enforced": {
                    "type": "boolean",
                    "description": "only usable saved addresses may receive now",
                },
            }
        ),
        "WithdrawalAllowList": obj(
            {
                "allow_list": ref("WithdrawalAllowListSetting"),
                "addresses": array(ref("WithdrawalAddress")),
            }
        ),
        "WithdrawalList": obj(
            {"withdrawals": array(ref("Withdrawal")), "next_cursor": nullable(STR)}
        ),
        "WithdrawalPending": obj(
            {
                "withdrawal_id": STR,
                "command_id": STR,
                "state": {"type": "string", "enum": ["requested", "review"]},
            },
            description="Stored and queued; the matcher has not answered in time.",
        ),
        # -------------------------------------------------------------- admin
        "ReviewedWithdrawal": obj(
            {
                "id": STR,
                "user_id": STR,
                "asset": STR,
                "amount": DEC,
                "fee": DEC,
                "address": STR,
                "state": {"type": "string", "enum": WITHDRAWAL_STATES},
                "error": nullable(STR),
                "held": {
                    "type": "boolean",
                    "description": "the matcher holds amount + fee (approving needs it)",
                },
                "reviewed_by": nullable(STR),
                "reviewed_at": nullable(DATETIME),
                "created_at": DATETIME,
            }
        ),
        "ReviewedWithdrawalList": obj({"withdrawals": array(ref("ReviewedWithdrawal"))}),
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
                "disabled": {**BOOL, "description": "login refused, sessions ended"},
                "balances": ref("Balances"),
                "open_orders": array(ref("Order")),
                "deposits": array(obj({"ref": STR, "asset": STR, "amount": DEC, "ts": MS})),
                "withdrawals": array(
                    obj(
                        {
                            "id": STR,
                            "asset": STR,
                            "amount": DEC,
                            "fee": DEC,
                            "address": STR,
                            "state": STR,
                            "error": nullable(STR),
                            "tx_hash": nullable(STR),
                            "created_at": nullable({"type": "string", "format": "date-time"}),
                        }
                    )
                ),
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
        "AuditRun": obj(
            {
                "id": INT,
                "kind": {"type": "string", "enum": ["books", "chain"]},
                "ran_at": DATETIME,
                "ok": BOOL,
                "differences": INT,
                "seq": nullable(INT),
                "report": {"type": "object", "description": "the audit's report as it ran"},
            }
        ),
        "AuditRuns": obj({"audits": array(ref("AuditRun"))}),
        "AdminAction": obj(
            {
                "id": INT,
                "at": DATETIME,
                "admin_id": STR,
                "action": {"type": "string", "description": "METHOD and path"},
                "target": nullable(STR),
                "client_ip": STR,
                "request_id": STR,
                "details": {"description": "the request's body, secrets removed"},
            }
        ),
        "AdminActions": obj({"actions": array(ref("AdminAction"))}),
        "DeadLetter": obj(
            {
                "id": {"type": "string", "description": "its message id on the dead-letter topic"},
                "received_at": DATETIME,
                "published_at": nullable(DATETIME),
                "ordering_key": STR,
                "command_id": nullable(STR),
                "command_type": nullable(STR),
                "producer": nullable(STR),
                "reason": {
                    "type": "string",
                    "description": (
                        "undecodable, unsigned, unknown_producer, bad_signature, "
                        "forbidden_command (the matcher refused it), delivery_attempts (Pub/Sub "
                        "gave up on it), unknown"
                    ),
                },
                "error": nullable(STR),
                "delivery_count": nullable(INT),
                "state": {"type": "string", "enum": ["held", "redriving", "redriven", "discarded"]},
                "decided_by": nullable(STR),
                "decided_at": nullable(DATETIME),
                "redrive_message_id": nullable(STR),
                "redrivable": BOOL,
                "preview": {
                    "type": "string",
                    "description": "the command's text, secret-looking fields removed, shortened",
                },
            }
        ),
        "DeadLetters": obj({"dead_letters": array(ref("DeadLetter"))}),
        "AdminUserSession": obj(
            {
                "id": {"type": "string", "description": "the session (the tokens' sid)"},
                "created_at": nullable(DATETIME),
                "last_password_at": nullable(DATETIME),
                "refresh_expires_at": DATETIME,
            }
        ),
        "AdminUserSessions": obj({"user_id": STR, "sessions": array(ref("AdminUserSession"))}),
    }
