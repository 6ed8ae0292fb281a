-- Commands that reached the dead-letter topic, drained from its hold subscription into a
-- table (shared/dead_letters.py) so that the operator's list is stable and each
-- decision on one is a conditional change of its row: a re-drive publishes once however
-- often it is asked for (docs/decisions/0025).

CREATE TABLE dead_letters (
    message_id      TEXT PRIMARY KEY,             -- its message id on the dead-letter topic
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,                  -- when it reached the dead-letter topic
    ordering_key    TEXT NOT NULL,                -- the command's own ('' when unknown)
    data            BYTEA NOT NULL,               -- the command, as it was published
    attributes      JSONB NOT NULL,               -- its attributes (the producer's signature)
    command_id      TEXT,                         -- NULL: the data is no command
    command_type    TEXT,
    producer        TEXT,
    reason          TEXT NOT NULL,                -- a stable code (unsigned, delivery_attempts, ...)
    error           TEXT,                         -- in words
    delivery_count  INTEGER,                      -- Pub/Sub's deliveries before it gave up
    state           TEXT NOT NULL DEFAULT 'held'
                    CHECK (state IN ('held', 'redriving', 'redriven', 'discarded')),
    decided_by      TEXT,
    decided_at      TIMESTAMPTZ,
    redrive_message_id TEXT                       -- its message id on the commands topic
);
CREATE INDEX dead_letters_by_state ON dead_letters (state, received_at DESC);
