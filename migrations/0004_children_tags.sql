-- 0004: child runs and tags on runs (issue 17; docs/projector.md).
--
--   * parent_run_id / root_run_id: a child run of a parallel, foreach or
--     run step names its parent and the top of its tree (run.created, v1.3).
--     GET /v1/runs/{id} lists a run's children: the partial index on
--     (parent_run_id) serves that lookup and costs nothing for the
--     top-level runs that make up most of the table.
--   * tags: the string map given to POST /v1/runs (run.created.tags), for
--     GET /v1/runs?tag=k:v: a GIN index (jsonb_path_ops) answers
--     `tags @> '{"k":"v"}'` without scanning.
-- rs_proj_create_run_tables() (0003's, kept under another name) is wrapped
-- so a rebuild creates the same shape. Idempotent like 0002 and 0003.
DO $do$
BEGIN
    IF to_regprocedure('public.rs_proj_create_run_tables_0003(text)') IS NULL THEN
        ALTER FUNCTION public.rs_proj_create_run_tables(text)
            RENAME TO rs_proj_create_run_tables_0003;
    END IF;
END
$do$;

CREATE OR REPLACE FUNCTION rs_proj_create_run_tables(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM public.rs_proj_create_run_tables_0003(s);
    EXECUTE format($q$
    ALTER TABLE %1$I.runs ADD COLUMN IF NOT EXISTS parent_run_id uuid;
    ALTER TABLE %1$I.runs ADD COLUMN IF NOT EXISTS root_run_id uuid;
    ALTER TABLE %1$I.runs ADD COLUMN IF NOT EXISTS tags jsonb;
    CREATE INDEX IF NOT EXISTS runs_parent ON %1$I.runs (parent_run_id, created_at, run_id)
        WHERE parent_run_id IS NOT NULL;
    CREATE INDEX IF NOT EXISTS runs_tags ON %1$I.runs USING gin (tags jsonb_path_ops)
        WHERE tags IS NOT NULL;
    $q$, s);
END
$fn$;

SELECT rs_proj_create_run_tables('public');
