/* sim.c - see sim.h. Aborts on any error: a generator must not guess. */
#include <stdlib.h>
#include <string.h>

#include "rs_json.h"
#include "sim.h"

static void
die(const char *what, const char *err)
{
	fprintf(stderr, "sim: %s: %s\n", what, err);
	abort();
}

static json_t *
parse(const char *txt)
{
	char err[256];
	json_t *v = NULL;

	if (rs_json_parse(txt, strlen(txt), &v, err, sizeof(err)) != RS_OK)
		die("json", err);
	return v;
}

void
sim_init(sim *s, const char *def_json, const char *run_id, const char *tenant, int64_t t0,
         FILE *out, int header)
{
	char err[256];

	memset(s, 0, sizeof(*s));
	s->def = parse(def_json);
	if (rs_agent_parse(s->def, &s->agent, err, sizeof(err)) != RS_OK)
		die("agent", err);
	s->run = rs_run_new();
	snprintf(s->run_id, sizeof(s->run_id), "%s", run_id);
	snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
	s->now = t0;
	s->out = out;
	if (header) {
		json_t *h = json_pack("{s:i,s:s,s:s,s:O}", "runstream_export", 1, "run_id", run_id,
		                      "tenant", tenant, "agent", s->def);
		char *t = rs_json_dump(h);
		fprintf(out, "%s\n", t);
		free(t);
		json_decref(h);
	}
}

static void
timer_free(rs_cmd *c)
{
	free(c->timer_id);
	free(c->step_id);
}

void
sim_free(sim *s)
{
	for (size_t i = 0; i < s->ntimers; i++)
		timer_free(&s->timers[i]);
	rs_run_free(s->run);
	rs_agent_free(s->agent);
	json_decref(s->def);
}

static void
cmd_init(sim *s, rs_cmd *c, rs_cmd_type t)
{
	memset(c, 0, sizeof(*c));
	c->type = t;
	snprintf(c->run_id, sizeof(c->run_id), "%s", s->run_id);
	snprintf(c->tenant, sizeof(c->tenant), "%s", s->tenant);
}

/* What the executor will be asked about next. */
static void
note_effect(sim *s, const rs_event *ev)
{
	if (ev->type == RS_EV_CHILD_STARTED && s->nchildren < 32)
		snprintf(s->children[s->nchildren++], sizeof(s->children[0]), "%s",
		         ev->d.child_started.child_run_id);
	if (ev->type == RS_EV_HTTP_REQUESTED)
		snprintf(s->effect_id, sizeof(s->effect_id), "%s", ev->d.http_requested.effect_id);
	else if (ev->type == RS_EV_LLM_REQUESTED)
		snprintf(s->effect_id, sizeof(s->effect_id), "%s", ev->d.llm_requested.effect_id);
}

/* Decide, write, evolve; remember the effects. */
static void
apply(sim *s, const rs_cmd *c, const char *instance)
{
	char err[256], *txt;
	rs_decision d;
	size_t len;

	if (rs_run_decide(s->run, s->walk ? s->walk : s->agent, c, s->now,
	                  instance ? instance : "orch-1", &d, err, sizeof(err)) != RS_OK)
		die("decide", err);
	for (size_t i = 0; i < d.nevents; i++) {
		if (rs_event_encode(&d.events[i], &txt, &len) != RS_OK)
			die("encode", rs_event_type_name(d.events[i].type));
		fwrite(txt, 1, len, s->out);
		fputc('\n', s->out);
		free(txt);
		if (rs_run_evolve(s->run, &d.events[i], err, sizeof(err)) != RS_OK)
			die("evolve", err);
		note_effect(s, &d.events[i]);
		s->events++;
	}
	for (size_t i = 0; i < d.ntimers && s->ntimers < 64; i++) {
		rs_cmd *t = &s->timers[s->ntimers++];
		*t = d.timers[i];
		t->timer_id = strdup(d.timers[i].timer_id);
		t->step_id = d.timers[i].step_id ? strdup(d.timers[i].step_id) : NULL;
		t->agent = t->version = t->idempotency_key = t->call_id = t->device_id = NULL;
		t->router = t->signal_id = t->name = t->reason = NULL;
		t->input = t->output = t->payload = NULL;
		memset(&t->error, 0, sizeof(t->error));
	}
	for (size_t i = 0; i < d.ncalls; i++)
		if (!d.calls[i].cancel) {
			snprintf(s->call_id, sizeof(s->call_id), "%s", d.calls[i].call_id);
			snprintf(s->device, sizeof(s->device), "%s",
			         d.calls[i].device ? d.calls[i].device
			         : s->route[0] ? s->route : "laptop-1");
		}
	rs_decision_free(&d);
}

void
sim_start(sim *s, const char *input_json, const char *instance)
{
	rs_cmd c;

	cmd_init(s, &c, RS_CMD_RUN_START);
	c.agent = (char *)rs_agent_name(s->agent);
	c.version = (char *)rs_agent_version(s->agent);
	c.input = parse(input_json);
	apply(s, &c, instance);
	json_decref(c.input);
}

void
sim_start_fork(sim *s, const char *input_json, const char *instance, const char *forked_from,
               int64_t from_seq, const char *reuse_json)
{
	rs_cmd c;

	cmd_init(s, &c, RS_CMD_RUN_START);
	c.agent = (char *)rs_agent_name(s->agent);
	c.version = (char *)rs_agent_version(s->agent);
	c.input = parse(input_json);
	c.forked_from = (char *)forked_from;
	c.from_seq = from_seq;
	c.reuse = parse(reuse_json);
	apply(s, &c, instance);
	json_decref(c.input);
	json_decref(c.reuse);
}

