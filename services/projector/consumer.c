/*
 * consumer.c - one projection's loop: durable pull consumer, one Postgres
 * transaction per batch (rows + checkpoint), commit, then ack.
 *
 * Exactly once: the checkpoint (projection_checkpoints.last_seq) moves in
 * the same transaction as the rows, and messages at or below it are
 * skipped. At start-up the durable consumer is recreated at checkpoint + 1:
 * messages a killed predecessor held unacked would otherwise come back
 * only after AckWait, *behind* newer ones, and the newer commit would push
 * the checkpoint past them. Postgres down: the batch is kept (unacked,
 * marked in progress so the server does not redeliver it) and retried with
 * capped exponential back-off until it commits.
 *
 * Only the instance holding the leader lock (leader.c) touches the
 * consumers and commits: the loop stands down (drops its subscription,
 * leaves the durable to the new leader) when the leadership generation
 * changes, and every batch transaction checks the lock in pg_locks under
 * the checkpoint row lock (the fence) before it writes anything.
 */
#include <jansson.h>

#include "service.h"
#include "rs_mem.h"
#include "rs_consume.h"
#include "rs_log.h"
#include "rs_time.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 3000
#define COMMIT_POLL_MS 100
#define ACK_WAIT_NS (60LL * 1000000000LL)

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Sleep the back-off in small steps so a stop request is seen quickly. */
static void
backoff(rs_proj_consumer *pc, int64_t *ms)
{
	for (int64_t left = *ms; left > 0 && !atomic_load(pc->stop); left -= 50)
		sleep_ms(left < 50 ? left : 50);
	*ms = *ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *ms * 2;
}

rs_status
rs_proj_exec1(PGconn *c, const char *sql, int n, const char *const *p, PGresult **out)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
	ExecStatusType t = PQresultStatus(r);

	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
		rs_status st = rs_proj_pg_lost(c, r) ? RS_EUNAVAIL : RS_EIO;

		rs_warn("projector %s: %s", sql, PQresultErrorMessage(r));
		PQclear(r);
		return st;
	}
	if (out != NULL)
		*out = r;
	else
		PQclear(r);
	return RS_OK;
}

