/*
 * engine.c - the single thread that carries out commands.
 *
 * For each command: find the run (cache, else rebuild from its events),
 * resolve its agent, rs_run_decide(), append the events one after the
 * other (each with Nats-Expected-Last-Subject-Sequence = the stream
 * sequence of the run's previous event, so a second writer is refused),
 * evolve the cached state as each event becomes durable, publish the
 * effects, and only then ack the command. Commands for one run wait in
 * that run's queue while it is busy; different runs proceed concurrently,
 * their publishes pipelined through appender.c. See docs/architecture.md
 * ("Orchestrator") for why the history can never fork.
 *
 * There is no engine thread: the fetcher (rs_orch_engine_commands) and the ack
 * delivery thread (rs_orch_engine_puback) call in under o->engine_mu (orch.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch.h"
#include "rs_log.h"
#include "rs_time.h"

#define CONFLICT_RETRIES 20
#define UNKNOWN_RUN_RETRIES 9   /* deliveries (~2 min) before "unknown run" is poison */

enum { END_ACK, END_NAK, END_TERMED };

static void begin(orch *o, orun *r);

static void
log_cmd(rs_log_level lvl, const pending_cmd *p, const char *fmt, const char *detail)
{
	char tid[33];

	rs_orch_trace_id_of(p->cmd.traceparent, tid);
	rs_log(lvl, p->cmd.run_id, tid[0] ? tid : NULL, fmt, rs_cmd_type_name(p->cmd.type), detail);
}

static void
drop_pending(orch *o, pending_cmd *p, int decoded)
{
	natsMsg_Destroy(p->msg);
	if (decoded)
		rs_cmd_free(&p->cmd);
	free(p);
	if (atomic_fetch_sub(&o->inflight, 1) == 1)
		pthread_cond_broadcast(&o->idle_cv);
	rs_metric_set(rs_orch_om.inflight, (double)atomic_load(&o->inflight));
}

/* The run is idle again: start its next queued command, or let it go. */
static void
run_idle(orch *o, orun *r)
{
	rs_run_status st;

	if (r->waitq != NULL) {
		r->cur = r->waitq;
		r->waitq = r->cur->next;
		if (r->waitq == NULL)
			r->waitq_tail = NULL;
		r->cur->next = NULL;
		r->busy = 1;
		r->attempts = 0;
		begin(o, r);
		return;
	}
	st = rs_run_get_status(r->state);
	/* Finished runs leave the cache: late commands for them rebuild. */
	if (st == RS_RUN_NONE || rs_run_status_terminal(st) || r->stale) {
		rs_orch_runcache_remove(o->cache, r);
		return;
	}
	rs_orch_runcache_touch(o->cache, r);
	rs_orch_runcache_trim(o->cache);
}

static void
end_cmd(orch *o, orun *r, int how, int64_t nak_delay_ms)
{
	pending_cmd *p = r->cur;

	r->cur = NULL;
	r->busy = 0;
	r->fresh = 0;
	rs_decision_free(&r->dec);
	memset(&r->dec, 0, sizeof(r->dec));
	if (how == END_ACK) {
		natsMsg_Ack(p->msg, NULL);
		rs_metric_inc(rs_orch_om.commands[p->cmd.type]);
		rs_metric_observe(rs_orch_om.command_duration, (double)(rs_mono_us() - p->t0_us) / 1e6);
	} else if (how == END_NAK) {
		/* Redeliveries back off: a NATS fault (no RUNS leader for a few
		 * seconds) must not use up RS_ORCH_MAX_DELIVER in seconds and
		 * dead-letter commands that would have succeeded a moment later
		 * (bench/chaos dead-lettered 14 that way during one election).
		 * 100 ms doubling per delivery, to 30 s: 25 deliveries span
		 * about nine minutes. */
		int64_t backoff = 100LL << (p->ndelivered < 9 ? p->ndelivered : 9);

		if (backoff > 30000)
			backoff = 30000;
		natsMsg_NakWithDelay(p->msg, nak_delay_ms > backoff ? nak_delay_ms : backoff, NULL);
	}
	drop_pending(o, p, 1);
	run_idle(o, r);
}

static void
poison_cur(orch *o, orun *r, const char *reason)
{
	if (rs_run_get_status(r->state) == RS_RUN_NONE)
		rs_orch_poison_tell_parent(o, &r->cur->cmd, reason);
	rs_orch_poison(o, r->cur->msg, r->run_id, reason);
	end_cmd(o, r, END_TERMED, 0);
}

