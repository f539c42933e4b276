/*
 * reconcile.c - find runs left between two appends and have them finished.
 *
 * A decision appends its events one at a time; a crash between two of
 * them leaves the run "not at rest" (rs_run_at_rest). The first line of
 * recovery is the command itself: it is acked only after the whole chain
 * and its effects are durable, so it comes back after AckWait and its
 * decision finishes the chain (rs_run.c, "settle"). This thread is the
 * safety net for everything else (a command that was dead-lettered, a bug,
 * a fleet restored from a backup): every RS_ORCH_SWEEP_INTERVAL_MS it reads
 * the headers of the events appended since its previous pass (the first
 * pass: the last RS_ORCH_SWEEP_LOOKBACK_S), keeps the last event of each
 * run, and sends `run.continue` for each run whose last event is older
 * than RS_ORCH_SWEEP_QUIET_MS and is neither terminal nor one of the
 * event types a run rests on (timer.scheduled, tool.dispatched,
 * llm.delta). Any orchestrator instance takes the command; the decision
 * on a run at rest is empty, so a needless continue costs one run load.
 * child.started and child.finished are not resting types: more may be
 * owed after either (the next branch, the step's end), so a parent that
 * rests on one (waiting for its children) costs that one load per event.
 *
 * Why by time and not over every run: a pass costs what was appended since
 * the last one (headers only, ~100 bytes per event), not what the stream
 * holds: at 1M runs with 10k appends per second a 30 s pass reads 300k
 * headers. A run cut more than the lookback before the first pass of a
 * fresh fleet is found only by its own next command or timer: the
 * lookback is the setting that bounds that (docs/architecture.md).
 *
 * The continue's Nats-Msg-Id is continue-<run_id>-<runseq>: instances and
 * overlapping passes that find the same run send one command.
 *
 * Runs that rest on timer.scheduled or tool.dispatched are also followed,
 * because a resting run can still be owed something: its timer, a tool
 * call requested just before it (tool.requested is followed by the call's
 * timeout timer), or the result of a call at a device.
 * Both are messages on a stream, and nats-server 2.9.10 can lose messages
 * it acknowledged when a replica resets its stream state (bench/chaos saw
 * every timer stored on TIMERS during 22 s vanish after "stream store
 * EOF"; docs/architecture.md, "Streams"). So a run still resting on the same
 * event RS_ORCH_LATE_MS later is sent run.continue, then again after twice
 * as long, and so on up to LATE_MAX_MS apart; the engine answers a
 * continue that decides nothing by publishing again what the run owes for
 * over RS_ORCH_LATE_MS (effects.c). A run sleeping an hour costs about
 * ten such loads. At most LATE_TRACK_MAX runs are followed per instance.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch.h"
#include "rs_event.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_map.h"
#include "rs_mem.h"
#include "rs_time.h"

#define SWEEP_IDLE_WAIT_MS 10000  /* no message for this long: the pass failed */
#define SWEEP_BATCH 1024          /* headers per pull request */
#define SWEEP_FETCH_MS 1000       /* the life of one pull request */
#define LATE_MAX_MS (15 * 60 * 1000)  /* a resting run is looked at least this often */
#define LATE_TRACK_MAX 200000     /* resting runs followed per instance */

/* A run resting on timer.scheduled or tool.dispatched, followed (see the
 * top). */
typedef struct {
	int64_t runseq;       /* the event it rests on */
	int64_t next_ms;      /* when to send the next continue (wall clock) */
	int64_t interval_ms;  /* doubles after each one */
} resting;

typedef struct {
	int64_t interval_ms, lookback_s, quiet_ms;
} sweep_cfg;

/* Follow key from at_ms on: first look RS_ORCH_LATE_MS later. */
static void
follow(orch *o, rs_map *m, const char *key, int64_t runseq, int64_t at_ms)
{
	resting *e = rs_xmalloc(sizeof(*e));

	e->runseq = runseq;
	e->interval_ms = o->cfg.late_ms;
	e->next_ms = at_ms + e->interval_ms;
	if (rs_map_put(m, key, e) != RS_OK)
		rs_oom(0);
}

