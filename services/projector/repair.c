/*
 * repair.c - what the runs projection does when the stream misleads it.
 *
 * consumer.c's exactly-once rests on stream sequences arriving in order and
 * meaning the same on every replica. On a cluster under faults neither
 * always holds with nats-server 2.9.10: a redelivery comes back behind newer
 * messages, and replicas can number RUNS differently after kill -9. Two
 * repairs, both reading RUNS from the stream leader (common/rs_logread.c):
 *   - a batch that passes over a sequence RUNS still holds is not applied;
 *     the durable starts again at the checkpoint (rs_proj_batch_has_hole);
 *   - a run whose next event showed a runseq gap is completed from the
 *     leader's copy, by subject and runseq (rs_proj_heal_gaps).
 * docs/projector.md ("Exactly once") says when each fires and why.
 */
#include <jansson.h>

#include "service.h"
#include "rs_mem.h"
#include "rs_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAL_MAX_EVENTS 100000   /* a run's history read back at most */

/* The reads of RUNS from the leader (batch_has_hole, heal_run). */
static int
holes_ready(rs_proj_consumer *pc)
{
	if (!pc->holes_ready &&
	    rs_logread_init(&pc->holes, pc->nats->nc, pc->nats->js, pc->stream, NULL, 5000) == RS_OK)
		pc->holes_ready = 1;
	return pc->holes_ready;
}

/*
 * A run whose next event came with a runseq gap: its history as the stream
 * leader has it, applied from the run's row on, in a transaction of its
 * own (the checkpoint does not move), and the gap's dead letters removed.
 * Why: on a cluster, nats-server 2.9.10's replicas can disagree after
 * repeated kill -9 (bench/chaos: one replica's RUNS 4 KB short, the same
 * event at sequence 2659 on one replica and 2665 on the leader), and a
 * durable consumer reads its own replica, so stream sequences and the
 * checkpoint cannot always say what was missed. The run's subject and its
 * runseq can: the leader's copy is the one every append was checked
 * against. A gap the leader cannot fill stays dead-lettered.
 */
