/*
 * service.h - the live rs-projector process: one consumer thread per
 * projection (consumer.c), the single-active-instance lock (leader.c) and
 * the lag/readiness monitor (lag.c).
 * Not part of the rsprojector library runctl links.
 */
#ifndef RS_PROJECTOR_SERVICE_H
#define RS_PROJECTOR_SERVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include "projector.h"
#include "rs_logread.h"
#include "rs_metrics.h"
#include "rs_service.h"

/* The session advisory lock that makes one rs-projector the active one
 * (leader.c). Distinct from RS_PROJ_LOCK_RUNS (per batch) and the
 * migration lock. */
#define RS_PROJ_LOCK_LEADER 1383232885LL

typedef struct rs_proj_leader rs_proj_leader;

/* Start the thread that takes and watches the lock on its own connection
 * (a standby retries every second). *out owned by the caller. */
rs_status rs_proj_leader_start(rs_proj_leader **out, const char *pg_url, int64_t key);
/* 0 while this process does not hold the lock; otherwise a value that
 * changes with every acquisition, whose low 32 bits are the backend pid of
 * the lock connection (the fence of each batch). */
uint64_t rs_proj_leader_gen(const rs_proj_leader *l);
/* 1 while the lock connection is up (leader or standby). */
int rs_proj_leader_pg_up(const rs_proj_leader *l);
/* Stop the thread and close the connection (releases the lock). Call after
 * the consumers have been joined. */
void rs_proj_leader_stop(rs_proj_leader *l);

typedef rs_status (*rs_proj_apply_fn)(PGconn *c, const rs_proj_msg *msgs, size_t n,
                                      rs_proj_result *res);

/* One fetched batch (consumer.c): the messages, their rs_proj_msg views and,
 * for the runs projection, the decoded events. */
typedef struct {
	natsMsgList list;
	rs_proj_msg *msgs;
	size_t n;
	rs_proj_runs_dec *dec;   /* NULL: apply decodes itself */
	natsStatus s;
	jsErrCode jerr;
} rs_proj_fetched;

typedef struct {
	/* configuration (set before rs_proj_consumer_start) */
	const char *name;        /* projection: runs, agents, presence */
	const char *labels;      /* metric labels, static storage: projection="runs" */
	const char *stream;      /* RUNS, KV_agents, KV_presence */
	const char *filter;      /* runs.>, $KV.agents.>, $KV.presence.> */
	const char *durable;     /* projector-runs, ... */
	const char *dlq_source;  /* dead_letters.source: projector.runs, ... */
	rs_proj_apply_fn apply;
	int prepare_runs;        /* create the staging tables of apply.c */
	int decode_runs;         /* decode on the fetch thread (rs_proj_runs_decode) */
	int64_t lock_key;        /* advisory xact lock per batch, 0 = none */
	int batch;               /* max messages per transaction */
	int64_t presence_ttl_s;  /* > 0: sweep devices offline after this */
	const char *pg_url;
	rs_nats *nats;
	atomic_int *stop;
	rs_proj_leader *leader;  /* apply only while it is held */

	/* state, read by lag.c from another thread */
	atomic_uint_least64_t applied_seq;   /* checkpoint committed */
	atomic_int_least64_t applied_ts_ms;  /* stream time of that message */
	atomic_int pg_up;
	atomic_int running;                  /* consumer created, loop entered */

	/* private to the consumer thread */
	pthread_t th;
	PGconn *pg;
	struct rs_consume *cons; /* the loop on the durable (common/rs_consume.h) */
	rs_logread holes;        /* runs: is a skipped sequence still in RUNS? */
	int holes_ready;
	uint64_t gen;            /* leadership generation the consumer was set up under */
	/* the handover: the loop decodes batch N+1 while batch N is in
	 * Postgres; one batch in the slot at most, under fmu */
	pthread_mutex_t fmu;
	pthread_cond_t fcv;      /* CLOCK_MONOTONIC */
	int f_ready, f_quit;
	rs_proj_fetched f_slot;
	rs_metric *m_applied, *m_dead, *m_batches, *m_batch_s, *m_pg_retries;
} rs_proj_consumer;

rs_status rs_proj_consumer_start(rs_proj_consumer *pc);

/* consumer.c, for repair.c (the consumer thread only). */
rs_status rs_proj_exec1(PGconn *c, const char *sql, int n, const char *const *p, PGresult **out);
void rs_proj_pg_drop(rs_proj_consumer *pc);
rs_status rs_proj_lock_checkpoint(rs_proj_consumer *pc, uint64_t *seq);

/* repair.c: 1 when a runs batch passes over a sequence RUNS still holds
 * (start again at the checkpoint); after a committed batch, complete from
 * the stream leader each run it dead-lettered for a runseq gap. */
int rs_proj_batch_has_hole(rs_proj_consumer *pc, const rs_proj_fetched *f);
void rs_proj_heal_gaps(rs_proj_consumer *pc, const rs_proj_result *res);
/* Waits for the thread: it finishes (commits and acks) its batch first. */
void rs_proj_consumer_join(rs_proj_consumer *pc);

typedef struct rs_proj_lag rs_proj_lag;

/* Poll each stream's last sequence every second and export lag gauges;
 * readiness fails when a projection's seconds behind exceed max_lag_s or
 * Postgres is down. */
rs_status rs_proj_lag_start(rs_proj_lag **out, rs_nats *n, rs_proj_consumer *pcs, int npcs,
                            int64_t max_lag_s, rs_proj_leader *leader);
int rs_proj_lag_ready(void *arg, char *why, size_t cap);   /* rs_ready_fn */
void rs_proj_lag_stop(rs_proj_lag *l);

/* ---- service.c: the hooks of common/rs_service.c (main.c's table) ---- */
typedef struct {
	rs_config base;
	int64_t batch, max_lag_s, presence_ttl_s;
	rs_nats nats;
} rs_proj_service;   /* the app of the def: settings and the connection */

rs_status rs_proj_service_start(rs_service *s);
int rs_proj_service_ready(void *arg, char *why, size_t cap);   /* the lag's answer */
void rs_proj_service_drain(rs_service *s, int64_t grace_ms);

#endif