/* Looked at now: next time twice as late, at most LATE_MAX_MS. */
static void
look_again(resting *r, int64_t now)
{
	r->interval_ms = r->interval_ms * 2 > LATE_MAX_MS ? LATE_MAX_MS : r->interval_ms * 2;
	r->next_ms = now + r->interval_ms;
}

/* The runs of this pass in `last`: follow those resting on a timer or a
 * call at a device, forget the others. */
static void
follow_resting(orch *o, rs_map *rest, json_t *last)
{
	const char *key;
	json_t *v;
	resting *e;
	static int64_t warned;

	json_object_foreach(last, key, v) {
		int64_t runseq = json_integer_value(json_object_get(v, "runseq"));
		const char *type = json_string_value(json_object_get(v, "type"));

		if (strcmp(type, "timer.scheduled") != 0 && strcmp(type, "tool.dispatched") != 0) {
			rs_map_del(rest, key);
			continue;
		}
		if ((e = rs_map_get(rest, key)) != NULL && e->runseq == runseq)
			continue;
		if (e == NULL && rs_map_count(rest) >= LATE_TRACK_MAX) {
			if (rs_now_ms() - warned > 60000) {
				warned = rs_now_ms();
				rs_warn("reconcile: following %d resting runs already: more are not checked for "
				        "lost timers", LATE_TRACK_MAX);
			}
			continue;
		}
		follow(o, rest, key, runseq, json_integer_value(json_object_get(v, "ts")) / 1000000);
	}
}

static rs_status send_continue(orch *o, const char *subj, int64_t runseq);

/* Runs resting on the same event for too long: a continue each. */
static long
check_resting(orch *o, rs_map *rest)
{
	rs_map_ent *e, *nx;
	size_t i = 0;
	int64_t now = rs_now_ms();
	long sent = 0;

	for (e = rs_map_next(rest, &i, NULL); e != NULL && !atomic_load(&o->stopping); e = nx) {
		resting *r = e->val;

		nx = rs_map_next(rest, &i, e);
		if (r->next_ms > now)
			continue;
		if (send_continue(o, e->key, -1) != RS_OK)
			continue;   /* the next pass tries again */
		sent++;
		rs_log(RS_LOG_INFO, NULL, NULL, "reconcile: %s rests on event %lld for %lld ms: sent run.continue",
		       e->key, (long long)r->runseq, (long long)(now - r->next_ms + r->interval_ms));
		look_again(r, now);
	}
	return sent;
}

static int
resting_type(const char *t)
{
	static const char *const rest[] = {
		"timer.scheduled", "tool.dispatched", "llm.delta",
		"run.completed", "run.failed", "run.cancelled", "run.timed_out", NULL
	};

	for (int i = 0; rest[i] != NULL; i++)
		if (strcmp(t, rest[i]) == 0)
			return 1;
	return 0;
}

/* "runs.<tenant>.<run_id>" -> tenant, run_id. 0 if malformed. */
static int
split_subject(const char *subj, char *tenant, size_t tcap, char *run_id, size_t rcap)
{
	const char *a, *b;

	if (strncmp(subj, "runs.", 5) != 0 || (a = subj + 5, b = strchr(a, '.')) == NULL ||
	    (size_t)(b - a) >= tcap || strlen(b + 1) >= rcap || strchr(b + 1, '.') != NULL)
		return 0;
	memcpy(tenant, a, (size_t)(b - a));
	tenant[b - a] = '\0';
	strcpy(run_id, b + 1);
	return rs_id_is_uuid(run_id) && rs_id_is_subject_token(tenant);
}

/* Publish run.continue for a run (runseq: its last event as seen, or -1
 * when unknown: the message id then carries the time, so it is not a
 * duplicate of an earlier one). */
