/*
 * projector.h - the projector's pieces (docs/projector.md):
 *   apply.c     a batch of RUNS messages -> rows (runs, run_events, steps,
 *               tool_calls) inside the caller's transaction: the batch
 *   fold.c      a run's view (common/rs_view.c) -> row images (fold.h)
 *   pgcopy.c    COPY text, COPY in, row images -> tables (pgcopy.h)
 *   dead.c      dead letters of every projection
 *   kv.c        KV_agents / KV_presence messages -> agents, devices
 *   consumer.c  one durable pull consumer per projection: fetch, one
 *               transaction per batch with the checkpoint, commit, ack
 *   rebuild.c   replay RUNS into a fresh schema and swap it in
 *   lag.c       lag metrics and readiness
 * rebuild.c, kv.c and the run projection's files form the library `rsprojector` that runctl links
 * too (`runctl projector rebuild` calls rs_projector_rebuild()).
 */
#ifndef RS_PROJECTOR_H
#define RS_PROJECTOR_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include "rs_nats.h"
#include "rs_status.h"

/* Both the live batch transaction and the rebuild's swap take this
 * transaction-level advisory lock, so a swap happens between two batches. */
#define RS_PROJ_LOCK_RUNS 1383232884LL

/* One message as the appliers see it (borrowed from a natsMsg). */
typedef struct {
	uint64_t seq;          /* stream sequence */
	const char *subject;
	const char *data;
	int len;
	int64_t ts_ms;         /* time the stream stored it */
	const char *kv_op;     /* KV-Operation header (DEL, PURGE) or NULL */
} rs_proj_msg;

/* A message the projection could not apply. reason is malloc'd. */
typedef struct {
	const rs_proj_msg *msg;
	char *reason;
} rs_proj_dead;

typedef struct {
	uint64_t applied;        /* messages that changed rows */
	uint64_t skipped;        /* seq <= checkpoint */
	int64_t last_event_ms;   /* time of the newest applied event, 0 if none */
	rs_proj_dead *dead;      /* dead letters of this batch (malloc'd) */
	size_t ndead;
} rs_proj_result;

void rs_proj_result_reset(rs_proj_result *r);

/* Per-connection preparation for rs_proj_runs_apply (temporary staging
 * tables). Call once after connecting. */
rs_status rs_proj_runs_prepare(PGconn *c);

/* Apply msgs[0..n) (stream order, all with seq > checkpoint) to the run
 * tables found through the connection's search_path, inside the caller's
 * transaction. Malformed events, runseq duplicates and gaps become
 * dead_letters rows (source "projector.runs") and entries of res->dead.
 * RS_EUNAVAIL: connection lost; RS_EIO: Postgres rejected the batch (the
 * caller rolls back and retries message by message). */
rs_status rs_proj_runs_apply(PGconn *c, const rs_proj_msg *msgs, size_t n,
                             rs_proj_result *res);

/* The same in two halves: decode (no Postgres; the consumer runs it on its
 * fetch thread, ahead of the transaction) and apply msgs[from..to) of the
 * decoded batch (may be called again on the same batch after a rollback).
 * msgs must outlive the decoded batch. */
typedef struct rs_proj_runs_dec rs_proj_runs_dec;
rs_status rs_proj_runs_decode(const rs_proj_msg *msgs, size_t n, rs_proj_runs_dec **out);
rs_status rs_proj_runs_apply_dec(PGconn *c, const rs_proj_runs_dec *d, size_t from, size_t to,
                                 rs_proj_result *res);
void rs_proj_runs_dec_free(rs_proj_runs_dec *d);
/* The runseq of decoded message i, or -1 (malformed). */
int64_t rs_proj_runs_dec_runseq(const rs_proj_runs_dec *d, size_t i);

/* Same contract for the KV projections. */
rs_status rs_proj_agents_apply(PGconn *c, const rs_proj_msg *msgs, size_t n,
                               rs_proj_result *res);
rs_status rs_proj_presence_apply(PGconn *c, const rs_proj_msg *msgs, size_t n,
                                 rs_proj_result *res);

/* Insert the dead letters of res (ON CONFLICT (source, stream_seq) DO
 * NOTHING) for source. */
rs_status rs_proj_store_dead(PGconn *c, const char *source, const rs_proj_result *res);
/* Record one dead letter now (used by the message-by-message fallback). */
rs_status rs_proj_add_dead(rs_proj_result *res, const rs_proj_msg *m, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Called on every failed statement: 1 if the error on c/r is a lost
 * connection (vs. a rejected statement). Also remembers the message for
 * rs_proj_last_pg_error() (per thread). */
int rs_proj_pg_lost(PGconn *c, PGresult *r);
const char *rs_proj_last_pg_error(void);

/* Rebuild the run tables: replay RUNS from seq 1 into schema
 * rebuild_<unix time>, catch up with the live checkpoint under
 * RS_PROJ_LOCK_RUNS and swap the tables into public in one transaction
 * (the old ones are dropped). The live projector keeps running and
 * continues into the new tables. report gets a one-line summary. */
rs_status rs_projector_rebuild(const char *nats_url, const char *pg_url,
                               char *report, size_t cap);

#endif