void
sim_start_scheduled(sim *s, const char *input_json, const char *instance, const char *schedule_id,
                    int64_t tick)
{
	rs_cmd c;

	cmd_init(s, &c, RS_CMD_RUN_START);
	c.agent = (char *)rs_agent_name(s->agent);
	c.version = (char *)rs_agent_version(s->agent);
	c.input = parse(input_json);
	c.schedule_id = (char *)schedule_id;
	c.schedule_tick = tick;
	apply(s, &c, instance);
	json_decref(c.input);
}

void
sim_admit(sim *s, int64_t after_ms, const char *instance)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_RUN_ADMIT);
	apply(s, &c, instance);
}

void
sim_delivered(sim *s, int64_t after_ms)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_TOOL_DELIVERED);
	c.call_id = s->call_id;
	c.device_id = s->device;
	c.router = "router-1";
	apply(s, &c, NULL);
}

void
sim_result_ok(sim *s, int64_t after_ms, const char *output_json)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_TOOL_RESULT);
	c.call_id = s->call_id;
	c.device_id = s->device;
	c.output = parse(output_json);
	apply(s, &c, NULL);
	json_decref(c.output);
}

void
sim_result_err(sim *s, int64_t after_ms, const char *code, const char *msg, int retryable)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_TOOL_RESULT);
	c.call_id = s->call_id;
	c.device_id = s->device;
	c.has_error = 1;
	c.error.code = (char *)code;
	c.error.message = (char *)msg;
	c.error.cls = retryable ? RS_ERRCLASS_TRANSIENT : RS_ERRCLASS_PERMANENT;
	c.error.retryable = retryable;
	apply(s, &c, NULL);
}

void
sim_fire(sim *s, rs_timer_purpose p, int64_t late_ms)
{
	for (size_t i = s->ntimers; i-- > 0;) {
		rs_cmd t = s->timers[i];
		if (t.purpose != p)
			continue;
		s->timers[i] = s->timers[--s->ntimers];
		if (t.due_at + late_ms > s->now)
			s->now = t.due_at + late_ms;
		apply(s, &t, NULL);
		timer_free(&t);
		return;
	}
	die("fire", rs_timer_purpose_name(p));
}

void
sim_signal(sim *s, int64_t after_ms, const char *signal_id, const char *name, const char *payload_json)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_SIGNAL);
	c.signal_id = (char *)signal_id;
	c.name = (char *)name;
	c.payload = parse(payload_json);
	apply(s, &c, NULL);
	json_decref(c.payload);
}

void
sim_cancel(sim *s, int64_t after_ms, const char *reason)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_CANCEL);
	c.reason = (char *)reason;
	apply(s, &c, NULL);
}

/* An executor command that decides nothing is a script error here. */
static void
apply_effect(sim *s, const rs_cmd *c)
{
	uint64_t before = s->events;

	if (s->effect_id[0] == '\0')
		die(rs_cmd_type_name(c->type), "no effect was requested");
	apply(s, c, NULL);
	if (s->events == before)
		die(rs_cmd_type_name(c->type), "stale: decide appended nothing");
}

void
sim_route(sim *s, const char *device)
{
	snprintf(s->route, sizeof(s->route), "%s", device);
}

void
sim_effect_ok(sim *s, int64_t after_ms, const char *output_json)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_EFFECT_RESULT);
	c.effect_id = s->effect_id;
	c.output = parse(output_json);
	apply_effect(s, &c);
	json_decref(c.output);
}

void
sim_effect_err(sim *s, int64_t after_ms, const char *code, const char *msg, rs_errclass cls,
               int64_t retry_after_ms)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_EFFECT_RESULT);
	c.effect_id = s->effect_id;
	c.has_error = 1;
	c.error.code = (char *)code;
	c.error.message = (char *)msg;
	c.error.cls = cls;
	c.error.retryable = cls != RS_ERRCLASS_PERMANENT;
	c.retry_after_ms = retry_after_ms;
	apply_effect(s, &c);
}

void
sim_chunk(sim *s, int64_t after_ms, int64_t index, const char *text)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_LLM_CHUNK);
	c.effect_id = s->effect_id;
	c.index = index;
	c.text = (char *)text;
	apply_effect(s, &c);
}

void
sim_start_child(sim *s, const char *input_json, const char *parent, const char *root,
                const char *scope, const char *parent_step, const char *instance)
{
	rs_cmd c;

	if ((s->walk = rs_agent_scope(s->agent, scope)) == NULL)
		die("scope", scope);
	cmd_init(s, &c, RS_CMD_RUN_START);
	c.agent = (char *)rs_agent_name(s->agent);
	c.version = (char *)rs_agent_version(s->agent);
	c.input = parse(input_json);
	c.parent_run_id = (char *)parent;
	c.root_run_id = (char *)root;
	c.scope = (char *)scope;
	c.parent_step_id = (char *)parent_step;
	apply(s, &c, instance);
	json_decref(c.input);
}

void
sim_child_done(sim *s, int64_t after_ms, int i, const char *status, const char *output_json)
{
	rs_cmd c;

	s->now += after_ms;
	cmd_init(s, &c, RS_CMD_CHILD_DONE);
	c.child_run_id = s->children[i];
	c.child_status = (char *)status;
	c.output = parse(output_json);
	apply(s, &c, NULL);
	json_decref(c.output);
}