/*
 * The decision's events and effects are all acked. A decision that stopped
 * at its bound (rs_decision.more: a long chain of inline steps, or a cut
 * decision finished before the command itself) is followed by another
 * decision of the same command; the command is acked only when nothing is
 * owed, so a crash in between redelivers it and the chain goes on.
 */
static void
effects_done(orch *o, orun *r, int failed)
{
	if (failed) {
		end_cmd(o, r, END_NAK, 500);
		return;
	}
	if (r->dec.more) {
		rs_decision_free(&r->dec);
		memset(&r->dec, 0, sizeof(r->dec));
		r->attempts = 0;
		begin(o, r);
		return;
	}
	end_cmd(o, r, END_ACK, 0);
}

static void
finish_effects(orch *o, orun *r)
{
	const rs_cmd *c = &r->cur->cmd;
	int64_t due = 0;
	int n = 0;
	rs_status st = rs_orch_effects_send(o, r, &r->dec, &n);

	/* Admission: a queued gated run joins its gates, a finished one
	 * leaves them, before the command is acked (gate.c). */
	if (st == RS_OK && !r->dec.more &&
	    rs_orch_gate_settle(o, r->state, r->cur->ndelivered > 1) != RS_OK)
		st = RS_ERR;

	/* A timer.fire that came early (another instance's clock ran ahead)
	 * decides nothing for the timer, but it is acked with this decision
	 * (empty, or the end of a decision a crash cut short): put the fire
	 * back on TIMERS for the rest of its time. The one place for it. */
	if (st == RS_OK && !r->dec.more && c->type == RS_CMD_TIMER_FIRE &&
	    rs_run_timer_due(r->state, c->timer_id, &due) == RS_OK && due > rs_now_ms()) {
		if (rs_orch_effects_requeue_timer(o, r, c) == RS_OK)
			n++;
		else
			st = RS_ERR;
	}

	/* A run.continue that decided nothing (the run rests): whatever it
	 * owes for too long is published again (effects.c). */
	if (st == RS_OK && c->type == RS_CMD_RUN_CONTINUE && r->dec.nevents == 0 && !r->dec.more) {
		int late = 0;
		st = rs_orch_effects_send_late(o, r, &late);
		n += late;
	}

	/* A signal or cancel is in the run now: its copy can go. */
	if (st == RS_OK && !r->dec.more && (c->type == RS_CMD_SIGNAL || c->type == RS_CMD_CANCEL))
		rs_orch_effects_forget_copy(o, c);

	r->effects_left = n;
	r->effects_failed = st != RS_OK;
	if (n == 0)
		effects_done(o, r, st != RS_OK);
}

static void
send_event(orch *o, orun *r)
{
	rs_status st;

	r->sent_us = rs_mono_us();
	st = rs_orch_event_send(o, r, &r->dec.events[r->next_ev]);
	if (st != RS_OK) {
		/* Whether earlier events of this decision landed is known (they
		 * were acked), but be plain: rebuild before the next command. */
		r->stale = 1;
		log_cmd(RS_LOG_WARN, r->cur, "%s: cannot append: %s", rs_status_str(st));
		end_cmd(o, r, END_NAK, 200);
	}
}

static void
unknown_run(orch *o, orun *r)
{
	/* A command can overtake the run.start it follows: two instances
	 * share the queue, and under NATS faults a run.start can wait
	 * seconds for its first append (bench/chaos saw a signal sent right
	 * after a 202 dead-lettered after 3 s, and its run wait forever).
	 * So back off, 1 s doubling to 30 s, for about two minutes before
	 * calling it poison (fewer deliveries if RS_ORCH_MAX_DELIVER is
	 * lower). */
	int64_t tries = o->cfg.max_deliver < UNKNOWN_RUN_RETRIES ? o->cfg.max_deliver : UNKNOWN_RUN_RETRIES;

	if ((int64_t)r->cur->ndelivered < tries) {
		int64_t d = r->cur->ndelivered < 6 ? 1000LL << (r->cur->ndelivered > 0 ? r->cur->ndelivered - 1 : 0)
		                                   : 30000;
		end_cmd(o, r, END_NAK, d > 30000 ? 30000 : d);
	} else
		poison_cur(o, r, "unknown run: no events for a non-start command");
}

