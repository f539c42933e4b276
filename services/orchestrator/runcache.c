/*
 * runcache.c - hot runs in memory, cold runs rebuilt from their events.
 *
 * An entry holds a run's state as of its last durable event and that
 * event's stream sequence (the expectation for the next append). Entries
 * are found by "<tenant>.<run_id>" (common/rs_map) and kept in LRU order;
 * above capacity the least recently used idle entries are dropped (they
 * can always be rebuilt from the log). Engine thread only.
 *
 * Rebuild reads the run's literal subject runs.<tenant>.<run_id>: a get
 * of the last message tells how many events there are; short runs are
 * then read with gets (next by subject, one round trip each), long ones
 * with an ordered consumer (one set-up round trip, then streamed) that
 * must reach that last message. The gets go through common/rs_logread.c:
 * on a cluster to the RUNS leader, because a replica that has just
 * restarted answers direct gets from its older store (seen in bench/chaos:
 * runs taken for unknown and their commands dead-lettered, one history
 * walk reading an event twice from two replicas). RS_ORCH_RUNS_READS:
 * auto (default), direct, leader; decided at the first read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"
#include "rs_map.h"
#include "rs_log.h"

/* The first read decides how RUNS is read (one stream-info request). */
static natsStatus
log_get(orch *o, natsMsg **m, const jsDirectGetMsgOptions *dg)
{
	if (!o->runs_reads_ready) {
		const char *mode = getenv("RS_ORCH_RUNS_READS");
		rs_status st = rs_logread_init(&o->runs_reads, o->nats.nc, o->nats.js, "RUNS", mode,
		                               5000);

		if (st == RS_EINVAL) {
			rs_error("RS_ORCH_RUNS_READS: must be auto, direct or leader (got \"%s\"): "
			         "reading from the leader", mode);
			rs_logread_init(&o->runs_reads, o->nats.nc, o->nats.js, "RUNS", "leader", 5000);
		} else if (st != RS_OK) {
			*m = NULL;
			return NATS_TIMEOUT;   /* stream unreadable now: the caller naks */
		}
		o->runs_reads_ready = 1;
		rs_info("RUNS reads of the engine: %s", o->runs_reads.leader
		        ? "the stream leader (STREAM.MSG.GET)" : "direct get");
	}
	return rs_logread_get(&o->runs_reads, m, dg);
}

/* Above this many events an ordered consumer beats successive gets. */
#define DIRECT_GET_MAX 6

struct runcache {
	rs_map map;                  /* "<tenant>.<run_id>" -> orun (not owned) */
	size_t n, cap;
	orun *lru_head, *lru_tail;   /* head: most recent */
};

struct runcache *
rs_orch_runcache_new(size_t cap)
{
	struct runcache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->cap = cap;
	rs_map_init(&c->map, NULL);
	return c;
}

static void
pending_free(pending_cmd *p, int nak)
{
	pending_cmd *n;

	for (; p != NULL; p = n) {
		n = p->next;
		if (nak)
			natsMsg_Nak(p->msg, NULL);
		natsMsg_Destroy(p->msg);
		rs_cmd_free(&p->cmd);
		free(p);
	}
}

void
rs_orch_runcache_nak_all(struct runcache *c)
{
	for (orun *r = c->lru_head; r != NULL; r = r->lnext) {
		pending_free(r->cur, 1);
		pending_free(r->waitq, 1);
		r->cur = r->waitq = r->waitq_tail = NULL;
	}
}

static void
orun_free(orun *r)
{
	pending_free(r->cur, 0);
	pending_free(r->waitq, 0);
	rs_run_free(r->state);
	rs_decision_free(&r->dec);
	free(r);
}

void
rs_orch_runcache_free(struct runcache *c)
{
	orun *r, *n;

	if (c == NULL)
		return;
	for (r = c->lru_head; r != NULL; r = n) {
		n = r->lnext;
		orun_free(r);
	}
	rs_map_free(&c->map);
	free(c);
}

size_t
rs_orch_runcache_count(const struct runcache *c)
{
	return c->n;
}

static void
lru_unlink(struct runcache *c, orun *r)
{
	if (r->lprev) r->lprev->lnext = r->lnext; else c->lru_head = r->lnext;
	if (r->lnext) r->lnext->lprev = r->lprev; else c->lru_tail = r->lprev;
	r->lprev = r->lnext = NULL;
}

static void
lru_push(struct runcache *c, orun *r)
{
	r->lprev = NULL;
	r->lnext = c->lru_head;
	if (c->lru_head) c->lru_head->lprev = r; else c->lru_tail = r;
	c->lru_head = r;
}

void
rs_orch_runcache_touch(struct runcache *c, orun *r)
{
	if (c->lru_head == r)
		return;
	lru_unlink(c, r);
	lru_push(c, r);
}