/* Read the checkpoint (with FOR UPDATE inside a transaction). */
static rs_status
read_checkpoint(rs_proj_consumer *pc, uint64_t *seq)
{
	const char *p[1] = { pc->name };
	PGresult *r = NULL;
	rs_status st;

	st = rs_proj_exec1(pc->pg, "SELECT last_seq FROM projection_checkpoints WHERE projection = $1",
	           1, p, &r);
	if (st != RS_OK)
		return st;
	*seq = PQntuples(r) == 1 ? strtoull(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	return RS_OK;
}

void
rs_proj_pg_drop(rs_proj_consumer *pc)
{
	PQfinish(pc->pg);
	pc->pg = NULL;
	atomic_store(&pc->pg_up, 0);
}

/* Connect (once per outage) and make the checkpoint row exist. */
static rs_status
pg_ensure(rs_proj_consumer *pc)
{
	const char *p[2] = { pc->name, pc->stream };
	uint64_t seq;
	rs_status st;

	if (pc->pg != NULL && PQstatus(pc->pg) == CONNECTION_OK)
		return RS_OK;
	if (pc->pg != NULL)
		rs_proj_pg_drop(pc);
	pc->pg = PQconnectdb(pc->pg_url);
	if (PQstatus(pc->pg) != CONNECTION_OK) {
		rs_proj_pg_drop(pc);
		return RS_EUNAVAIL;
	}
	/* The live projector writes the tables in public, whatever the role's
	 * default search_path says (a rebuild swaps new ones in there). */
	if ((st = rs_proj_exec1(pc->pg, "SET search_path TO public", 0, NULL, NULL)) != RS_OK)
		goto fail;
	if (pc->prepare_runs && (st = rs_proj_runs_prepare(pc->pg)) != RS_OK)
		goto fail;
	st = rs_proj_exec1(pc->pg, "INSERT INTO projection_checkpoints (projection, stream) VALUES ($1, $2) "
	                   "ON CONFLICT (projection) DO NOTHING", 2, p, NULL);
	if (st != RS_OK)
		goto fail;
	if ((st = read_checkpoint(pc, &seq)) != RS_OK)
		goto fail;
	atomic_store(&pc->applied_seq, seq);
	atomic_store(&pc->pg_up, 1);
	rs_info("projector %s: connected to Postgres, checkpoint %" PRIu64, pc->name, seq);
	return RS_OK;
fail:
	rs_proj_pg_drop(pc);
	return st == RS_OK ? RS_EUNAVAIL : st;
}

/* ---- the handover between the consumer loop and the commit thread ----
 * The loop (common/rs_consume.h) pulls a batch the moment the server has
 * one and decodes it here (no Postgres); the commit thread applies it in
 * one transaction and acks it. room() lets the loop ask for the next batch
 * only when the one-batch slot is free: batch N+1 is pulled and decoded
 * while batch N is in Postgres, never more. Every message is TAKEN: acks
 * stay on the commit thread, after the commit. */

static void
fetched_free(rs_proj_fetched *f)
{
	rs_proj_runs_dec_free(f->dec);
	free(f->msgs);
	natsMsgList_Destroy(&f->list);
	memset(f, 0, sizeof(*f));
}

/* The rs_proj_msg views (and, for runs, the decoded events) of a batch. */
static void
decode_batch(rs_proj_consumer *pc, rs_proj_fetched *f)
{
	if ((f->msgs = calloc((size_t)f->list.Count, sizeof(*f->msgs))) == NULL)
		return; /* the commit thread reports RS_ENOMEM */
	for (int i = 0; i < f->list.Count; i++) {
		natsMsg *m = f->list.Msgs[i];
		rs_proj_msg *pm = &f->msgs[f->n];
		jsMsgMetaData *md = NULL;
		const char *op = NULL;

		if (natsMsg_GetMetaData(&md, m) != NATS_OK)
			continue; /* not a JetStream message (a status): nothing to ack */
		pm->seq = md->Sequence.Stream;
		pm->ts_ms = md->Timestamp / 1000000;
		pm->subject = natsMsg_GetSubject(m);
		pm->data = natsMsg_GetData(m) ? natsMsg_GetData(m) : "";
		pm->len = natsMsg_GetDataLength(m);
		if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK)
			pm->kv_op = op;
		jsMsgMetaData_Destroy(md);
		f->n++;
	}
	/* A failed decode (memory) leaves dec NULL: apply then decodes itself. */
	if (pc->decode_runs && f->n > 0 && rs_proj_runs_decode(f->msgs, f->n, &f->dec) != RS_OK)
		f->dec = NULL;
}

static void
on_batch(void *arg, natsMsg **msgs, int n, rs_consume_out *out)
{
	rs_proj_consumer *pc = arg;
	rs_proj_fetched f;

	memset(&f, 0, sizeof(f));
	if ((f.list.Msgs = calloc((size_t)n, sizeof(*f.list.Msgs))) == NULL)
		rs_oom(0);
	for (int i = 0; i < n; i++) {
		f.list.Msgs[i] = msgs[i];
		out[i].disp = RS_CONSUME_TAKEN;
	}
	f.list.Count = n;
	f.s = NATS_OK;
	decode_batch(pc, &f);
	pthread_mutex_lock(&pc->fmu);
	while (pc->f_ready && !pc->f_quit)
		pthread_cond_wait(&pc->fcv, &pc->fmu);
	if (pc->f_quit) {
		/* Standing down: the batch stays unacked for whoever leads next. */
		pthread_mutex_unlock(&pc->fmu);
		fetched_free(&f);
		return;
	}
	pc->f_slot = f;
	pc->f_ready = 1;
	pthread_cond_broadcast(&pc->fcv);
	pthread_mutex_unlock(&pc->fmu);
}

static int
room(void *arg, int64_t wait_ms)
{
	rs_proj_consumer *pc = arg;
	struct timespec ts;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(wait_ms / 1000);
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&pc->fmu);
	while (pc->f_ready && !pc->f_quit)
		if (pthread_cond_timedwait(&pc->fcv, &pc->fmu, &ts) != 0)
			break;
	r = (!pc->f_ready && !pc->f_quit) ? pc->batch : 0;
	pthread_mutex_unlock(&pc->fmu);
	return r;
}

