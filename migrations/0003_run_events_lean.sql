-- 0003: lighter run_events (docs/projector.md, docs/benchmarks.md Projector).
--
-- COPY run_events was the projector's largest cost: per row, a btree
-- insert into the UNIQUE index on event_id (text, compared with the
-- database collation) and the foreign-key trigger's lookup of runs.
--   * event_id is `<run_id>-<seq>`, so the primary key (run_id, seq)
--     already makes it unique: the UNIQUE constraint (and its index) goes,
--     the column stays (the API and runctl read it).
--   * The foreign key run_events -> runs goes: the projector's runseq rule
--     only applies runseq N+1 after N and runseq 1 must be run.created,
--     so a run's events never exist without its run row, and nothing
--     deletes runs. steps and tool_calls keep theirs.
-- runs, steps and tool_calls are written once and then updated as their
-- run progresses: free space on each page (fillfactor) lets those updates be
-- HOT (no new index entries) whenever no indexed column changes, which is
-- every update of steps and tool_calls and those of runs that keep status.
-- rs_proj_create_run_tables() is replaced so a rebuild creates the same
-- shape. Idempotent like 0002.
CREATE OR REPLACE FUNCTION rs_proj_create_run_tables(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$
    CREATE TABLE IF NOT EXISTS %1$I.runs (
        run_id          uuid PRIMARY KEY,
        tenant          text NOT NULL,
        agent           text NOT NULL,
        version         text NOT NULL,
        status          text NOT NULL CHECK (status IN ('queued', 'running', 'waiting',
                            'completed', 'failed', 'cancelled', 'timed_out')),
        input           jsonb,
        output          jsonb,
        error           jsonb,
        idempotency_key text,
        current_step    text,
        timeout_s       bigint,
        cancel_reason   text,
        created_at      timestamptz NOT NULL,
        started_at      timestamptz,
        finished_at     timestamptz,
        updated_at      timestamptz NOT NULL,
        last_seq        bigint NOT NULL CHECK (last_seq >= 1)
    ) WITH (fillfactor = 70);
    CREATE INDEX IF NOT EXISTS runs_tenant_created ON %1$I.runs (tenant, created_at DESC, run_id DESC);
    CREATE INDEX IF NOT EXISTS runs_tenant_status_created ON %1$I.runs (tenant, status, created_at DESC, run_id DESC);
    CREATE INDEX IF NOT EXISTS runs_tenant_agent_created ON %1$I.runs (tenant, agent, created_at DESC, run_id DESC);

    CREATE TABLE IF NOT EXISTS %1$I.run_events (
        run_id      uuid NOT NULL,
        seq         bigint NOT NULL CHECK (seq >= 1),
        type        text NOT NULL,
        time        timestamptz NOT NULL,
        data        jsonb NOT NULL,
        event_id    text NOT NULL,
        tenant      text NOT NULL,
        source      text NOT NULL,
        traceparent text,
        stream_seq  bigint NOT NULL,
        PRIMARY KEY (run_id, seq)
    );

    CREATE TABLE IF NOT EXISTS %1$I.steps (
        run_id      uuid NOT NULL REFERENCES %1$I.runs (run_id) ON DELETE CASCADE,
        step_id     text NOT NULL,
        attempt     integer NOT NULL CHECK (attempt >= 1),
        kind        text NOT NULL,
        status      text NOT NULL CHECK (status IN ('running', 'completed', 'failed',
                        'cancelled', 'timed_out')),
        latest      boolean NOT NULL,
        input       jsonb,
        output      jsonb,
        error       jsonb,
        next_step   text,
        started_at  timestamptz NOT NULL,
        finished_at timestamptz,
        duration_ms bigint,
        updated_at  timestamptz NOT NULL,
        PRIMARY KEY (run_id, step_id, attempt)
    ) WITH (fillfactor = 80);

    CREATE TABLE IF NOT EXISTS %1$I.tool_calls (
        call_id       text PRIMARY KEY,
        run_id        uuid NOT NULL REFERENCES %1$I.runs (run_id) ON DELETE CASCADE,
        step_id       text NOT NULL,
        attempt       integer NOT NULL,
        tool          text NOT NULL,
        device_id     text,
        capability    text,
        router        text,
        status        text NOT NULL CHECK (status IN ('requested', 'dispatched', 'completed',
                          'failed', 'timed_out', 'cancelled')),
        args          jsonb,
        output        jsonb,
        error         jsonb,
        requested_at  timestamptz NOT NULL,
        dispatched_at timestamptz,
        finished_at   timestamptz,
        deadline_at   timestamptz,
        attempts      integer NOT NULL DEFAULT 0,
        updated_at    timestamptz NOT NULL
    ) WITH (fillfactor = 80);
    CREATE INDEX IF NOT EXISTS tool_calls_run ON %1$I.tool_calls (run_id, step_id, attempt);
    $q$, s);
END
$fn$;

ALTER TABLE IF EXISTS public.run_events DROP CONSTRAINT IF EXISTS run_events_run_id_fkey;
ALTER TABLE IF EXISTS public.run_events DROP CONSTRAINT IF EXISTS run_events_event_id_key;
ALTER TABLE IF EXISTS public.runs SET (fillfactor = 70);
ALTER TABLE IF EXISTS public.steps SET (fillfactor = 80);
ALTER TABLE IF EXISTS public.tool_calls SET (fillfactor = 80);