orun *
rs_orch_runcache_get(struct runcache *c, const char *tenant, const char *run_id)
{
	char key[120];

	snprintf(key, sizeof(key), "%s.%s", tenant, run_id);
	return rs_map_get(&c->map, key);
}

orun *
rs_orch_runcache_add_empty(struct runcache *c, const char *tenant, const char *run_id)
{
	orun *r = calloc(1, sizeof(*r));

	if (r == NULL || (r->state = rs_run_new()) == NULL) {
		free(r);
		return NULL;
	}
	snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
	snprintf(r->run_id, sizeof(r->run_id), "%s", run_id);
	snprintf(r->key, sizeof(r->key), "%s.%s", tenant, run_id);
	if (rs_map_put(&c->map, r->key, r) != RS_OK) {
		rs_run_free(r->state);
		free(r);
		return NULL;
	}
	lru_push(c, r);
	c->n++;
	rs_metric_set(rs_orch_om.cache_runs, (double)c->n);
	return r;
}

void
rs_orch_runcache_remove(struct runcache *c, orun *r)
{
	if (rs_map_get(&c->map, r->key) == r)
		rs_map_take(&c->map, r->key);
	lru_unlink(c, r);
	c->n--;
	rs_metric_set(rs_orch_om.cache_runs, (double)c->n);
	orun_free(r);
}

void
rs_orch_runcache_trim(struct runcache *c)
{
	orun *r = c->lru_tail, *p;

	while (c->n > c->cap && r != NULL) {
		p = r->lprev;
		if (!r->busy && r->waitq == NULL)
			rs_orch_runcache_remove(c, r);
		r = p;
	}
}

orun *
rs_orch_runcache_oldest(struct runcache *c, size_t *busy, size_t *queued)
{
	rs_map_ent *e = NULL;
	orun *oldest = NULL;
	size_t i = 0;

	*busy = *queued = 0;
	while ((e = rs_map_next(&c->map, &i, e)) != NULL) {
		orun *r = e->val;

		if (!r->busy || r->cur == NULL)
			continue;
		(*busy)++;
		for (pending_cmd *p = r->waitq; p != NULL; p = p->next)
			(*queued)++;
		if (oldest == NULL || r->cur->t0_us < oldest->cur->t0_us)
			oldest = r;
	}
	return oldest;
}

/* Decode msg as the next event of st; *seq receives its stream sequence. */
static rs_status
apply_msg(rs_run *st, natsMsg *m, uint64_t *seq, const char *run_id)
{
	rs_event ev;
	char err[256];
	const char *v = NULL;
	jsMsgMetaData *meta = NULL;
	rs_status rc;

	/* Direct get answers carry Nats-Sequence; consumer deliveries carry
	 * the sequence in their reply subject (metadata). */
	if (natsMsgHeader_Get(m, "Nats-Sequence", &v) == NATS_OK && v != NULL) {
		*seq = strtoull(v, NULL, 10);
	} else if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
		*seq = meta->Sequence.Stream;
		jsMsgMetaData_Destroy(meta);
	}
	rc = rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, err, sizeof(err));
	if (rc != RS_OK) {
		rs_log(RS_LOG_ERROR, run_id, NULL, "rebuild: undecodable event seq %llu: %s",
		       (unsigned long long)*seq, err);
		return RS_EINVAL;
	}
	if (ev.runseq != 0 && ev.runseq <= rs_run_last_seq(st)) {
		/* A runseq already folded: a replica that replayed its raft log
		 * after a kill -9 stored an append twice (nats-server 2.9.10,
		 * seen in bench/chaos: same Nats-Msg-Id, same stored time). The
		 * first one is the run's; the copy is skipped, not an error
		 * that would leave the run unreadable forever. */
		rs_log(RS_LOG_WARN, run_id, NULL, "rebuild: event %llu at RUNS %llu repeats runseq %llu: "
		       "skipped", (unsigned long long)ev.runseq, (unsigned long long)*seq,
		       (unsigned long long)ev.runseq);
		rs_event_free(&ev);
		return RS_OK;
	}
	rc = rs_run_evolve(st, &ev, err, sizeof(err));
	if (rc != RS_OK)
		rs_log(RS_LOG_ERROR, run_id, NULL, "rebuild: event %llu does not apply: %s",
		       (unsigned long long)ev.runseq, err);
	rs_event_free(&ev);
	return rc;
}

static rs_status
read_by_gets(orch *o, rs_run *st, const char *subj, uint64_t last, const char *run_id)
{
	jsDirectGetMsgOptions dg;
	natsMsg *m = NULL;
	uint64_t seq = 0;
	natsStatus s;
	rs_status rc;

	while (seq < last) {
		jsDirectGetMsgOptions_Init(&dg);
		dg.Sequence = seq + 1;
		dg.NextBySubject = subj;
		if ((s = log_get(o, &m, &dg)) != NATS_OK)
			return rs_nats_status(s, 0);
		rc = apply_msg(st, m, &seq, run_id);
		natsMsg_Destroy(m);
		if (rc != RS_OK)
			return rc;
	}
	return RS_OK;
}