static rs_status
heal_run(rs_proj_consumer *pc, const char *subject, int64_t upto)
{
	natsMsg **got = NULL;
	rs_proj_msg *msgs = NULL;
	rs_proj_runs_dec *dec = NULL;
	rs_proj_result res = { 0 };
	PGresult *r = NULL;
	const char *run_id = strrchr(subject, '.'), *p[1];
	size_t n = 0, ngot = 0, cap = 0, from;
	uint64_t seq = 0, cp;
	int64_t last = 0;
	rs_status st = RS_OK;

	if (run_id == NULL || !holes_ready(pc))
		return RS_EUNAVAIL;
	run_id++;
	for (;;) {
		jsDirectGetMsgOptions o;
		natsMsg *m = NULL;
		const char *hs = NULL;
		natsStatus s;

		jsDirectGetMsgOptions_Init(&o);
		o.Sequence = seq + 1;
		o.NextBySubject = subject;
		if ((s = rs_logread_get(&pc->holes, &m, &o)) == NATS_NOT_FOUND)
			break;
		if (s != NATS_OK || natsMsgHeader_Get(m, "Nats-Sequence", &hs) != NATS_OK || hs == NULL ||
		    n == HEAL_MAX_EVENTS) {
			natsMsg_Destroy(m);
			st = RS_EUNAVAIL;
			goto cleanup;
		}
		seq = strtoull(hs, NULL, 10);
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			got = rs_xrealloc(got, cap * sizeof(*got));
		}
		got[n++] = m;
		ngot = n;
	}
	msgs = rs_xcalloc(n ? n : 1, sizeof(*msgs));
	for (size_t i = 0; i < n; i++) {
		const char *hs = NULL;
		natsMsgHeader_Get(got[i], "Nats-Sequence", &hs);
		msgs[i].seq = strtoull(hs, NULL, 10);
		msgs[i].subject = subject;
		msgs[i].data = natsMsg_GetData(got[i]) ? natsMsg_GetData(got[i]) : "";
		msgs[i].len = natsMsg_GetDataLength(got[i]);
	}
	if (n == 0 || (st = rs_proj_runs_decode(msgs, n, &dec)) != RS_OK)
		goto cleanup;
	if ((st = rs_proj_exec1(pc->pg, "BEGIN", 0, NULL, NULL)) != RS_OK)
		goto cleanup;
	if ((st = rs_proj_lock_checkpoint(pc, &cp)) != RS_OK)
		goto rollback;
	p[0] = run_id;
	if ((st = rs_proj_exec1(pc->pg, "SELECT last_seq FROM runs WHERE run_id = $1::uuid", 1, p, &r)) != RS_OK)
		goto rollback;
	if (PQntuples(r) == 1)
		last = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	/* The events that continue the row, in log order: last + 1, last + 2,
	 * ... up to the newest the batch had (later ones come from the
	 * consumer like any other). A repeated or unreadable one is passed
	 * over; one further ahead means the log itself has the gap here: stop
	 * (its letters stay). */
	{
		size_t k = 0;
		int64_t want = last + 1;

		for (size_t i = 0; i < n && want <= upto; i++) {
			int64_t rsq = rs_proj_runs_dec_runseq(dec, i);
			if (rsq < want)
				continue;
			if (rsq > want)
				break;
			msgs[k++] = msgs[i];
			want++;
		}
		rs_proj_runs_dec_free(dec);
		dec = NULL;
		from = 0;
		n = k;
		if (n > 0 && (st = rs_proj_runs_decode(msgs, n, &dec)) != RS_OK)
			goto rollback;
	}
	if (from < n) {
		int filled = 1;
		char lastbuf[24];
		const char *q[2] = { run_id, lastbuf };

		/* The row is the run's truth: events recorded past it (a torn
		 * earlier attempt) give way to the leader's. */
		snprintf(lastbuf, sizeof(lastbuf), "%" PRId64, last);
		if ((st = rs_proj_exec1(pc->pg, "DELETE FROM run_events WHERE run_id = $1::uuid AND seq > $2::bigint",
		                2, q, NULL)) != RS_OK)
			goto rollback;
		if ((st = rs_proj_runs_apply_dec(pc->pg, dec, from, n, &res)) != RS_OK)
			goto rollback;
		for (size_t i = 0; i < res.ndead; i++)
			if (strncmp(res.dead[i].reason, "runseq gap", 10) == 0)
				filled = 0;   /* the log itself has the gap: keep the letters */
		p[0] = subject;
		if (filled && (st = rs_proj_exec1(pc->pg, "DELETE FROM dead_letters WHERE source = 'projector.runs' "
		                                  "AND subject = $1 AND reason LIKE 'runseq gap%'",
		                          1, p, NULL)) != RS_OK)
			goto rollback;
	}
	if ((st = rs_proj_exec1(pc->pg, "COMMIT", 0, NULL, NULL)) != RS_OK)
		goto cleanup;
	if (res.applied > 0)
		rs_warn("projector %s: run %s had a runseq gap after %" PRId64 ": %zu event(s) applied "
		        "from the stream leader's copy", pc->name, run_id, last, (size_t)res.applied);
	goto cleanup;
rollback:
	if (st != RS_EUNAVAIL)
		rs_proj_exec1(pc->pg, "ROLLBACK", 0, NULL, NULL);
	else
		rs_proj_pg_drop(pc);
cleanup:
	rs_proj_result_reset(&res);
	rs_proj_runs_dec_free(dec);
	free(msgs);
	for (size_t i = 0; i < ngot; i++)
		natsMsg_Destroy(got[i]);
	free(got);
	return st;
}

static int
is_gap(const rs_proj_dead *d)
{
	return strncmp(d->reason, "runseq gap", 10) == 0;
}