rs_status
rs_orch_reconcile_continue(orch *o, const char *tenant, const char *run_id, int64_t runseq)
{
	rs_cmd c;
	char *body = NULL, msg_id[160], subject[160];
	size_t len;
	natsMsg *m = NULL;
	rs_status st;

	memset(&c, 0, sizeof(c));
	c.type = RS_CMD_RUN_CONTINUE;
	snprintf(c.tenant, sizeof(c.tenant), "%s", tenant);
	snprintf(c.run_id, sizeof(c.run_id), "%s", run_id);
	c.after_seq = runseq >= 0 ? runseq : rs_now_ms();
	if ((st = rs_cmd_encode(&c, &body, &len)) != RS_OK)
		return st;
	rs_cmd_subject(c.tenant, c.run_id, subject, sizeof(subject));
	rs_cmd_msg_id(&c, msg_id, sizeof(msg_id));
	st = rs_nats_msg(&m, subject, body, (int)len, "Runstream-Type", "run.continue", NULL);
	free(body);
	if (st != RS_OK)
		return st;
	st = rs_js_publish(o->nats.js, m, msg_id, -1, 5000, NULL, NULL);
	natsMsg_Destroy(m);
	return st;
}

static rs_status
send_continue(orch *o, const char *subj, int64_t runseq)
{
	char tenant[72], run_id[40];

	if (!split_subject(subj, tenant, sizeof(tenant), run_id, sizeof(run_id)))
		return RS_EINVAL;
	return rs_orch_reconcile_continue(o, tenant, run_id, runseq);
}

/*
 * The headers of `stream` (subjects `filter`) stored from start_ns on, each
 * handed to fn. 1 when the pass reached the end of the stream as it was
 * when the pass began, 0 when it stopped short (it counts as failed: the
 * next one starts from the same point), -1 when the stream could not be
 * read at all.
 */
typedef void (*header_fn)(natsMsg *m, uint64_t seq, int64_t ts_ns, void *arg);

/* Where a stream's previous pass ended, for the fallback below. */
typedef struct {
	const char *stream, *filter;
	uint64_t next_seq;    /* 0: unknown yet */
	rs_logread lr;
	int lr_ready;
} header_src;

#define FALLBACK_MAX 20000   /* messages read one by one per pass at most */

/*
 * The pass's consumer delivered nothing though the stream had more: after
 * repeated node faults, nats-server 2.9.10 sometimes leaves a new ephemeral
 * consumer without a working leader ("Consumer assignment ... not cleaned
 * up, retrying"; bench/chaos saw every pass of both instances fail for the
 * rest of a run, which stopped the repairs that depend on them). Then the
 * messages after the previous pass's last one are read from the stream
 * leader, one at a time, up to FALLBACK_MAX per pass.
 */
static int
read_fallback(orch *o, header_src *src, uint64_t stop_seq, header_fn fn, void *arg,
              int64_t *nread)
{
	uint64_t seq = src->next_seq;

	if (seq == 0)
		return 0;   /* no previous pass to go on from */
	if (!src->lr_ready &&
	    rs_logread_init(&src->lr, o->nats.nc, o->nats.js, src->stream, "leader", 5000) == RS_OK)
		src->lr_ready = 1;
	if (!src->lr_ready)
		return 0;
	while (seq <= stop_seq && *nread < FALLBACK_MAX && !atomic_load(&o->stopping)) {
		jsDirectGetMsgOptions dg;
		natsMsg *m = NULL;
		const char *hs = NULL, *ts = NULL;
		int64_t ts_ms = 0;
		natsStatus s;

		jsDirectGetMsgOptions_Init(&dg);
		dg.Sequence = seq;
		dg.NextBySubject = src->filter;
		if ((s = rs_logread_get(&src->lr, &m, &dg)) == NATS_NOT_FOUND)
			return 1;
		if (s != NATS_OK || natsMsgHeader_Get(m, "Nats-Sequence", &hs) != NATS_OK || hs == NULL) {
			natsMsg_Destroy(m);
			return 0;
		}
		if (natsMsgHeader_Get(m, "Nats-Time-Stamp", &ts) != NATS_OK || ts == NULL ||
		    rs_time_parse_rfc3339(ts, &ts_ms) != RS_OK)
			ts_ms = rs_now_ms();
		seq = strtoull(hs, NULL, 10);
		(*nread)++;
		fn(m, seq, ts_ms * 1000000LL, arg);
		natsMsg_Destroy(m);
		src->next_seq = ++seq;
	}
	return seq > stop_seq;
}

