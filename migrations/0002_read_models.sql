-- 0002: the read models (docs/projector.md). Only rs-projector writes
-- them; the API only reads.
--
-- The run tables (runs, run_events, steps, tool_calls) are created by a
-- function taking the schema name, because `rs-projector --rebuild` builds
-- a fresh copy in a schema rebuild_<ts> and swaps it into public: one DDL
-- text serves both, so a rebuilt table cannot differ from a migrated one
-- (same columns, constraints, index names). A later migration that changes
-- these tables must also CREATE OR REPLACE this function. Every statement
-- is IF NOT EXISTS so re-running the file (a reset ledger) is harmless.
--
-- Times come from the events (CloudEvent time), not from the clock, so a
-- rebuild reproduces every row byte for byte; updated_at is the time of
-- the last event applied to the row.
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
    );
    CREATE INDEX IF NOT EXISTS runs_tenant_created ON %1$I.runs (tenant, created_at DESC, run_id DESC);
    CREATE INDEX IF NOT EXISTS runs_tenant_status_created ON %1$I.runs (tenant, status, created_at DESC, run_id DESC);
    CREATE INDEX IF NOT EXISTS runs_tenant_agent_created ON %1$I.runs (tenant, agent, created_at DESC, run_id DESC);

    CREATE TABLE IF NOT EXISTS %1$I.run_events (
        run_id      uuid NOT NULL REFERENCES %1$I.runs (run_id) ON DELETE CASCADE,
        seq         bigint NOT NULL CHECK (seq >= 1),
        type        text NOT NULL,
        time        timestamptz NOT NULL,
        data        jsonb NOT NULL,
        event_id    text NOT NULL UNIQUE,
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
    );

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
    );
    CREATE INDEX IF NOT EXISTS tool_calls_run ON %1$I.tool_calls (run_id, step_id, attempt);
    $q$, s);
END
$fn$;

SELECT rs_proj_create_run_tables('public');

-- Agents (from KV agents, stream KV_agents). agent_versions rows are
-- immutable; agents.latest_version follows the <tenant>.<name>.latest key.
CREATE TABLE IF NOT EXISTS agents (
    tenant         text NOT NULL,
    name           text NOT NULL,
    latest_version text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE IF NOT EXISTS agent_versions (
    tenant     text NOT NULL,
    name       text NOT NULL,
    version    text NOT NULL,
    definition jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, name, version),
    FOREIGN KEY (tenant, name) REFERENCES agents (tenant, name)
);

-- Devices (from KV presence, stream KV_presence). The KV's TTL expires
-- keys silently on nats-server 2.9 (no delete marker), so the projector
-- also marks devices offline whose last_seen is older than the TTL.
CREATE TABLE IF NOT EXISTS devices (
    tenant       text NOT NULL,
    device_id    text NOT NULL,
    router       text,
    tools        jsonb NOT NULL DEFAULT '[]',
    online       boolean NOT NULL,
    connected_at timestamptz,
    last_seen    timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, device_id)
);
CREATE INDEX IF NOT EXISTS devices_tenant_online ON devices (tenant, online, device_id);

-- Messages a projection could not apply (malformed, runseq duplicate or
-- gap, rejected by Postgres). One row per (source, stream_seq): a rebuild
-- replaying the same message does not add a second row.
CREATE TABLE IF NOT EXISTS dead_letters (
    id         bigserial PRIMARY KEY,
    source     text NOT NULL,
    stream_seq bigint NOT NULL,
    subject    text NOT NULL,
    reason     text NOT NULL,
    payload    bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, stream_seq)
);
