/*
 * effects.c - turning a decision into messages: run events for RUNS and
 * the effects (timers for TIMERS, tool calls and cancels for TOOLCALLS).
 *
 * Effects carry deterministic Nats-Msg-Ids (timer-<timer_id>,
 * call-<call_id>, cancel-<call_id>, and rs_cmd_msg_id() for commands to
 * other runs: a child's run.start or cancel, a parent's child.done), so
 * publishing them again after a
 * crash is harmless: that is what lets a redelivered command heal a run
 * whose events were appended but whose effects were lost.
 */
#include <stdio.h>
#include <stdlib.h>

#include "orch.h"
#include "rs_log.h"
#include "rs_time.h"

rs_status
rs_orch_event_send(orch *o, orun *r, const rs_event *ev)
{
	/* Engine mutex held: one encode buffer reused for every event (the
	 * publish copies the bytes). */
	static char *buf;
	static size_t bufcap;
	char subj[160], id[80];
	size_t len = 0;
	rs_status st;

	if ((st = rs_event_encode_into(ev, &buf, &bufcap, &len)) != RS_OK)
		return st;
	rs_event_subject(ev->tenant, ev->run_id, subj, sizeof(subj));
	rs_event_id(ev->run_id, ev->runseq, id, sizeof(id));
	return rs_orch_appender_send(o, r, PUB_EVENT, subj, buf, len, rs_event_type_name(ev->type), 1, id,
	                     (int64_t)r->last_seq);
}

/* id NULL: no de-duplication (a timer put back after an early fire: its
 * own id is still in the TIMERS de-duplication window). */
static rs_status
send_timer(orch *o, orun *r, const rs_cmd *t, const char *fixed_id)
{
	char subj[160], id[160], *buf = NULL;
	size_t len = 0;
	rs_status st;

	if ((st = rs_cmd_encode(t, &buf, &len)) != RS_OK)
		return st;
	snprintf(subj, sizeof(subj), "timers.%s.%s", r->tenant, r->run_id);
	snprintf(id, sizeof(id), "timer-%s", t->timer_id);
	st = rs_orch_appender_send(o, r, PUB_EFFECT, subj, buf, len, "timer.fire", 0,
	                   fixed_id ? fixed_id : id, -1);
	free(buf);
	return st;
}

/* id NULL: the call's own de-duplicated id. */
static rs_status
send_call(orch *o, orun *r, const rs_toolcall *c, const char *fixed_id)
{
	char subj[200], id[160], *buf = NULL;
	size_t len = 0;
	rs_status st;

	if ((st = rs_toolcall_encode(c, &buf, &len)) != RS_OK)
		return st;
	snprintf(subj, sizeof(subj), "toolcalls.%s.%s", r->tenant, c->call_id);
	snprintf(id, sizeof(id), "%s-%s", c->cancel ? "cancel" : "call", c->call_id);
	st = rs_orch_appender_send(o, r, PUB_EFFECT, subj, buf, len, c->cancel ? "tool.cancel" : "tool.call",
	                   0, fixed_id ? fixed_id : id, -1);
	free(buf);
	return st;
}

/* A command to another run (a child's run.start or cancel, child.done to
 * the parent): on CMDS like any command, de-duplicated by its msg id. */
static rs_status
send_cmd(orch *o, orun *r, const rs_cmd *c)
{
	char subj[160], id[160], *buf = NULL;
	size_t len = 0;
	rs_status st;

	if ((st = rs_cmd_encode(c, &buf, &len)) != RS_OK)
		return st;
	rs_cmd_subject(c->tenant, c->run_id, subj, sizeof(subj));
	rs_cmd_msg_id(c, id, sizeof(id));
	st = rs_orch_appender_send(o, r, PUB_EFFECT, subj, buf, len, rs_cmd_type_name(c->type), 0, id, -1);
	free(buf);
	return st;
}