static int
resolve_agent(orch *o, orun *r)
{
	const rs_cmd *c = &r->cur->cmd;
	const char *scope;
	char err[300], why[360];
	rs_status st;

	if (r->agent != NULL)
		return 0;
	if (rs_run_get_status(r->state) == RS_RUN_NONE)
		st = rs_orch_agents_get(o, r->tenant, c->agent, c->version, &r->agent, err, sizeof(err));
	else
		st = rs_orch_agents_get(o, r->tenant, rs_run_get_agent(r->state),
		                rs_run_get_version(r->state), &r->agent, err, sizeof(err));
	/* A child run of a parallel or foreach step walks one of its agent's
	 * step lists (borrowed from the cached agent, like the agent). */
	scope = rs_run_get_status(r->state) == RS_RUN_NONE ? c->scope : rs_run_get_scope(r->state);
	if (st == RS_OK && scope != NULL && *scope != '\0' &&
	    (r->agent = rs_agent_scope(r->agent, scope)) == NULL) {
		snprintf(err, sizeof(err), "agent has no step list \"%.200s\"", scope);
		st = RS_ENOTFOUND;
	}
	if (st == RS_OK)
		return 0;
	if (st == RS_ENOTFOUND) {
		snprintf(why, sizeof(why), "agent missing: %s", err);
		poison_cur(o, r, why);
	} else {
		log_cmd(RS_LOG_WARN, r->cur, "%s: agent lookup failed: %s", err);
		end_cmd(o, r, END_NAK, 500);
	}
	return -1;
}

/*
 * A decision with events proves the cached state current (the append's
 * expectation is checked by the server). An empty one proves nothing: if
 * another instance wrote to the run since we cached it, our state may not
 * know the very thing this command answers (a timer, a tool call), and
 * acking would lose the command. So before dropping a command, check
 * that the log has nothing we have not seen; if it has, rebuild and
 * decide again. Reading after the command was fetched is enough: every
 * command is caused by an effect, and effects are published only once
 * the events that cause them are durable.
 */
static int
is_current(orch *o, orun *r)
{
	int current = 0;

	if (rs_orch_runcache_check_current(o, r, &current) != RS_OK) {
		r->stale = 1;
		end_cmd(o, r, END_NAK, 200);
		return 0;
	}
	if (current)
		return 1;
	rs_decision_free(&r->dec);
	memset(&r->dec, 0, sizeof(r->dec));
	r->stale = 1;
	begin(o, r);
	return 0;
}

static void
begin(orch *o, orun *r)
{
	const rs_cmd *c = &r->cur->cmd;
	char err[300], why[360];
	rs_status st;

	if (r->stale && atomic_load(&o->stopping)) {
		end_cmd(o, r, END_NAK, 0);   /* draining: no rebuild, back it goes */
		return;
	}
	if (r->stale) {
		st = rs_orch_runcache_reload(o, r);
		if (st != RS_OK && st != RS_ENOTFOUND) {
			r->stale = 1;
			end_cmd(o, r, END_NAK, 500);
			return;
		}
	}
	if (rs_run_get_status(r->state) == RS_RUN_NONE && c->type != RS_CMD_RUN_START) {
		unknown_run(o, r);
		return;
	}
	if (resolve_agent(o, r) != 0)
		return;
	memset(&r->dec, 0, sizeof(r->dec));
	/* The tenant limit in force is recorded by run.created. */
	if (c->type == RS_CMD_RUN_START && rs_run_get_status(r->state) == RS_RUN_NONE)
		r->cur->cmd.tenant_limit = o->cfg.tenant_max_running;
	st = rs_run_decide(r->state, r->agent, c, rs_now_ms(), o->cfg.base.instance_id, &r->dec,
	                   err, sizeof(err));
	if (st != RS_OK) {
		snprintf(why, sizeof(why), "decide: %s: %s", rs_status_str(st), err);
		poison_cur(o, r, why);
		return;
	}
	if (r->dec.nevents == 0) {
		if (!r->fresh && !is_current(o, r))
			return;
		/* Duplicate, stale or early: nothing new, but re-publish what the
		 * state still owes (heals a crash between append and effects). */
		rs_decision_free(&r->dec);
		memset(&r->dec, 0, sizeof(r->dec));
		if (rs_run_pending_effects(r->state, &r->dec) != RS_OK)
			memset(&r->dec, 0, sizeof(r->dec));
		finish_effects(o, r);
		return;
	}
	r->next_ev = 0;
	send_event(o, r);
}

static void
conflict(orch *o, orun *r)
{
	rs_status st;

	rs_metric_inc(rs_orch_om.conflicts);
	rs_decision_free(&r->dec);
	memset(&r->dec, 0, sizeof(r->dec));
	if (++r->attempts > CONFLICT_RETRIES) {
		r->stale = 1;
		end_cmd(o, r, END_NAK, 100);
		return;
	}
	st = rs_orch_runcache_reload(o, r);
	if (st != RS_OK && st != RS_ENOTFOUND) {
		r->stale = 1;
		end_cmd(o, r, END_NAK, 200);
		return;
	}
	begin(o, r);
}

