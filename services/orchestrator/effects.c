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

static rs_status
send_call(orch *o, orun *r, const rs_toolcall *c)
{
	char subj[200], id[160], *buf = NULL;
	size_t len = 0;
	rs_status st;

	if ((st = rs_toolcall_encode(c, &buf, &len)) != RS_OK)
		return st;
	snprintf(subj, sizeof(subj), "toolcalls.%s.%s", r->tenant, c->call_id);
	snprintf(id, sizeof(id), "%s-%s", c->cancel ? "cancel" : "call", c->call_id);
	st = rs_orch_appender_send(o, r, PUB_EFFECT, subj, buf, len, c->cancel ? "tool.cancel" : "tool.call",
	                   0, id, -1);
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
		if ((st = send_call(o, r, &d->calls[i])) == RS_OK)
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