rs_status
rs_orch_effects_send(orch *o, orun *r, const rs_decision *d, int *nsent)
{
	rs_status st = RS_OK;

	*nsent = 0;
	for (size_t i = 0; i < d->ntimers && st == RS_OK; i++)
		if ((st = send_timer(o, r, &d->timers[i], NULL)) == RS_OK)
			(*nsent)++;
	for (size_t i = 0; i < d->ncalls && st == RS_OK; i++)
		if ((st = send_call(o, r, &d->calls[i], NULL)) == RS_OK)
			(*nsent)++;
	for (size_t i = 0; i < d->ncmds && st == RS_OK; i++)
		if ((st = send_cmd(o, r, &d->cmds[i])) == RS_OK)
			(*nsent)++;
	if (st != RS_OK)
		rs_log(RS_LOG_WARN, r->run_id, NULL, "effects: %s", rs_status_str(st));
	return st;
}

rs_status
rs_orch_effects_requeue_timer(orch *o, orun *r, const rs_cmd *fire)
{
	char id[200];

	/* Unique per attempt, so the TIMERS de-duplication window keeps it. */
	snprintf(id, sizeof(id), "timer-%s-again-%lld", fire->timer_id, (long long)rs_now_ms());
	return send_timer(o, r, fire, id);
}

/*
 * What the run owes for over half RS_ORCH_LATE_MS (rs_run_late_effects):
 * published again under new message ids, since the old ones may still be
 * in the streams' de-duplication windows though their messages are gone.
 * A second copy of a timer or a call that was only late is harmless: the
 * state machine ignores a fire for a timer no longer pending, and the
 * router's intake finds the call's KV record already made (and, for a call
 * its device answered, sends the answer kept there again: a tool.result
 * CMDS lost). The ids carry
 * the time in RS_ORCH_LATE_MS slices, so instances that find the same run
 * in one slice publish one copy.
 */
rs_status
rs_orch_effects_send_late(orch *o, orun *r, int *nsent)
{
	rs_decision late;
	rs_status st = RS_OK;
	char id[200];
	long long slice;

	*nsent = 0;
	if (o->cfg.late_ms <= 0)
		return RS_OK;
	slice = (long long)(rs_now_ms() / o->cfg.late_ms);
	/* Half the setting: the sweep sends the first continue RS_ORCH_LATE_MS
	 * after the event the run rests on, by when a timer due just after it
	 * is overdue by almost that much. */
	rs_run_late_effects(r->state, rs_now_ms(), o->cfg.late_ms / 2, &late);
	for (size_t i = 0; i < late.ntimers && st == RS_OK; i++) {
		snprintf(id, sizeof(id), "timer-%s-late-%lld", late.timers[i].timer_id, slice);
		if ((st = send_timer(o, r, &late.timers[i], id)) == RS_OK)
			(*nsent)++;
	}
	for (size_t i = 0; i < late.ncalls && st == RS_OK; i++) {
		snprintf(id, sizeof(id), "call-%s-late-%lld", late.calls[i].call_id, slice);
		if ((st = send_call(o, r, &late.calls[i], id)) == RS_OK)
			(*nsent)++;
	}
	if (late.ntimers + late.ncalls > 0)
		rs_log(RS_LOG_WARN, r->run_id, NULL,
		       "%zu timer(s) overdue and %zu call(s) undispatched for over %lld ms or unanswered for "
		       "over %lld ms: published again", late.ntimers, late.ncalls, (long long)o->cfg.late_ms / 2,
		       (long long)o->cfg.late_ms);
	rs_decision_free(&late);
	return st;
}

/*
 * A signal or cancel applied: its copy in KV `runs` (written by the api,
 * services/api/runs_write.c) is deleted, so the sweep does not send it
 * again. A plain publish of a KV delete marker, not awaited: a delete
 * that is lost only means the sweep sends the command once more later,
 * and a second copy of an applied signal or cancel changes nothing.
 */
void
rs_orch_effects_forget_copy(orch *o, const rs_cmd *c)
{
	char subj[300];

	rs_cmd_copy_subject(c, subj, sizeof(subj));
	if (subj[0] != '\0')
		rs_orch_kv_delete(o, subj);
}

void
rs_orch_kv_delete(orch *o, const char *subj)
{
	natsMsg *m = NULL;

	if (rs_nats_msg(&m, subj, "", 0, "KV-Operation", "DEL", NULL) == RS_OK)
		natsConnection_PublishMsg(o->nats.nc, m);
	natsMsg_Destroy(m);
}
