-- 0001: projection checkpoints. Each projection stores, in the same
-- transaction as the rows it writes, the last RUNS stream sequence applied.
CREATE TABLE projection_checkpoints (
    projection  text PRIMARY KEY,
    last_seq    bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