static int
read_headers(orch *o, header_src *src, int64_t start_ns, header_fn fn, void *arg, int64_t *nread)
{
	const char *stream = src->stream, *filter = src->filter;
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	uint64_t stop_seq;
	int complete = 0;
	int64_t idle_ms = 0;
	natsStatus s;

	*nread = 0;
	if ((s = js_GetStreamInfo(&si, o->nats.js, stream, NULL, &jerr)) != NATS_OK) {
		rs_warn("reconcile: cannot read %s' state: %s (%d)", stream, natsStatus_GetText(s),
		        (int)jerr);
		return -1;
	}
	stop_seq = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	if (stop_seq == 0)
		return 1;
	/* An ephemeral pull consumer, headers only, no acks: we ask for each
	 * batch, so nothing arrives that the pass did not request (a push
	 * consumer floods the connection; see rs_orch_reconcile_start). The server
	 * removes it if we die mid-pass (InactiveThreshold); nats.c deletes it
	 * when the subscription is destroyed. */
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Config.HeadersOnly = true;
	so.Config.AckPolicy = js_AckNone;
	so.Config.DeliverPolicy = js_DeliverByStartTime;
	so.Config.OptStartTime = start_ns;
	so.Config.InactiveThreshold = 30LL * 1000000000LL;
	if ((s = js_PullSubscribe(&sub, o->nats.js, filter, NULL, NULL, &so, &jerr)) != NATS_OK) {
		rs_warn("reconcile: cannot read %s: %s (%d)", stream, natsStatus_GetText(s), (int)jerr);
		return -1;
	}
	/* Done when the consumer says nothing is left (metadata NumPending),
	 * or at the last sequence the stream had when the pass began. */
	{
		jsConsumerInfo *ci = NULL;
		if (natsSubscription_GetConsumerInfo(&ci, sub, NULL, &jerr) == NATS_OK) {
			complete = ci->NumPending == 0 && ci->Delivered.Stream == 0;
			jsConsumerInfo_Destroy(ci);
		}
	}
	while (!complete && !atomic_load(&o->stopping)) {
		natsMsgList list;
		jsFetchRequest req;

		jsFetchRequest_Init(&req);
		req.Batch = SWEEP_BATCH;
		req.NoWait = true;   /* with Expires: returns with what is there */
		/* Short requests, so that SIGTERM never waits for a pass (the
		 * drain must end within the grace period): the pass fails only
		 * after SWEEP_IDLE_WAIT_MS of them with nothing. */
		req.Expires = SWEEP_FETCH_MS * 1000000LL;
		memset(&list, 0, sizeof(list));
		s = natsSubscription_FetchRequest(&list, sub, &req);
		if (s == NATS_TIMEOUT && (idle_ms += SWEEP_FETCH_MS) < SWEEP_IDLE_WAIT_MS)
			continue;
		if (s == NATS_TIMEOUT) {
			rs_warn("reconcile: %s' headers stopped coming after %lld message(s): pass "
			        "incomplete", stream, (long long)*nread);
			break;
		}
		idle_ms = 0;
		if (s != NATS_OK) {
			rs_warn("reconcile: reading %s: %s", stream, natsStatus_GetText(s));
			break;
		}
		for (int i = 0; i < list.Count; i++) {
			natsMsg *m = list.Msgs[i];
			jsMsgMetaData *md = NULL;

			if (natsMsg_GetMetaData(&md, m) != NATS_OK)
				continue;
			(*nread)++;
			fn(m, md->Sequence.Stream, md->Timestamp, arg);
			if (md->Sequence.Stream + 1 > src->next_seq)
				src->next_seq = md->Sequence.Stream + 1;
			if (md->Sequence.Stream >= stop_seq || md->NumPending == 0)
				complete = 1;
			jsMsgMetaData_Destroy(md);
		}
		natsMsgList_Destroy(&list);
	}
	natsSubscription_Unsubscribe(sub);   /* deletes the ephemeral consumer */
	natsSubscription_Destroy(sub);
	if (!complete && *nread == 0 && !atomic_load(&o->stopping)) {
		complete = read_fallback(o, src, stop_seq, fn, arg, nread);
		rs_warn("reconcile: %s read from the stream leader instead: %lld message(s)%s", stream,
		        (long long)*nread, complete ? "" : ", pass incomplete");
	}
	return complete;
}