static rs_status
read_by_consumer(orch *o, rs_run *st, const char *subj, uint64_t last, const char *run_id)
{
	jsSubOptions so;
	natsSubscription *sub = NULL;
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	uint64_t seq = 0;
	natsStatus s;
	rs_status rc = RS_OK;

	jsSubOptions_Init(&so);
	so.Stream = "RUNS";          /* skip the stream-by-subject lookup */
	so.Ordered = true;
	if ((s = js_SubscribeSync(&sub, o->nats.js, subj, NULL, &so, &jerr)) != NATS_OK)
		return rs_nats_status(s, jerr);
	while (seq < last) {
		if ((s = natsSubscription_NextMsg(&m, sub, 5000)) != NATS_OK) {
			rc = rs_nats_status(s, 0);
			break;
		}
		rc = apply_msg(st, m, &seq, run_id);
		natsMsg_Destroy(m);
		if (rc != RS_OK)
			break;
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	return rc;
}

rs_status
rs_orch_runcache_reload(orch *o, orun *r)
{
	jsDirectGetMsgOptions dg;
	char subj[160];
	natsMsg *m = NULL;
	rs_event ev;
	char err[256];
	const char *v = NULL;
	uint64_t last = 0, nev = 0;
	rs_run *st;
	natsStatus s;
	rs_status rc;

	rs_event_subject(r->tenant, r->run_id, subj, sizeof(subj));
	if ((st = rs_run_new()) == NULL)
		return RS_ENOMEM;
	jsDirectGetMsgOptions_Init(&dg);
	dg.LastBySubject = subj;
	s = log_get(o, &m, &dg);
	if (s == NATS_NOT_FOUND) {
		rc = RS_ENOTFOUND;
		goto done;
	}
	if (s != NATS_OK) {
		rs_run_free(st);
		return rs_nats_status(s, 0);
	}
	if (natsMsgHeader_Get(m, "Nats-Sequence", &v) == NATS_OK && v != NULL)
		last = strtoull(v, NULL, 10);
	if (rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, err,
	                    sizeof(err)) == RS_OK) {
		nev = ev.runseq;
		rs_event_free(&ev);
	}
	natsMsg_Destroy(m);
	if (last == 0 || nev == 0) {
		rs_log(RS_LOG_ERROR, r->run_id, NULL, "rebuild: cannot read the last event: %s", err);
		rs_run_free(st);
		return RS_EINVAL;
	}
	if (nev <= DIRECT_GET_MAX) {
		rc = read_by_gets(o, st, subj, last, r->run_id);
	} else {
		rc = read_by_consumer(o, st, subj, last, r->run_id);
		if (rc != RS_OK && o->runs_reads.leader) {
			/* An ordered consumer is one replica's copy, and on
			 * 2.9.10 that may be one still catching up (bench/chaos:
			 * "event 14 does not apply: runseq 14, expected 13"
			 * after node faults, the run unreadable until it caught
			 * up). The leader's copy, one get per event, is the
			 * acknowledged log. */
			rs_log(RS_LOG_WARN, r->run_id, NULL, "rebuild: reading the run from the stream leader "
			       "instead");
			rs_run_free(st);
			if ((st = rs_run_new()) == NULL)
				return RS_ENOMEM;
			rc = read_by_gets(o, st, subj, last, r->run_id);
		}
	}
	if (rc != RS_OK) {
		rs_run_free(st);
		return rc;
	}
done:
	rs_run_free(r->state);
	r->state = st;
	r->last_seq = last;
	r->stale = 0;
	r->fresh = 1;
	r->agent = NULL;
	return rc;
}

rs_status
rs_orch_runcache_check_current(orch *o, orun *r, int *current)
{
	jsDirectGetMsgOptions dg;
	char subj[160];
	natsMsg *m = NULL;
	const char *v = NULL;
	uint64_t last = 0;
	natsStatus s;

	rs_event_subject(r->tenant, r->run_id, subj, sizeof(subj));
	jsDirectGetMsgOptions_Init(&dg);
	dg.LastBySubject = subj;
	s = log_get(o, &m, &dg);
	if (s != NATS_OK && s != NATS_NOT_FOUND)
		return rs_nats_status(s, 0);
	if (s == NATS_OK) {
		if (natsMsgHeader_Get(m, "Nats-Sequence", &v) == NATS_OK && v != NULL)
			last = strtoull(v, NULL, 10);
		natsMsg_Destroy(m);
	}
	*current = last == r->last_seq;
	return RS_OK;
}