static void
event_acked(orch *o, orun *r, const puback *it)
{
	rs_event *ev = &r->dec.events[r->next_ev];

	rs_metric_observe(rs_orch_om.append_latency, (double)(rs_mono_us() - r->sent_us) / 1e6);
	if (it->err != NATS_OK || it->dup) {
		/* A duplicate ack for an id we believed new means another writer
		 * appended this very runseq: same as a refused expectation.
		 * Either way the cached state may lack our earlier events of
		 * this decision: both paths rebuild it from the log. */
		if (it->dup || it->jerr == JSStreamWrongLastSequenceErr) {
			conflict(o, r);
			return;
		}
		r->stale = 1;
		log_cmd(RS_LOG_WARN, r->cur, "%s: append failed: %s", natsStatus_GetText(it->err));
		end_cmd(o, r, END_NAK, 200);
		return;
	}
	r->last_seq = it->seq;
	rs_orch_metrics_event(ev);
	if (++r->next_ev < r->dec.nevents) {
		send_event(o, r);
		return;
	}
	/* Every event is durable: the decision's end state (decide evolved a
	 * copy event by event) is now the run's state, no second evolve. */
	rs_run_free(r->state);
	r->state = r->dec.after;
	r->dec.after = NULL;
	finish_effects(o, r);
}

static void
on_puback(orch *o, puback *it)
{
	pub_kind kind;
	orun *r = rs_orch_pubmap_take(o->pubs, it->token, &kind);

	if (r == NULL)
		return;   /* expired earlier, or not ours */
	o->pending_pubs--;
	if (kind == PUB_EVENT) {
		event_acked(o, r, it);
		return;
	}
	if (it->err != NATS_OK)
		r->effects_failed = 1;
	if (--r->effects_left == 0)
		effects_done(o, r, r->effects_failed);
}

static void
on_cmd(orch *o, natsMsg *msg)
{
	pending_cmd *p = calloc(1, sizeof(*p));
	jsMsgMetaData *meta = NULL;
	char err[256], why[320];
	orun *r;
	rs_status st;

	if (p == NULL) {
		natsMsg_NakWithDelay(msg, 1000, NULL);
		natsMsg_Destroy(msg);
		if (atomic_fetch_sub(&o->inflight, 1) == 1)
			pthread_cond_broadcast(&o->idle_cv);
		return;
	}
	p->msg = msg;
	p->t0_us = rs_mono_us();
	if (atomic_load(&o->stopping)) {
		/* Draining: a command not yet begun goes back at once (another
		 * instance takes it), before any round trip to the log. */
		natsMsg_Nak(msg, NULL);
		drop_pending(o, p, 0);
		return;
	}
	if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
		p->ndelivered = meta->NumDelivered;
		jsMsgMetaData_Destroy(meta);
	}
	if (p->ndelivered > 1)
		rs_metric_inc(rs_orch_om.redeliveries);
	if (rs_cmd_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &p->cmd, err,
	                  sizeof(err)) != RS_OK) {
		snprintf(why, sizeof(why), "undecodable command: %s", err);
		rs_orch_poison(o, msg, NULL, why);
		drop_pending(o, p, 0);
		return;
	}
	if ((int64_t)p->ndelivered > o->cfg.max_deliver) {
		snprintf(why, sizeof(why), "redelivered %llu times (max %lld)",
		         (unsigned long long)p->ndelivered, (long long)o->cfg.max_deliver);
		rs_orch_poison(o, msg, p->cmd.run_id, why);
		/* Deliveries also count instances that died holding the command
		 * (a batch is fetched at once): the run must not be left cut
		 * short by it. run.continue finishes what the run owes. */
		if (p->cmd.type != RS_CMD_RUN_CONTINUE)
			rs_orch_reconcile_continue(o, p->cmd.tenant, p->cmd.run_id, -1);
		drop_pending(o, p, 1);
		return;
	}
	r = rs_orch_runcache_get(o->cache, p->cmd.tenant, p->cmd.run_id);
	if (r != NULL && r->busy) {
		if (r->waitq_tail) r->waitq_tail->next = p; else r->waitq = p;
		r->waitq_tail = p;
		return;
	}
	if (r == NULL) {
		if ((r = rs_orch_runcache_add_empty(o->cache, p->cmd.tenant, p->cmd.run_id)) == NULL) {
			natsMsg_NakWithDelay(msg, 1000, NULL);
			drop_pending(o, p, 1);
			return;
		}
		/* A run.start is assumed to be for a new run: the append with
		 * expectation 0 checks that for free. Anything else is rebuilt. */
		if (p->cmd.type != RS_CMD_RUN_START) {
			st = rs_orch_runcache_reload(o, r);
			if (st != RS_OK && st != RS_ENOTFOUND)
				r->stale = 1;
		}
	}
	r->cur = p;
	r->busy = 1;
	r->attempts = 0;
	begin(o, r);
}