/* RUNS: keep each run's last event (type, runseq, time). */
static void
last_event(natsMsg *m, uint64_t seq, int64_t ts_ns, void *arg)
{
	json_t *last = arg;
	const char *type = NULL, *id = NULL, *dash;

	if (natsMsgHeader_Get(m, "Runstream-Type", &type) == NATS_OK &&
	    natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && (dash = strrchr(id, '-')) != NULL)
		json_object_set_new(last, natsMsg_GetSubject(m),
		                    json_pack("{s:s, s:I, s:I}", "type", type, "runseq",
		                              (json_int_t)strtoll(dash + 1, NULL, 10), "ts",
		                              (json_int_t)ts_ns));
	(void)seq;
}

/*
 * One pass over RUNS' headers from start_ns on. Returns the number of runs
 * sent a continue (or -1 when the stream could not be read).
 */
static long
sweep_pass(orch *o, const sweep_cfg *sc, header_src *src, int64_t start_ns, int64_t *events_read,
           rs_map *rest, rs_map *reg)
{
	json_t *last = json_object(), *v;
	const char *key;
	int64_t quiet_before = (rs_now_ms() - sc->quiet_ms) * 1000000LL;
	long sent = 0;
	int complete;

	complete = read_headers(o, src, start_ns, last_event, last, events_read);
	if (complete < 0) {
		json_decref(last);
		return -1;
	}
	if (o->cfg.late_ms > 0) {
		follow_resting(o, rest, last);
		json_object_foreach(last, key, v)
			rs_map_del(reg, key + strlen("runs."));   /* it has events */
	}
	json_object_foreach(last, key, v) {
		const char *type = json_string_value(json_object_get(v, "type"));

		if (atomic_load(&o->stopping)) {
			complete = 0;   /* the next start's pass covers the rest */
			break;
		}
		if (resting_type(type) || json_integer_value(json_object_get(v, "ts")) > quiet_before)
			continue;
		if (send_continue(o, key, json_integer_value(json_object_get(v, "runseq"))) == RS_OK) {
			sent++;
			rs_log(RS_LOG_WARN, NULL, NULL, "reconcile: %s rests on %s: sent run.continue",
			       key, type);
		}
	}
	json_decref(last);
	return complete ? sent : -1;
}

/* ---- runs registered and never started -------------------------------- */

/* KV runs: a run registered (keyed <tenant>.<run_id>, as in its subjects). */
typedef struct {
	orch *o;
	rs_map *reg;
} reg_arg;

/* A KV delete or purge marker (KV-Operation header). */
static int
kv_deleted(natsMsg *m)
{
	const char *op = NULL;

	return natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op != NULL;
}

/* A command kept in KV `runs` (a run.start in its registry entry, a
 * signal's or cancel's copy), published again to cmd.<run key> under id. */