/* The runseq in a dead letter's event (0 if unreadable). */
static int64_t
dead_runseq(const rs_proj_dead *d)
{
	json_t *o = json_loadb(d->msg->data, (size_t)d->msg->len, 0, NULL);
	int64_t v = o != NULL ? (int64_t)json_integer_value(json_object_get(o, "runseq")) : 0;

	json_decref(o);
	return v;
}

/* After a committed batch: heal each run it dead-lettered for a gap, up to
 * the newest of its events the batch had. */
void
rs_proj_heal_gaps(rs_proj_consumer *pc, const rs_proj_result *res)
{
	for (size_t i = 0; i < res->ndead && pc->decode_runs; i++) {
		const char *subj = res->dead[i].msg->subject;
		int64_t upto = 0;
		int seen = 0;

		if (!is_gap(&res->dead[i]))
			continue;
		for (size_t k = 0; k < i && !seen; k++)
			seen = is_gap(&res->dead[k]) && strcmp(res->dead[k].msg->subject, subj) == 0;
		if (seen)
			continue;
		for (size_t k = i; k < res->ndead; k++)
			if (is_gap(&res->dead[k]) && strcmp(res->dead[k].msg->subject, subj) == 0 &&
			    dead_runseq(&res->dead[k]) > upto)
				upto = dead_runseq(&res->dead[k]);
		if (heal_run(pc, subj, upto) != RS_OK)
			rs_warn("projector %s: %s has a runseq gap the stream leader could not fill now",
			        pc->name, subj);
	}
}

/*
 * Runs only: 1 when the batch passes over a message RUNS still holds.
 * Exactly once rests on the checkpoint moving in stream order, so a message
 * delivered after newer ones were committed is skipped as "at or below the
 * checkpoint" and its run's next event is then a runseq gap. JetStream
 * redelivers out of order: a message handed to a pull request lost in a
 * NATS fault (a node killed, a consumer leader moved) counts as delivered
 * and comes back only after AckWait, behind newer ones (bench/chaos: one
 * run's event missing from the read model after the RUNS leader was
 * killed). A sequence missing from a batch is normal when RUNS no longer
 * has it (a run archived with --purge, the oldest messages discarded), so
 * the leader is asked for the next message from there (one read per
 * hole); if it is older than the batch's, the consumer starts again at
 * the checkpoint, which delivers in order.
 */
int
rs_proj_batch_has_hole(rs_proj_consumer *pc, const rs_proj_fetched *f)
{
	uint64_t expect = atomic_load(&pc->applied_seq) + 1;

	if (!pc->decode_runs)
		return 0;   /* KV projections: rollups leave holes everywhere */
	for (size_t i = 0; i < f->n; i++) {
		uint64_t seq = f->msgs[i].seq;
		jsDirectGetMsgOptions o;
		natsMsg *m = NULL;
		const char *hs = NULL;
		uint64_t next = 0;

		if (seq < expect)
			continue;   /* at or below the checkpoint: skipped */
		if (seq > expect) {
			if (!holes_ready(pc))
				return 0;   /* cannot tell: as before */
			jsDirectGetMsgOptions_Init(&o);
			o.Sequence = expect;
			o.NextBySubject = pc->filter;
			if (rs_logread_get(&pc->holes, &m, &o) == NATS_OK &&
			    natsMsgHeader_Get(m, "Nats-Sequence", &hs) == NATS_OK && hs != NULL)
				next = strtoull(hs, NULL, 10);
			natsMsg_Destroy(m);
			if (next >= expect && next < seq) {
				rs_warn("projector %s: seq %" PRIu64 " was passed over (delivered %" PRIu64
				        " after the checkpoint %" PRIu64 "): starting again from the checkpoint",
				        pc->name, next, seq, expect - 1);
				return 1;
			}
		}
		expect = seq + 1;
	}
	return 0;
}