/* The commit thread: the next decoded batch, waiting up to wait_ms. */
static int
take_batch(rs_proj_consumer *pc, rs_proj_fetched *out, int64_t wait_ms)
{
	struct timespec ts;
	int got = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(wait_ms / 1000);
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&pc->fmu);
	while (!pc->f_ready)
		if (pthread_cond_timedwait(&pc->fcv, &pc->fmu, &ts) != 0)
			break;
	if (pc->f_ready) {
		*out = pc->f_slot;
		memset(&pc->f_slot, 0, sizeof(pc->f_slot));
		pc->f_ready = 0;
		got = 1;
		pthread_cond_broadcast(&pc->fcv);   /* room for the next one */
	}
	pthread_mutex_unlock(&pc->fmu);
	return got;
}

/* Stop the loop and forget its subscription and any batch it decoded,
 * unacked (the next setup starts again from the checkpoint). */
static void
consumer_drop(rs_proj_consumer *pc)
{
	if (pc->cons == NULL)
		return;
	pthread_mutex_lock(&pc->fmu);
	pc->f_quit = 1;
	pthread_cond_broadcast(&pc->fcv);
	pthread_mutex_unlock(&pc->fmu);
	rs_consume_join(pc->cons);
	pthread_mutex_lock(&pc->fmu);
	if (pc->f_ready)
		fetched_free(&pc->f_slot);
	pc->f_ready = 0;
	pthread_mutex_unlock(&pc->fmu);
	rs_consume_free(pc->cons);
	pc->cons = NULL;
}

/* (Re)create the durable at checkpoint + 1 and start its consumer loop. */
static rs_status
consumer_setup(rs_proj_consumer *pc)
{
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	s = js_DeleteConsumer(pc->nats->js, pc->stream, pc->durable, NULL, &jerr);
	if (s != NATS_OK && s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr) {
		rs_warn("projector %s: delete consumer: %s", pc->name, natsStatus_GetText(s));
		return RS_EUNAVAIL;
	}
	jsConsumerConfig_Init(&cc);
	cc.Durable = pc->durable;
	cc.Description = "rs-projector: read models (recreated at the checkpoint on start)";
	cc.FilterSubject = pc->filter;
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = ACK_WAIT_NS;
	cc.MaxAckPending = 1000000;
	cc.MaxDeliver = -1;
	cc.DeliverPolicy = js_DeliverByStartSequence;
	cc.OptStartSeq = atomic_load(&pc->applied_seq) + 1;
	jerr = 0;
	s = js_AddConsumer(&ci, pc->nats->js, pc->stream, &cc, NULL, &jerr);
	jsConsumerInfo_Destroy(ci);
	if (s != NATS_OK) {
		rs_warn("projector %s: add consumer on %s: %s (%d)", pc->name, pc->stream,
		        natsStatus_GetText(s), (int)jerr);
		return RS_EUNAVAIL;
	}
	{
		rs_consume_cfg rc = {
			.name = pc->durable,
			.stream = pc->stream,
			.durable = pc->durable,
			.filter = pc->filter,
			.batch = pc->batch,
			.on_batch = on_batch,
			.room = room,
			.arg = pc,
		};
		pc->f_quit = 0;
		if (rs_consume_start(&pc->cons, pc->nats->nc, pc->nats->js, &rc) != RS_OK) {
			rs_warn("projector %s: cannot bind to %s/%s", pc->name, pc->stream, pc->durable);
			pc->cons = NULL;
			return RS_EUNAVAIL;
		}
	}
	rs_info("projector %s: consuming %s from seq %" PRIu64, pc->name, pc->stream,
	        (uint64_t)cc.OptStartSeq);
	return RS_OK;
}