static int
send_kept(orch *o, const char *runkey, json_t *cmd, const char *type, const char *id)
{
	char subj[220], *body = rs_json_dump(cmd);
	natsMsg *m = NULL;
	int ok;

	snprintf(subj, sizeof(subj), "cmd.%s", runkey);
	ok = body != NULL && rs_nats_msg(&m, subj, body, (int)strlen(body), "Runstream-Type", type,
	                                 NULL) == RS_OK &&
	     rs_js_publish(o->nats.js, m, id, -1, 5000, NULL, NULL) == RS_OK;
	natsMsg_Destroy(m);
	free(body);
	return ok;
}

static void
registered(natsMsg *m, uint64_t seq, int64_t ts_ns, void *arg)
{
	reg_arg *a = arg;
	const char *key = natsMsg_GetSubject(m) + strlen("$KV.runs.");

	if (strncmp(natsMsg_GetSubject(m), "$KV.runs.", strlen("$KV.runs.")) != 0)
		return;
	(void)seq;
	if (kv_deleted(m)) {
		rs_map_del(a->reg, key);   /* a command's copy the engine applied */
		return;
	}
	if (rs_map_get(a->reg, key) != NULL || rs_map_count(a->reg) >= LATE_TRACK_MAX)
		return;
	follow(a->o, a->reg, key, 0, ts_ns / 1000000);
}

/*
 * The copy of a signal or cancel in KV `runs` (<run key>.cmd.<signal_id>
 * or .cmd.cancel, written by the api after CMDS took the command, deleted
 * by the engine once applied, services/api/runs_write.c): still there
 * RS_ORCH_LATE_MS later, the command may have been lost by CMDS
 * (docs/architecture.md "Streams"), so it is published again under a new
 * id; a run takes a signal once per signal_id, and a finished run takes no
 * command, so a copy of one only late changes nothing. A finished run's
 * copy is deleted here. Returns 1 if the command was sent.
 */
static int
check_copy(orch *o, rs_map *reg, rs_map_ent *e, rs_logread *runs, rs_logread *kv, int64_t now)
{
	resting *r = e->val;
	const char *cmd = strstr(e->key, ".cmd."), *tail = cmd + 5, *type = NULL;
	jsDirectGetMsgOptions dg;
	natsMsg *m = NULL;
	char subj[300], runkey[200], id[300];
	json_t *v = NULL;
	natsStatus s;
	int sent = 0;

	snprintf(runkey, sizeof(runkey), "%.*s", (int)(cmd - e->key), e->key);
	jsDirectGetMsgOptions_Init(&dg);
	snprintf(subj, sizeof(subj), "$KV.runs.%s", e->key);
	dg.LastBySubject = subj;
	if ((s = rs_logread_get(kv, &m, &dg)) == NATS_NOT_FOUND || (s == NATS_OK && kv_deleted(m))) {
		rs_map_del(reg, e->key);   /* applied */
		goto cleanup;
	}
	if (s != NATS_OK)
		goto cleanup;               /* no answer: next pass */
	v = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
	natsMsg_Destroy(m);
	m = NULL;
	snprintf(subj, sizeof(subj), "runs.%s", runkey);
	dg.LastBySubject = subj;
	if ((s = rs_logread_get(runs, &m, &dg)) == NATS_OK) {
		const char *h = NULL;
		rs_event_type et;

		if (natsMsgHeader_Get(m, "Runstream-Type", &h) == NATS_OK && h != NULL &&
		    rs_event_type_parse(h, &et) == RS_OK && rs_event_type_terminal(et)) {
			/* Finished: nothing will take it. */
			snprintf(subj, sizeof(subj), "$KV.runs.%s", e->key);
			rs_orch_kv_delete(o, subj);
			rs_map_del(reg, e->key);
			goto cleanup;
		}
	} else if (s != NATS_NOT_FOUND) {
		goto cleanup;               /* no answer: next pass */
	}
	type = json_string_value(json_object_get(v, "type"));
	if (type == NULL || (strcmp(type, "signal") != 0 && strcmp(type, "cancel") != 0)) {
		rs_map_del(reg, e->key);   /* not a copy we write */
		goto cleanup;
	}
	if (strcmp(type, "cancel") == 0)
		snprintf(id, sizeof(id), "cancel-%s-late-%lld", strchr(runkey, '.') ? strchr(runkey, '.') + 1
		         : runkey, (long long)(now / o->cfg.late_ms));
	else
		snprintf(id, sizeof(id), "signal-%s-late-%lld", tail, (long long)(now / o->cfg.late_ms));
	if ((sent = send_kept(o, runkey, v, type, id)))
		rs_warn("reconcile: the %s %s is not applied %lld ms after it was accepted: "
		        "sent again", type, e->key, (long long)(now - r->next_ms + r->interval_ms));
	look_again(r, now);
cleanup:
	natsMsg_Destroy(m);
	json_decref(v);
	return sent;
}

