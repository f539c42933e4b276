-- 0001: projection checkpoints. Each projection stores, in the same
-- transaction as the rows it writes, the last stream sequence it applied
-- (exactly-once: a redelivered message with seq <= last_seq is skipped).
-- projection: 'runs' (stream RUNS), 'agents' (KV_agents), 'presence'
-- (KV_presence). last_event_at is the time of the newest applied event
-- (lag in seconds = now() - last_event_at while messages are pending).
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection    text PRIMARY KEY,
    stream        text NOT NULL,
    last_seq      bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_event_at timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