void
rs_orch_engine_puback(orch *o, puback *it)
{
	pthread_mutex_lock(&o->engine_mu);
	on_puback(o, it);
	pthread_mutex_unlock(&o->engine_mu);
}

void
rs_orch_engine_puback_locked(orch *o, puback *it)
{
	on_puback(o, it);
}

/* JetStream answers in milliseconds; an ack missing after this long was
 * lost (connection dropped): fail the publish, the command is naked. */
#define PUBACK_LOST_MS 10000

/* A command in progress for longer than this is logged, with what its
 * run waits for (bench/chaos saw commands held for minutes after NATS
 * faults: the gauges and this line tell where). */
#define SLOW_CMD_US (60LL * 1000000)

/* Once a second: the gauges of what the engine holds. */
static void
report_held(orch *o)
{
	static int64_t last_us, warned_us;
	int64_t now = rs_mono_us();
	size_t busy, queued;
	orun *r;

	if (now - last_us < 1000000)
		return;
	last_us = now;
	r = rs_orch_runcache_oldest(o->cache, &busy, &queued);
	rs_metric_set(rs_orch_om.busy_runs, (double)busy);
	rs_metric_set(rs_orch_om.queued_commands, (double)queued);
	rs_metric_set(rs_orch_om.oldest_command, r != NULL ? (double)(now - r->cur->t0_us) / 1e6 : 0);
	if (r != NULL && now - r->cur->t0_us > SLOW_CMD_US && now - warned_us > 60000000) {
		char why[300];

		warned_us = now;
		snprintf(why, sizeof(why), "for %lld s (delivery %llu; event %zu of %zu in flight, %d effect "
		         "acks owed, stale %d; %zu runs busy, %zu commands queued)",
		         (long long)((now - r->cur->t0_us) / 1000000), (unsigned long long)r->cur->ndelivered,
		         r->next_ev, r->dec.nevents, r->effects_left, r->stale, busy, queued);
		log_cmd(RS_LOG_WARN, r->cur, "%s: in progress %s", why);
	}
}

void
rs_orch_engine_expire(orch *o)
{
	pthread_mutex_lock(&o->engine_mu);
	rs_orch_appender_expire(o, PUBACK_LOST_MS);
	report_held(o);
	pthread_mutex_unlock(&o->engine_mu);
}

void
rs_orch_engine_commands(orch *o, natsMsg **msgs, int n)
{
	pthread_mutex_lock(&o->engine_mu);
	for (int i = 0; i < n; i++)
		on_cmd(o, msgs[i]);
	pthread_mutex_unlock(&o->engine_mu);
}

rs_status
rs_orch_engine_init(orch *o)
{
	pthread_condattr_t ca;

	if (pthread_mutex_init(&o->engine_mu, NULL) != 0)
		return RS_ERR;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&o->idle_cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		pthread_mutex_destroy(&o->engine_mu);
		return RS_ERR;
	}
	pthread_condattr_destroy(&ca);
	return RS_OK;
}

void
rs_orch_engine_destroy(orch *o)
{
	pthread_cond_destroy(&o->idle_cv);
	pthread_mutex_destroy(&o->engine_mu);
}

void
rs_orch_engine_drain(orch *o)
{
	int64_t deadline = rs_mono_ms() + o->cfg.base.shutdown_grace_ms * 3 / 4;
	struct timespec ts;

	ts.tv_sec = (time_t)(deadline / 1000);
	ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
	pthread_mutex_lock(&o->engine_mu);
	while (atomic_load(&o->inflight) > 0 && rs_mono_ms() < deadline)
		pthread_cond_timedwait(&o->idle_cv, &o->engine_mu, &ts);
	if (atomic_load(&o->inflight) > 0) {
		/* Past the grace period: hand back what we still hold. */
		rs_warn("shutdown grace passed with %ld command(s) in flight: naking them",
		        (long)atomic_load(&o->inflight));
		rs_orch_runcache_nak_all(o->cache);
	}
	pthread_mutex_unlock(&o->engine_mu);
}
