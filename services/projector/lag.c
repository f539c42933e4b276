/*
 * lag.c - how far each projection is behind its stream, as metrics and as
 * readiness.
 *
 * Once a second: the stream's last sequence (stream info) minus the
 * committed checkpoint is the message lag; when that is positive, the
 * seconds behind are now minus the stream time of the last applied message
 * (or of the stream's first message if nothing was applied yet). An idle,
 * caught-up projection is 0 s behind however old its last event is.
 * The ops thread reads only atomics here (rs_ready_fn must not block).
 *
 * A standby (leader.c) applies nothing: it exports 0 lag (the leader
 * reports the real figure, and max() over instances stays right) and is
 * ready while NATS and its Postgres lock connection are up.
 */
#include "service.h"
#include "rs_log.h"
#include "rs_time.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rs_proj_lag {
	rs_nats *nats;
	rs_proj_leader *leader;
	rs_proj_consumer *pcs;
	int npcs;
	int64_t max_lag_s;
	pthread_t th;
	atomic_int stop;
	atomic_int nats_ok;
	atomic_int_least64_t lag_ms[8];
	atomic_int polled[8];
	rs_metric *m_msgs[8], *m_secs[8], *m_seq[8], *m_pg;
};

static void
poll_once(rs_proj_lag *l)
{
	int all_pg = 1;

	for (int i = 0; i < l->npcs; i++) {
		rs_proj_consumer *pc = &l->pcs[i];
		jsStreamInfo *si = NULL;
		jsErrCode jerr = 0;
		uint64_t applied = atomic_load(&pc->applied_seq), pending = 0;
		int64_t behind_ms = 0, ts;

		if (!atomic_load(&pc->pg_up) && rs_proj_leader_gen(l->leader) != 0)
			all_pg = 0;
		if (js_GetStreamInfo(&si, l->nats->js, pc->stream, NULL, &jerr) != NATS_OK) {
			atomic_store(&l->nats_ok, 0);
			continue;
		}
		atomic_store(&l->nats_ok, 1);
		/* A standby has nothing of its own pending. */
		if (si->State.LastSeq > applied && rs_proj_leader_gen(l->leader) != 0)
			pending = si->State.LastSeq - applied;
		if (pending > 0) {
			ts = atomic_load(&pc->applied_ts_ms);
			if (ts == 0 || applied < si->State.FirstSeq)
				ts = si->State.FirstTime / 1000000;
			behind_ms = rs_now_ms() - ts;
			if (behind_ms < 0)
				behind_ms = 0;
		}
		jsStreamInfo_Destroy(si);
		atomic_store(&l->lag_ms[i], behind_ms);
		atomic_store(&l->polled[i], 1);
		rs_metric_set(l->m_msgs[i], (double)pending);
		rs_metric_set(l->m_secs[i], (double)behind_ms / 1000.0);
		rs_metric_set(l->m_seq[i], (double)applied);
	}
	rs_metric_set(l->m_pg, all_pg && rs_proj_leader_pg_up(l->leader) ? 1 : 0);
}

static void *
lag_main(void *arg)
{
	rs_proj_lag *l = arg;

	while (!atomic_load(&l->stop)) {
		struct timespec ts = { 0, 100 * 1000000L };

		poll_once(l);
		for (int i = 0; i < 10 && !atomic_load(&l->stop); i++)
			nanosleep(&ts, NULL);
	}
	return NULL;
}

rs_status
rs_proj_lag_start(rs_proj_lag **out, rs_nats *n, rs_proj_consumer *pcs, int npcs,
                  int64_t max_lag_s, rs_proj_leader *leader)
{
	rs_proj_lag *l;

	if (npcs > 8)
		return RS_EINVAL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return RS_ENOMEM;
	l->nats = n;
	l->leader = leader;
	l->pcs = pcs;
	l->npcs = npcs;
	l->max_lag_s = max_lag_s;
	for (int i = 0; i < npcs; i++) {
		const char *labels = pcs[i].labels; /* the registry keeps the pointer */

		l->m_msgs[i] = rs_gauge("rs_projector_lag_messages",
		                        "Stream last sequence minus applied sequence", labels);
		l->m_secs[i] = rs_gauge("rs_projector_lag_seconds",
		                        "Seconds the projection is behind (0 when caught up)", labels);
		l->m_seq[i] = rs_gauge("rs_projector_applied_seq",
		                       "Last stream sequence committed (checkpoint)", labels);
	}
	l->m_pg = rs_gauge("rs_projector_pg_up", "1 while every projection is connected to Postgres",
	                   NULL);
	if (pthread_create(&l->th, NULL, lag_main, l) != 0) {
		free(l);
		return RS_ERR;
	}
	*out = l;
	return RS_OK;
}

int
rs_proj_lag_ready(void *arg, char *why, size_t cap)
{
	rs_proj_lag *l = arg;

	if (!rs_nats_connected(l->nats) || !atomic_load(&l->nats_ok)) {
		snprintf(why, cap, "NATS unavailable");
		return 0;
	}
	if (!rs_proj_leader_pg_up(l->leader)) {
		snprintf(why, cap, "Postgres unavailable (leader lock connection)");
		return 0;
	}
	if (rs_proj_leader_gen(l->leader) == 0)
		return 1; /* a hot standby is healthy: rs_projector_leader 0 says which */
	for (int i = 0; i < l->npcs; i++) {
		rs_proj_consumer *pc = &l->pcs[i];
		int64_t ms = atomic_load(&l->lag_ms[i]);

		if (!atomic_load(&pc->pg_up)) {
			snprintf(why, cap, "Postgres unavailable (projection %s)", pc->name);
			return 0;
		}
		if (!atomic_load(&pc->running) || !atomic_load(&l->polled[i])) {
			snprintf(why, cap, "projection %s starting", pc->name);
			return 0;
		}
		if (ms > l->max_lag_s * 1000) {
			snprintf(why, cap, "projection %s is %.1f s behind (max %" PRId64 " s)", pc->name,
			         (double)ms / 1000.0, l->max_lag_s);
			return 0;
		}
	}
	return 1;
}

void
rs_proj_lag_stop(rs_proj_lag *l)
{
	if (l == NULL)
		return;
	atomic_store(&l->stop, 1);
	pthread_join(l->th, NULL);
	free(l);
}
