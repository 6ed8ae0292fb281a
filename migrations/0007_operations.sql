-- What the operators of the exchange read (docs/operations.md): each audit's result, kept
-- (shared/audit_runs.py), and the log of every admin action (shared/admin_actions.py).

CREATE TABLE audit_runs (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('books', 'chain')),
    ran_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    ok          BOOLEAN NOT NULL,
    differences INTEGER NOT NULL,
    seq         BIGINT,                       -- the oplog's last seq the audit saw
    report      JSONB NOT NULL
);
CREATE INDEX audit_runs_by_kind ON audit_runs (kind, id DESC);

-- Append-only: the product only inserts, and the database refuses any change or removal
-- (a trigger, so that even a bug in the product cannot rewrite the history).
CREATE TABLE admin_actions (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    admin_id    TEXT NOT NULL,
    action      TEXT NOT NULL,                -- "POST /v1/admin/markets", ...
    target      TEXT,                         -- the path's object (a user, a market, ...)
    client_ip   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    details     JSONB NOT NULL                -- the request's body, secrets removed
);

CREATE FUNCTION admin_actions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_actions is append-only';
END
$$;
CREATE TRIGGER admin_actions_no_update BEFORE UPDATE OR DELETE ON admin_actions
    FOR EACH ROW EXECUTE FUNCTION admin_actions_append_only();
CREATE TRIGGER admin_actions_no_truncate BEFORE TRUNCATE ON admin_actions
    FOR EACH STATEMENT EXECUTE FUNCTION admin_actions_append_only();