/* Inside a transaction: take the batch lock (if any), then lock the
 * checkpoint row and check that our leader lock is still held (the fence).
 * The row lock serialises batches of the projection across processes, so a
 * deposed leader's last batch and the new leader's first one cannot
 * interleave: the later one sees the earlier one's checkpoint and skips.
 * RS_ECONFLICT: not (or no longer) the leader. */
rs_status
rs_proj_lock_checkpoint(rs_proj_consumer *pc, uint64_t *seq)
{
	char lockbuf[24], pidbuf[24], keybuf[24];
	const char *p[3] = { pc->name, pidbuf, keybuf };
	PGresult *r = NULL;
	rs_status st;
	int held;

	if (pc->lock_key != 0) {
		/* Serialises with a rebuild's swap: taken before reading the
		 * checkpoint, so after a swap we see the rebuilt one. */
		snprintf(lockbuf, sizeof(lockbuf), "%" PRId64, pc->lock_key);
		p[0] = lockbuf;
		st = rs_proj_exec1(pc->pg, "SELECT pg_advisory_xact_lock($1::bigint)", 1, p, NULL);
		p[0] = pc->name;
		if (st != RS_OK)
			return st;
	}
	snprintf(pidbuf, sizeof(pidbuf), "%" PRIu64, pc->gen & 0xffffffffu);
	snprintf(keybuf, sizeof(keybuf), "%lld", RS_PROJ_LOCK_LEADER);
	st = rs_proj_exec1(pc->pg, "SELECT last_seq, EXISTS (SELECT 1 FROM pg_locks WHERE "
	                   "locktype = 'advisory' AND granted AND pid = $2::int AND objsubid = 1 "
	                   "AND ((classid::bigint << 32) | objid::bigint) = $3::bigint) "
	                   "FROM projection_checkpoints WHERE projection = $1 "
	                   "FOR UPDATE OF projection_checkpoints", 3, p, &r);
	if (st != RS_OK)
		return st;
	*seq = PQntuples(r) == 1 ? strtoull(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	held = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
	PQclear(r);
	if (!held || rs_proj_leader_gen(pc->leader) != pc->gen) {
		rs_warn("projector %s: leader lock not held by this instance; not committing", pc->name);
		return RS_ECONFLICT;
	}
	return RS_OK;
}

/* One transaction: lock, checkpoint, rows, checkpoint. *committed_to is the
 * new checkpoint. Applies f->msgs[from..to) (stream order). */
static rs_status
txn_apply(rs_proj_consumer *pc, const rs_proj_fetched *f, size_t from, size_t to,
          rs_proj_result *res, uint64_t *committed_to)
{
	const rs_proj_msg *msgs = f->msgs;
	char seqbuf[24], tbuf[40];
	const char *p[3];
	uint64_t cp;
	size_t first = from;
	int64_t last_ts = 0;
	rs_status st;

	if ((st = rs_proj_exec1(pc->pg, "BEGIN", 0, NULL, NULL)) != RS_OK)
		return st;
	if ((st = rs_proj_lock_checkpoint(pc, &cp)) != RS_OK)
		goto rollback;
	while (first < to && msgs[first].seq <= cp)
		first++;
	res->skipped += first - from;
	if (first < to) {
		if (f->dec != NULL)
			st = rs_proj_runs_apply_dec(pc->pg, f->dec, first, to, res);
		else
			st = pc->apply(pc->pg, msgs + first, to - first, res);
		if (st != RS_OK)
			goto rollback;
		last_ts = msgs[to - 1].ts_ms;
		snprintf(seqbuf, sizeof(seqbuf), "%" PRIu64, msgs[to - 1].seq);
		rs_time_rfc3339(res->last_event_ms ? res->last_event_ms : last_ts, tbuf, sizeof(tbuf));
		p[0] = pc->name;
		p[1] = seqbuf;
		p[2] = tbuf;
		st = rs_proj_exec1(pc->pg, "UPDATE projection_checkpoints SET last_seq = $2, "
		                   "last_event_at = $3, updated_at = now() WHERE projection = $1",
		           3, p, NULL);
		if (st != RS_OK)
			goto rollback;
		cp = msgs[to - 1].seq;
	}
	if ((st = rs_proj_exec1(pc->pg, "COMMIT", 0, NULL, NULL)) != RS_OK)
		return st;
	*committed_to = cp;
	if (last_ts != 0)
		atomic_store(&pc->applied_ts_ms, last_ts);
	return RS_OK;
rollback:
	if (st != RS_EUNAVAIL)
		rs_proj_exec1(pc->pg, "ROLLBACK", 0, NULL, NULL);
	return st;
}

/* Store one dead letter and move the checkpoint past its message, without
 * its rows (the message-by-message fallback for a rejected message). */
static rs_status
dead_txn(rs_proj_consumer *pc, const rs_proj_msg *m, const rs_proj_result *one,
         uint64_t *committed_to)
{
	char seqbuf[24];
	const char *p[2] = { pc->name, seqbuf };
	uint64_t cp;
	rs_status st;

	snprintf(seqbuf, sizeof(seqbuf), "%" PRIu64, m->seq);
	if ((st = rs_proj_exec1(pc->pg, "BEGIN", 0, NULL, NULL)) != RS_OK)
		return st;
	st = rs_proj_lock_checkpoint(pc, &cp);
	if (st == RS_OK)
		st = rs_proj_store_dead(pc->pg, pc->dlq_source, one);
	if (st == RS_OK)
		st = rs_proj_exec1(pc->pg, "UPDATE projection_checkpoints SET last_seq = $2, updated_at = now() "
		                   "WHERE projection = $1 AND last_seq < $2", 2, p, NULL);
	if (st != RS_OK) {
		if (st != RS_EUNAVAIL)
			rs_proj_exec1(pc->pg, "ROLLBACK", 0, NULL, NULL);
		return st;
	}
	if ((st = rs_proj_exec1(pc->pg, "COMMIT", 0, NULL, NULL)) == RS_OK)
		*committed_to = m->seq;
	return st;
}

/* Postgres rejected the batch (not an outage): apply message by message so
 * only the offending one is dead-lettered with Postgres' reason. */
static rs_status
apply_singly(rs_proj_consumer *pc, const rs_proj_fetched *f, rs_proj_result *res,
             uint64_t *committed_to)
{
	const rs_proj_msg *msgs = f->msgs;
	rs_status st;

	for (size_t i = 0; i < f->n; i++) {
		rs_proj_result one = { 0 };
		char why[256];

		st = txn_apply(pc, f, i, i + 1, &one, committed_to);
		if (st == RS_EIO) {
			snprintf(why, sizeof(why), "rejected by Postgres: %s", rs_proj_last_pg_error());
			rs_proj_result_reset(&one);
			if ((st = rs_proj_add_dead(&one, &msgs[i], "%s", why)) != RS_OK)
				return st;
			st = dead_txn(pc, &msgs[i], &one, committed_to);
		}
		/* Merge what this message produced into the batch result. */
		res->applied += one.applied;
		res->skipped += one.skipped;
		if (one.last_event_ms > res->last_event_ms)
			res->last_event_ms = one.last_event_ms;
		for (size_t k = 0; k < one.ndead && st == RS_OK; k++)
			st = rs_proj_add_dead(res, one.dead[k].msg, "%s", one.dead[k].reason);
		rs_proj_result_reset(&one);
		if (st != RS_OK)
			return st;
	}
	return RS_OK;
}

static void
mark_in_progress(natsMsgList *list)
{
	for (int i = 0; i < list->Count; i++)
		natsMsg_InProgress(list->Msgs[i], NULL);
}

/* Commit the batch, whatever it takes (except a stop request while
 * Postgres is down: then the batch stays unacked for the next start). */
static rs_status
commit_batch(rs_proj_consumer *pc, rs_proj_fetched *f, rs_proj_result *res)
{
	int64_t wait = BACKOFF_MIN_MS, last_progress = rs_mono_ms();
	uint64_t cp = 0;
	rs_status st;

	for (;;) {
		if (rs_proj_leader_gen(pc->leader) != pc->gen)
			return RS_ECONFLICT; /* deposed: the batch is the new leader's */
		if ((st = pg_ensure(pc)) == RS_OK) {
			int64_t t0 = rs_mono_us();

			rs_proj_result_reset(res);
			st = txn_apply(pc, f, 0, f->n, res, &cp);
			if (st == RS_EIO) {
				rs_warn("projector %s: batch rejected, applying message by message", pc->name);
				rs_proj_result_reset(res);
				st = apply_singly(pc, f, res, &cp);
			}
			if (st == RS_OK) {
				atomic_store(&pc->applied_seq, cp);
				rs_metric_observe(pc->m_batch_s, (double)(rs_mono_us() - t0) / 1e6);
				return RS_OK;
			}
			if (st == RS_ENOMEM || st == RS_ECONFLICT)
				return st;
			rs_proj_pg_drop(pc);
		}
		rs_metric_inc(pc->m_pg_retries);
		if (atomic_load(pc->stop))
			return RS_ECLOSED;
		rs_warn("projector %s: Postgres unavailable, retrying in %" PRId64 " ms", pc->name, wait);
		/* Keep the server from redelivering what we still hold: this
		 * batch and the next one, if the fetch thread has it already. */
		if (rs_mono_ms() - last_progress > 10000) {
			mark_in_progress(&f->list);
			pthread_mutex_lock(&pc->fmu);
			if (pc->f_ready)
				mark_in_progress(&pc->f_slot.list);
			pthread_mutex_unlock(&pc->fmu);
			last_progress = rs_mono_ms();
		}
		backoff(pc, &wait);
	}
}

static void
sweep_presence(rs_proj_consumer *pc)
{
	char ttl[24];
	const char *p[1] = { ttl };

	if (pc->presence_ttl_s <= 0 || pg_ensure(pc) != RS_OK)
		return;
	snprintf(ttl, sizeof(ttl), "%" PRId64, pc->presence_ttl_s);
	if (rs_proj_exec1(pc->pg, "UPDATE devices SET online = false, updated_at = now() WHERE online "
	                  "AND last_seen < now() - make_interval(secs => $1::bigint)", 1, p, NULL)
	    == RS_EUNAVAIL)
		rs_proj_pg_drop(pc);
}

static rs_status
process(rs_proj_consumer *pc, rs_proj_fetched *f)
{
	rs_proj_result res = { 0 };
	rs_status st;

	st = commit_batch(pc, f, &res);
	if (st == RS_OK) {
		for (int i = 0; i < f->list.Count; i++)
			natsMsg_Ack(f->list.Msgs[i], NULL);
		for (size_t i = 0; i < res.ndead; i++) {
			const rs_proj_msg *m = res.dead[i].msg;

			rs_warn("projector %s: dead letter seq %" PRIu64 " (%s): %s", pc->name, m->seq,
			        m->subject, res.dead[i].reason);
			rs_dlq_publish(pc->nats->js, "projector", m->subject, m->seq, m->data, m->len,
			               res.dead[i].reason);
		}
		rs_metric_add(pc->m_applied, (double)res.applied);
		rs_metric_add(pc->m_dead, (double)res.ndead);
		rs_metric_inc(pc->m_batches);
		rs_proj_heal_gaps(pc, &res);
	}
	rs_proj_result_reset(&res);
	return st;
}

/* Where the consumer starts: the checkpoint as committed now (another
 * instance may have moved it while this one stood by). */
static rs_status
restart_point(rs_proj_consumer *pc)
{
	uint64_t seq;
	rs_status st = read_checkpoint(pc, &seq);

	if (st == RS_OK)
		atomic_store(&pc->applied_seq, seq);
	else if (st == RS_EUNAVAIL)
		rs_proj_pg_drop(pc);
	return st;
}

/* Leadership changed: forget the consumer (the durable is the leader's to
 * recreate) and any batch it delivered, unacked. */
static void
stand_down(rs_proj_consumer *pc)
{
	if (pc->cons != NULL)
		rs_info("projector %s: not the leader; consumer stopped", pc->name);
	consumer_drop(pc);
	pc->gen = 0;
	atomic_store(&pc->running, 0);
}

/* The durable is gone or the connection closed: set it up again. */
static int
consumer_lost(rs_proj_consumer *pc)
{
	natsStatus s = rs_consume_status(pc->cons);

	return s == NATS_NO_RESPONDERS || s == NATS_NOT_FOUND || s == NATS_INVALID_SUBSCRIPTION ||
	       s == NATS_CONNECTION_CLOSED;
}

static void *
consumer_main(void *arg)
{
	rs_proj_consumer *pc = arg;
	int64_t wait = BACKOFF_MIN_MS, last_sweep = 0;

	while (!atomic_load(pc->stop)) {
		rs_proj_fetched f;
		uint64_t gen = rs_proj_leader_gen(pc->leader);
		rs_status st;

		if (gen != pc->gen)
			stand_down(pc);
		if (gen == 0) {
			sleep_ms(100);
			continue;
		}
		if (pc->cons == NULL) {
			/* Set up under this generation: the fence checks its pid. */
			pc->gen = gen;
			if (pg_ensure(pc) != RS_OK || restart_point(pc) != RS_OK ||
			    consumer_setup(pc) != RS_OK) {
				pc->gen = 0;
				backoff(pc, &wait);
				continue;
			}
			wait = BACKOFF_MIN_MS;
			atomic_store(&pc->running, 1);
		}
		if (pc->presence_ttl_s > 0 && rs_mono_ms() - last_sweep > 5000) {
			sweep_presence(pc);
			last_sweep = rs_mono_ms();
		}
		/* The wait bounds how soon a leadership change or a stop is seen;
		 * a batch is taken the moment the loop hands it over. */
		if (!take_batch(pc, &f, COMMIT_POLL_MS)) {
			if (consumer_lost(pc)) {
				rs_warn("projector %s: consumer lost (%s); setting it up again", pc->name,
				        natsStatus_GetText(rs_consume_status(pc->cons)));
				consumer_drop(pc);
				atomic_store(&pc->running, 0);
				backoff(pc, &wait);
			}
			continue;
		}
		if (f.msgs != NULL && rs_proj_batch_has_hole(pc, &f)) {
			fetched_free(&f);
			consumer_drop(pc);   /* recreated at the checkpoint, in order */
			atomic_store(&pc->running, 0);
			backoff(pc, &wait);
			continue;
		}
		wait = BACKOFF_MIN_MS;
		st = f.msgs == NULL ? RS_ENOMEM : process(pc, &f);
		fetched_free(&f);
		if (st == RS_ECONFLICT) {
			stand_down(pc);
		} else if (st == RS_ENOMEM) {
			rs_error("projector %s: out of memory applying a batch; retrying", pc->name);
			consumer_drop(pc); /* recreate at the checkpoint: nothing is lost */
			backoff(pc, &wait);
		}
	}
	/* A batch decoded ahead stays unacked: the next start resumes from the
	 * checkpoint. */
	consumer_drop(pc);
	return NULL;
}

rs_status
rs_proj_consumer_start(rs_proj_consumer *pc)
{
	const char *labels = pc->labels;
	pthread_condattr_t ca;

	pc->m_applied = rs_counter("rs_projector_events_applied_total",
	                           "Messages applied to the read models", labels);
	pc->m_dead = rs_counter("rs_projector_dead_letters_total",
	                        "Messages dead-lettered by the projector", labels);
	pc->m_batches = rs_counter("rs_projector_batches_total", "Committed batches", labels);
	pc->m_batch_s = rs_histogram("rs_projector_batch_seconds",
	                             "Time to apply and commit one batch", labels);
	pc->m_pg_retries = rs_counter("rs_projector_pg_retries_total",
	                              "Batch attempts that found Postgres unavailable", labels);
	pthread_mutex_init(&pc->fmu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pc->fcv, &ca);
	pthread_condattr_destroy(&ca);
	pc->f_ready = pc->f_quit = 0;
	pc->cons = NULL;
	if (pthread_create(&pc->th, NULL, consumer_main, pc) != 0)
		return RS_ERR;
	return RS_OK;
}

void
rs_proj_consumer_join(rs_proj_consumer *pc)
{
	pthread_join(pc->th, NULL);
	if (pc->pg != NULL)
		rs_proj_pg_drop(pc);
}
