/*
 * leader.c - one active rs-projector: a session-level Postgres advisory
 * lock held on a dedicated connection decides which process applies.
 *
 * Why: at start the consumers are deleted and recreated at checkpoint + 1
 * (consumer.c). Two processes doing that would take each other's durables
 * away and, sharing one durable, commit out-of-order batches. So the
 * consumers touch JetStream only while this process holds the lock. The
 * others are hot standbys: they retry pg_try_advisory_lock every second
 * and take over once the holder's connection is gone (its session ends, so
 * Postgres releases the lock: kill -9, crash, Postgres restart).
 *
 * Leadership is a generation: (epoch << 32) | backend pid of the lock
 * connection, 0 while not held. A consumer remembers the generation it set
 * up under and stands down when it changes, and every batch transaction
 * checks in pg_locks that this backend pid still holds the lock (the
 * fence, consumer.c): a process that lost its lock connection cannot
 * commit even if its other connections survived.
 */
#include "service.h"
#include "rs_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEADER_POLL_MS 1000

struct rs_proj_leader {
	const char *pg_url;
	int64_t key;
	atomic_int stop;
	atomic_int pg_up;                 /* lock connection usable */
	atomic_uint_least64_t gen;        /* 0, or (epoch << 32) | lock backend pid */
	uint32_t epoch;
	int standby_logged;
	PGconn *pg;
	pthread_t th;
	rs_metric *m_leader, *m_takeovers;
};

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Keepalives on the lock connection: a silently dead network path is
 * noticed by the client in seconds instead of the OS default of hours. */
static PGconn *
lock_connect(const char *url)
{
	const char *keys[] = { "dbname", "keepalives", "keepalives_idle", "keepalives_interval",
	                       "keepalives_count", "tcp_user_timeout", "application_name", NULL };
	const char *vals[] = { url, "1", "5", "2", "3", "10000", "rs-projector-leader", NULL };

	return PQconnectdbParams(keys, vals, 1);
}

/* One-value query on the lock connection; NULL result = connection trouble. */
static int
query_bool(rs_proj_leader *l, const char *sql, int *out)
{
	char key[24];
	const char *p[1] = { key };
	PGresult *r;
	int ok;

	snprintf(key, sizeof(key), "%" PRId64, l->key);
	r = PQexecParams(l->pg, sql, strstr(sql, "$1") ? 1 : 0, NULL, p, NULL, NULL, 0);
	ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	if (ok)
		*out = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	else
		rs_warn("projector leader: %s: %s", sql, PQerrorMessage(l->pg));
	PQclear(r);
	return ok;
}

static void
lose(rs_proj_leader *l, const char *why)
{
	if (atomic_load(&l->gen) != 0)
		rs_warn("projector leader: lost the lock (%s); applying stops", why);
	atomic_store(&l->gen, 0);
	rs_metric_set(l->m_leader, 0);
	PQfinish(l->pg);
	l->pg = NULL;
	atomic_store(&l->pg_up, 0);
}

/* Not leader: connect if needed and try the lock once. */
static void
try_acquire(rs_proj_leader *l)
{
	int got = 0;

	if (l->pg == NULL) {
		l->pg = lock_connect(l->pg_url);
		if (PQstatus(l->pg) != CONNECTION_OK) {
			PQfinish(l->pg);
			l->pg = NULL;
			atomic_store(&l->pg_up, 0);
			return;
		}
	}
	if (!query_bool(l, "SELECT pg_try_advisory_lock($1::bigint)", &got)) {
		lose(l, "connection lost");
		return;
	}
	atomic_store(&l->pg_up, 1);
	if (!got) {
		if (!l->standby_logged)
			rs_info("projector leader: another projector holds the lock; standing by");
		l->standby_logged = 1;
		return;
	}
	l->epoch++;
	l->standby_logged = 0;
	atomic_store(&l->gen, ((uint64_t)l->epoch << 32) | (uint32_t)PQbackendPID(l->pg));
	rs_metric_set(l->m_leader, 1);
	rs_metric_inc(l->m_takeovers);
	rs_info("projector leader: lock acquired (backend pid %d); this instance applies",
	        PQbackendPID(l->pg));
}

/* Leader: make sure the session (and with it the lock) is still there. */
static void
check_held(rs_proj_leader *l)
{
	int held = 0;

	if (!query_bool(l, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
	                   "AND granted AND pid = pg_backend_pid() AND objsubid = 1 "
	                   "AND ((classid::bigint << 32) | objid::bigint) = $1::bigint)", &held)) {
		lose(l, "connection lost");
		return;
	}
	if (!held)
		lose(l, "lock no longer held");
}

static void *
leader_main(void *arg)
{
	rs_proj_leader *l = arg;

	while (!atomic_load(&l->stop)) {
		if (atomic_load(&l->gen) == 0)
			try_acquire(l);
		else
			check_held(l);
		for (int i = 0; i < LEADER_POLL_MS / 50 && !atomic_load(&l->stop); i++)
			sleep_ms(50);
	}
	return NULL;
}

rs_status
rs_proj_leader_start(rs_proj_leader **out, const char *pg_url, int64_t key)
{
	rs_proj_leader *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return RS_ENOMEM;
	l->pg_url = pg_url;
	l->key = key;
	l->m_leader = rs_gauge("rs_projector_leader",
	                       "1 while this instance holds the projector lock and applies", NULL);
	l->m_takeovers = rs_counter("rs_projector_leader_acquired_total",
	                            "Times this instance acquired the projector lock", NULL);
	if (pthread_create(&l->th, NULL, leader_main, l) != 0) {
		free(l);
		return RS_ERR;
	}
	*out = l;
	return RS_OK;
}

uint64_t
rs_proj_leader_gen(const rs_proj_leader *l)
{
	return l == NULL ? 0 : atomic_load(&((rs_proj_leader *)l)->gen);
}

int
rs_proj_leader_pg_up(const rs_proj_leader *l)
{
	return l != NULL && atomic_load(&((rs_proj_leader *)l)->pg_up);
}

void
rs_proj_leader_stop(rs_proj_leader *l)
{
	if (l == NULL)
		return;
	atomic_store(&l->stop, 1);
	pthread_join(l->th, NULL);
	/* Closing the session releases the lock at once: a standby takes over
	 * on its next poll. */
	PQfinish(l->pg);
	free(l);
}