/*
 * A run the API (or the scheduler) registered in KV `runs` and answered
 * 202 for, with no event on RUNS RS_ORCH_LATE_MS later: its run.start may be
 * queued behind others, or lost - nats-server 2.9.10 can lose messages a
 * stream acknowledged (docs/architecture.md "Streams"; bench/chaos: a run
 * accepted and never started). The registry entry carries the start
 * command ("start"), so it is published again, under a new message id
 * (the first one may still be in CMDS' de-duplication window). A second
 * copy of a start that was only late is harmless: a run.start for a run
 * that has events decides nothing. An archived run (its events purged on
 * purpose) is left alone.
 */
static long
check_registered(orch *o, rs_map *reg, rs_logread *runs, rs_logread *kv)
{
	rs_map_ent *e, *nx;
	size_t i = 0;
	int64_t now = rs_now_ms();
	long sent = 0;

	for (e = rs_map_next(reg, &i, NULL); e != NULL && !atomic_load(&o->stopping); e = nx) {
		resting *r = e->val;
		jsDirectGetMsgOptions dg;
		natsMsg *m = NULL;
		json_t *v = NULL, *start;
		char subj[200], id[200];
		natsStatus s;

		nx = rs_map_next(reg, &i, e);
		if (r->next_ms > now)
			continue;
		if (strstr(e->key, ".cmd.") != NULL) {
			sent += check_copy(o, reg, e, runs, kv, now);
			continue;
		}
		jsDirectGetMsgOptions_Init(&dg);
		snprintf(subj, sizeof(subj), "runs.%s", e->key);
		dg.LastBySubject = subj;
		s = rs_logread_get(runs, &m, &dg);
		natsMsg_Destroy(m);
		m = NULL;
		if (s == NATS_OK) {
			rs_map_del(reg, e->key);   /* started */
			continue;
		}
		if (s != NATS_NOT_FOUND)
			continue;                   /* no answer: next pass */
		snprintf(subj, sizeof(subj), "$KV.runs.%s", e->key);
		dg.LastBySubject = subj;
		if (rs_logread_get(kv, &m, &dg) == NATS_OK)
			v = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
		natsMsg_Destroy(m);
		m = NULL;
		start = json_object_get(v, "start");
		if (v == NULL || !json_is_object(start) || json_object_get(v, "archived_at") != NULL) {
			json_decref(v);
			rs_map_del(reg, e->key);   /* nothing to start it from, or archived */
			continue;
		}
		{
			const char *dot = strchr(e->key, '.');

			snprintf(id, sizeof(id), "start-%s-late-%lld", dot != NULL ? dot + 1 : e->key,
			         (long long)(now / o->cfg.late_ms));
			if (send_kept(o, e->key, start, "run.start", id)) {
				sent++;
				rs_warn("reconcile: run %s registered %lld ms ago has no event: its run.start "
				        "published again", e->key, (long long)(now - r->next_ms + r->interval_ms));
			}
		}
		json_decref(v);
		look_again(r, now);
	}
	return sent;
}

