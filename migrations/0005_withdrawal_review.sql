-- Withdrawal review (docs/wallet.md): a request above its asset's review threshold is stored
-- in state 'review'; the sender signs only 'requested' ones, so it waits until an admin
-- approves it (-> 'requested') or rejects it (-> 'failed', refunded through the matcher).
ALTER TABLE withdrawal_requests DROP CONSTRAINT withdrawal_requests_state_check;
ALTER TABLE withdrawal_requests ADD CONSTRAINT withdrawal_requests_state_check
    CHECK (state IN ('review', 'requested', 'rejected', 'signed', 'broadcast', 'confirmed',
                     'failed', 'refunded'));
ALTER TABLE withdrawal_requests ADD COLUMN reviewed_by TEXT;
ALTER TABLE withdrawal_requests ADD COLUMN reviewed_at TIMESTAMPTZ;
DROP INDEX withdrawal_requests_open;
CREATE INDEX withdrawal_requests_open ON withdrawal_requests (state)
    WHERE state IN ('review', 'requested', 'signed', 'broadcast', 'confirmed', 'failed');
