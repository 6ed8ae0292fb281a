-- Commands the matcher holds back because an earlier command of the same user is missing
-- (matcher_service/sequencer.py, docs/decisions/0001). A row is written in the transaction
-- of the batch that parked the command (so its message can be acknowledged) and deleted in
-- the transaction of the batch that applies it: it is never in the oplog and here at once.
CREATE TABLE parked (
    command_id  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    parked_at   BIGINT NOT NULL,              -- ms since the epoch, the matcher's clock
    command     TEXT NOT NULL                 -- JSON (shared/messages.py), with its user_seq
);
