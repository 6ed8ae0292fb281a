-- The matcher's durable state. Money columns are NUMERIC(78,0): integer units of the asset
-- (see shared/money.py), exact and wide enough for any uint256 token amount.

-- The operation log: every command in the order the matcher applied it. Replaying it from a
-- snapshot regenerates the events too (the engine is deterministic), so they are not stored.
CREATE TABLE oplog (
    seq         BIGINT PRIMARY KEY,
    command_id  TEXT NOT NULL UNIQUE,
    ts          BIGINT NOT NULL,              -- ms since the epoch, stamped by the matcher
    command     TEXT NOT NULL,                -- JSON (shared/messages.py); text: cheapest to write
    ok          BOOLEAN NOT NULL,
    reason      TEXT,
    order_id    BIGINT                        -- the order a place_order created
);

CREATE TABLE assets (
    asset       TEXT PRIMARY KEY,
    precision   INT NOT NULL CHECK (precision BETWEEN 0 AND 18),
    seq         BIGINT NOT NULL
);

CREATE TABLE markets (
    market       TEXT PRIMARY KEY,
    base         TEXT NOT NULL REFERENCES assets,
    quote        TEXT NOT NULL REFERENCES assets,
    tick         TEXT NOT NULL,
    step         TEXT NOT NULL,
    min_amount   TEXT NOT NULL,
    min_notional TEXT NOT NULL,
    maker_fee    TEXT NOT NULL,
    taker_fee    TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'halted')),
    seq          BIGINT NOT NULL
);

-- One row per account; the fee account is the user '@fees'.
CREATE TABLE balances (
    user_id     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    available   NUMERIC(78, 0) NOT NULL CHECK (available >= 0),
    frozen      NUMERIC(78, 0) NOT NULL CHECK (frozen >= 0),
    seq         BIGINT NOT NULL,
    PRIMARY KEY (user_id, asset)
);

-- Balance history: every change of an account's total (trades, fees, deposits, settled and
-- refunded withdrawals). Holds that only move funds between available and frozen live in
-- the orders and withdrawals tables.
CREATE TABLE ledger (
    id              BIGSERIAL PRIMARY KEY,
    seq             BIGINT NOT NULL,
    ts              BIGINT NOT NULL,
    user_id         TEXT NOT NULL,
    asset           TEXT NOT NULL,
    delta_available NUMERIC(78, 0) NOT NULL,
    delta_frozen    NUMERIC(78, 0) NOT NULL,
    available       NUMERIC(78, 0) NOT NULL CHECK (available >= 0),
    frozen          NUMERIC(78, 0) NOT NULL CHECK (frozen >= 0),
    reason          TEXT NOT NULL,
    ref             TEXT NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (user_id, asset, id);

CREATE TABLE orders (
    order_id        BIGINT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    market          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type      TEXT NOT NULL CHECK (order_type IN ('limit', 'market')),
    price           NUMERIC(78, 0),
    amount          NUMERIC(78, 0),
    quote_amount    NUMERIC(78, 0),
    time_in_force   TEXT NOT NULL,
    post_only       BOOLEAN NOT NULL,
    client_order_id TEXT,
    status          TEXT NOT NULL
                    CHECK (status IN ('open', 'partially_filled', 'filled', 'cancelled')),
    filled          NUMERIC(78, 0) NOT NULL CHECK (filled >= 0),
    filled_quote    NUMERIC(78, 0) NOT NULL CHECK (filled_quote >= 0),
    fee             NUMERIC(78, 0) NOT NULL CHECK (fee >= 0),
    frozen          NUMERIC(78, 0) NOT NULL CHECK (frozen >= 0),
    reason          TEXT,
    created_seq     BIGINT NOT NULL,
    updated_seq     BIGINT NOT NULL,
    created_ts      BIGINT NOT NULL,
    updated_ts      BIGINT NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, order_id DESC);
CREATE INDEX orders_open_by_user ON orders (user_id, market)
    WHERE status IN ('open', 'partially_filled');
CREATE UNIQUE INDEX orders_open_client_id ON orders (user_id, client_order_id)
    WHERE client_order_id IS NOT NULL AND status IN ('open', 'partially_filled');

CREATE TABLE trades (
    trade_id        BIGINT PRIMARY KEY,
    seq             BIGINT NOT NULL,
    ts              BIGINT NOT NULL,
    market          TEXT NOT NULL,
    price           NUMERIC(78, 0) NOT NULL CHECK (price > 0),
    amount          NUMERIC(78, 0) NOT NULL CHECK (amount > 0),
    quote           NUMERIC(78, 0) NOT NULL CHECK (quote >= 0),
    taker_side      TEXT NOT NULL,
    maker_order_id  BIGINT NOT NULL,
    taker_order_id  BIGINT NOT NULL,
    maker_user      TEXT NOT NULL,
    taker_user      TEXT NOT NULL,
    maker_fee       NUMERIC(78, 0) NOT NULL CHECK (maker_fee >= 0),
    taker_fee       NUMERIC(78, 0) NOT NULL CHECK (taker_fee >= 0)
);
CREATE INDEX trades_by_market ON trades (market, trade_id DESC);
CREATE INDEX trades_by_maker ON trades (maker_user, trade_id DESC);
CREATE INDEX trades_by_taker ON trades (taker_user, trade_id DESC);

CREATE TABLE deposits (
    ref         TEXT PRIMARY KEY,             -- chain id : tx hash : log index
    user_id     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    amount      NUMERIC(78, 0) NOT NULL CHECK (amount > 0),
    seq         BIGINT NOT NULL,
    ts          BIGINT NOT NULL
);

CREATE TABLE withdrawals (
    withdrawal_id TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    amount      NUMERIC(78, 0) NOT NULL CHECK (amount > 0),
    fee         NUMERIC(78, 0) NOT NULL CHECK (fee >= 0),
    state       TEXT NOT NULL CHECK (state IN ('held', 'settled', 'refunded')),
    seq         BIGINT NOT NULL,
    ts          BIGINT NOT NULL
);

CREATE TABLE snapshots (
    seq         BIGINT PRIMARY KEY,
    state_hash  TEXT NOT NULL,
    data        BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Fencing: the matcher that holds the advisory lock bumps the epoch; every batch commits only
-- while the epoch is still its own, so a stale matcher can never write after a takeover.
CREATE TABLE matcher_lease (
    id          INT PRIMARY KEY CHECK (id = 1),
    epoch       BIGINT NOT NULL,
    holder      TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO matcher_lease (id, epoch, holder) VALUES (1, 0, '');

-- How far the events topic has been fed. After a crash the matcher replays the oplog and
-- publishes again the events of commands after this sequence number.
CREATE TABLE outbox_cursor (
    name        TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL
);
INSERT INTO outbox_cursor (name, seq) VALUES ('events', 0);
