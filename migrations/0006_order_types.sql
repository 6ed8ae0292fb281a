-- Stop orders, OCO lists, good-till-date and amends (docs/engine.md): the order's trigger,
-- its expiry and its list; when it triggered. A pending stop order is 'open' with a
-- stop_price and no triggered_ts.
ALTER TABLE orders
    ADD COLUMN stop          TEXT CHECK (stop IN ('stop_loss', 'take_profit')),
    ADD COLUMN stop_price    NUMERIC(78, 0),
    ADD COLUMN expires_at    BIGINT,                -- ms since the epoch, the matcher's clock
    ADD COLUMN list_id       BIGINT,
    ADD COLUMN triggered_ts  BIGINT;

CREATE TABLE order_lists (
    list_id         BIGINT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    market          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    status          TEXT NOT NULL CHECK (status IN ('open', 'done')),
    limit_order_id  BIGINT NOT NULL,
    stop_order_id   BIGINT NOT NULL,
    reason          TEXT,
    created_seq     BIGINT NOT NULL,
    updated_seq     BIGINT NOT NULL,
    updated_ts      BIGINT NOT NULL
);
CREATE INDEX order_lists_by_user ON order_lists (user_id, list_id DESC);
