-- Indexes for the queries function's reads of a user's own history (functions/queries).

-- GET /v1/ledger without an asset: a user's whole balance history, newest first, by page.
-- (ledger_by_user serves the per-asset form.)
CREATE INDEX ledger_by_user_id ON ledger (user_id, id DESC);

-- GET /v1/orders/by-client-id/{id}: open or closed (orders_open_client_id covers open only).
CREATE INDEX orders_by_client_id ON orders (user_id, client_order_id, order_id DESC)
    WHERE client_order_id IS NOT NULL;
