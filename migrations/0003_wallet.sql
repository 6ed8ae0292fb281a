-- The wallet's own tables (wallet/, docs/wallet.md). The matcher never reads them; the
-- wallet jobs never write the matcher's tables: money moves only through commands.

-- Deposit addresses are derived at m/44'/60'/0'/0/{index}; the sequence makes an index unique
-- under any concurrency (a gap from a lost race is harmless). Firestore keeps the mapping.
CREATE SEQUENCE deposit_address_index MINVALUE 0 START 0;

-- The watcher's checkpoint: the last block scanned and the head it saw then.
CREATE TABLE chain_cursor (
    chain_id     BIGINT PRIMARY KEY,
    block_number BIGINT NOT NULL,
    head         BIGINT NOT NULL
);

-- Hashes of the recent blocks scanned, to notice a reorganisation (kept for the reorg window).
CREATE TABLE chain_blocks (
    chain_id    BIGINT NOT NULL,
    number      BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    parent_hash TEXT NOT NULL,
    PRIMARY KEY (chain_id, number)
);

-- Every transfer to a deposit address the watcher has seen, with its fate.
--   pending        seen, waiting for its confirmations
--   crediting      confirmed; the deposit command is published (its id is command_id)
--   credited       the matcher has applied it (its deposits table holds ref)
--   orphaned       its block left the chain before it was confirmed; never credited
--   below_minimum  smaller than the asset's minimum deposit; recorded, never credited
--   rejected       the matcher refused the command (reason in error)
CREATE TABLE chain_deposits (
    chain_id      BIGINT NOT NULL,
    tx_hash       TEXT NOT NULL,
    log_index     INTEGER NOT NULL,            -- -1 for a native ETH transfer
    ref           TEXT NOT NULL UNIQUE,        -- chain id : tx hash : log index
    user_id       TEXT NOT NULL,
    asset         TEXT NOT NULL,
    address       TEXT NOT NULL,               -- lowercase
    sender        TEXT NOT NULL,
    token_amount  NUMERIC(78, 0) NOT NULL CHECK (token_amount > 0),  -- wei / token units
    amount        NUMERIC(78, 0) NOT NULL CHECK (amount >= 0),       -- the asset's units
    dust          NUMERIC(78, 0) NOT NULL CHECK (dust >= 0),         -- token units below them
    block_number  BIGINT NOT NULL,
    block_hash    TEXT NOT NULL,
    confirmations_required INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN
                  ('pending', 'crediting', 'credited', 'orphaned', 'below_minimum', 'rejected')),
    command_id    TEXT,
    error         TEXT,
    seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    credited_at   TIMESTAMPTZ,
    PRIMARY KEY (chain_id, tx_hash, log_index)
);
CREATE INDEX chain_deposits_by_user ON chain_deposits (user_id, seen_at DESC, ref);
CREATE INDEX chain_deposits_open ON chain_deposits (chain_id, status)
    WHERE status IN ('pending', 'crediting');

-- Nonces of the exchange's sending accounts (hot wallet, gas wallet, deposit addresses),
-- allocated in the same transaction that stores the signed transaction using them.
CREATE TABLE wallet_nonces (
    chain_id   BIGINT NOT NULL,
    address    TEXT NOT NULL,                  -- lowercase
    next_nonce BIGINT NOT NULL CHECK (next_nonce >= 0),
    PRIMARY KEY (chain_id, address)
);

-- Every transaction the wallet signs, stored before it is broadcast so that a retry re-sends
-- the same bytes. purpose: sweep, gas_topup or withdrawal (then withdrawal_id is set).
CREATE TABLE wallet_txs (
    tx_hash        TEXT PRIMARY KEY,
    chain_id       BIGINT NOT NULL,
    purpose        TEXT NOT NULL CHECK (purpose IN ('sweep', 'gas_topup', 'withdrawal')),
    sender         TEXT NOT NULL,              -- lowercase
    nonce          BIGINT NOT NULL,
    recipient      TEXT NOT NULL,              -- lowercase; the token holder for a token transfer
    asset          TEXT NOT NULL,
    token_amount   NUMERIC(78, 0) NOT NULL,
    max_fee        NUMERIC(78, 0) NOT NULL,
    priority_fee   NUMERIC(78, 0) NOT NULL,
    gas_limit      BIGINT NOT NULL,
    raw_tx         BYTEA NOT NULL,
    withdrawal_id  TEXT,
    attempt        INTEGER NOT NULL DEFAULT 0, -- replacements of a stuck transaction: 1, 2, ...
    status         TEXT NOT NULL CHECK (status IN
                   ('signed', 'broadcast', 'mined', 'failed', 'replaced', 'dropped')),
    gas_cost       NUMERIC(78, 0),             -- wei actually paid, once mined
    block_number   BIGINT,
    broadcast_at   TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX wallet_txs_open ON wallet_txs (chain_id, status) WHERE status IN ('signed', 'broadcast');
CREATE INDEX wallet_txs_by_withdrawal ON wallet_txs (withdrawal_id, attempt) WHERE withdrawal_id IS NOT NULL;
CREATE INDEX wallet_txs_by_sender ON wallet_txs (chain_id, sender, nonce);

-- Withdrawal requests as the user made them (the matcher's withdrawals table holds the money
-- side: held, settled, refunded).
--   requested  stored, the hold command is published
--   rejected   the matcher refused the hold (reason in error); nothing moved
--   signed     the transaction is signed and stored (tx_hash), not yet broadcast
--   broadcast  sent to the network; waiting for confirmations
--   confirmed  mined with status 1 and confirmed; the settle command is published
--   failed     mined with status 0, or refused before signing; the refund is published
--   refunded   the matcher has returned the amount and fee to the user
CREATE TABLE withdrawal_requests (
    withdrawal_id  TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    asset          TEXT NOT NULL,
    amount         NUMERIC(78, 0) NOT NULL CHECK (amount > 0),   -- the asset's units
    fee            NUMERIC(78, 0) NOT NULL CHECK (fee >= 0),
    token_amount   NUMERIC(78, 0) NOT NULL CHECK (token_amount > 0),
    address        TEXT NOT NULL,              -- checksummed, as sent
    chain_id       BIGINT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('requested', 'rejected', 'signed', 'broadcast',
                   'confirmed', 'failed', 'refunded')),
    command_id     TEXT NOT NULL,
    tx_hash        TEXT,                       -- the transaction that counts (last attempt, or the mined one)
    error          TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX withdrawal_requests_by_user ON withdrawal_requests (user_id, created_at DESC, withdrawal_id);
CREATE INDEX withdrawal_requests_open ON withdrawal_requests (state)
    WHERE state IN ('requested', 'signed', 'broadcast', 'confirmed', 'failed');