static void *
sweep_main(void *arg)
{
	orch *o = arg;
	sweep_cfg sc = { o->cfg.sweep_interval_ms, o->cfg.sweep_lookback_s, o->cfg.sweep_quiet_ms };
	int64_t from_ms = rs_now_ms() - sc.lookback_s * 1000, pass_start, events, regs;
	int64_t reg_from_ms = from_ms;
	long sent;
	rs_map rest, reg;
	rs_logread runs_lr, kv_lr;
	int reads = 0;
	header_src runs_src = { "RUNS", "runs.>", 0, { 0 }, 0 };
	header_src reg_src = { "KV_runs", "$KV.runs.>", 0, { 0 }, 0 };

	rs_map_init(&rest, free);
	rs_map_init(&reg, free);
	while (!atomic_load(&o->stopping)) {
		pass_start = rs_now_ms();
		if (o->cfg.late_ms > 0) {
			/* Registrations first: a run registered and started within
			 * the pass is then seen started by the RUNS pass below. */
			reg_arg a = { o, &reg };
			if (read_headers(o, &reg_src, reg_from_ms * 1000000LL, registered, &a, &regs) == 1)
				reg_from_ms = pass_start - 1000;
		}
		sent = sweep_pass(o, &sc, &runs_src, from_ms * 1000000LL, &events, &rest, &reg);
		if (o->cfg.late_ms > 0) {
			rs_metric_add(rs_orch_om.sweep_continued, (double)check_resting(o, &rest));
			if (!reads)
				reads = rs_logread_init(&runs_lr, o->nats.nc, o->nats.js, "RUNS", NULL, 5000) ==
				        RS_OK && rs_logread_init(&kv_lr, o->nats.nc, o->nats.js, "KV_runs", NULL,
				                                 5000) == RS_OK;
			if (reads)
				rs_metric_add(rs_orch_om.sweep_continued,
				              (double)check_registered(o, &reg, &runs_lr, &kv_lr));
		}
		if (sent >= 0) {   /* a complete pass: the next one starts after it */
			rs_metric_add(rs_orch_om.sweep_continued, (double)sent);
			rs_metric_add(rs_orch_om.sweep_events, (double)events);
			rs_metric_observe(rs_orch_om.sweep_duration, (double)(rs_now_ms() - pass_start) / 1e3);
			/* Next pass: what this one skipped as too recent, and on. */
			from_ms = pass_start - sc.quiet_ms - 1000;
			rs_info("reconcile: %lld event(s) read, %ld run(s) sent run.continue",
			        (long long)events, sent);
		}
		for (int64_t slept = 0; slept < sc.interval_ms && !atomic_load(&o->stopping);
		     slept += 100) {
			struct timespec ts = { 0, 100 * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	rs_map_free(&rest);
	rs_map_free(&reg);
	return NULL;
}

/*
 * The sweep reads on the engine's connection with a pull consumer. It had a
 * connection of its own while it read with an ordered push consumer: on
 * the engine's connection that stalled a decision part-way about one test
 * run in four (the engine's next append was never sent, no error logged;
 * cause inside nats.c 3.4.1 not found). A pull consumer only receives the
 * batches it asks for, one at a time, with no flow-control replies or
 * heartbeat resets published from a delivery thread.
 */
rs_status
rs_orch_reconcile_start(orch *o)
{
	if (o->cfg.sweep_interval_ms == 0)
		return RS_OK;
	if (pthread_create(&o->sweep_thread, NULL, sweep_main, o) != 0)
		return RS_ERR;
	return RS_OK;
}

void
rs_orch_reconcile_join(orch *o)
{
	if (o->sweep_thread)
		pthread_join(o->sweep_thread, NULL);
}
