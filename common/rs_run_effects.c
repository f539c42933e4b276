/*
 * rs_run_effects.c - server-side effects of the run state machine: the
 * http and llm steps (see rs_run.c for the machine as a whole).
 *
 * The state machine only records requests (http.requested, llm.requested)
 * and results (the executor's effect.result and llm.chunk commands); the
 * executor finds the requests in the log itself, so they are not effects
 * of a decision. Here are their evolve handlers (recording what fits) and
 * their decide side: what a step.started, a result or a timeout of an
 * http or llm step owes (rs_run_owe_*, called from rs_run_owe() in rs_run_settle.c) and
 * the two command handlers.
 *
 * Ids: effect_id "<run_id>-<step_id>-<exec>-<attempt>-http" or
 * "...-llm<turn>"; an llm turn's tool calls "...-t<turn>-<i>"; per-turn
 * timers "<timer_id>.<turn>" (the scheme is at the top of rs_run.c).
 *
 * Kept out of rs_run.c so that file reads as the machine and this one as
 * one family of steps; behaviour is the same as when they were one file
 * (tests/unit/test_effects.c and test_run.c are the proof).
 */
#include "rs_run_int.h"
#include "rs_config.h"
#include "rs_json.h"

/* --- evolve: server-side effects (http, llm) --- */

/* A new step attempt: no effect awaited. An llm conversation lives across
 * the attempts of one execution (a retry resumes the turn that failed) and
 * starts afresh with attempt 1. */
void
rs_run_effect_step_started(rs_run *r, int64_t attempt)
{
	set_str(&r->eff_id, NULL);
	r->eff_last_index = -1;
	if (attempt > 1 && r->cur_kind == RS_STEP_LLM)
		return;
	set_json(&r->llm_messages, NULL);
	set_json(&r->llm_calls, NULL);
	set_json(&r->llm_usage, NULL);
	r->eff_turn = 0;
}

static rs_status
effect_requested(rs_run *r, const char *what, const char *step_id, int64_t attempt,
                 const char *effect_id, char *err, size_t cap)
{
	if (rs_run_check_current(r, what, step_id, attempt, err, cap) != RS_OK)
		return RS_EINVAL;
	if (r->cur_done || r->eff_id != NULL)
		return fail(err, cap, "%s: step %s is not ready for a new effect", what, step_id);
	set_str(&r->eff_id, effect_id);
	r->eff_last_index = -1;
	r->status = RS_RUN_WAITING;
	return RS_OK;
}

/* Results must be for the effect awaited. */
static rs_status
check_effect(const rs_run *r, const char *what, const char *effect_id, char *err, size_t cap)
{
	if (r->eff_id == NULL || strcmp(r->eff_id, effect_id) != 0)
		return fail(err, cap, "%s: effect %s is not pending", what, effect_id);
	return RS_OK;
}

rs_status
rs_run_ev_http_requested(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_http_requested *d = &ev->d.http_requested;

	if (effect_requested(r, "http.requested", d->step_id, d->attempt, d->effect_id, err,
	                     cap) != RS_OK)
		return RS_EINVAL;
	r->eff_deadline = d->deadline;
	return RS_OK;
}

rs_status
rs_run_ev_http_completed(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_http_completed *d = &ev->d.http_completed;

	if (check_effect(r, "http.completed", d->effect_id, err, cap) != RS_OK)
		return RS_EINVAL;
	set_str(&r->eff_id, NULL);
	rs_run_cancel_timers_of(r, r->cur_step, r->cur_attempt, RS_TIMER_STEP_TIMEOUT);
	json_decref(r->last_http);
	r->last_http = json_pack("{s:I, s:O, s:O}", "status", (json_int_t)d->status, "headers",
	                         d->headers ? d->headers : json_null(), "body",
	                         d->body ? d->body : json_null());
	return RS_OK;
}

rs_status
rs_run_ev_llm_requested(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_llm_requested *d = &ev->d.llm_requested;

	if (effect_requested(r, "llm.requested", d->step_id, d->attempt, d->effect_id, err,
	                     cap) != RS_OK)
		return RS_EINVAL;
	r->eff_turn = d->turn;
	r->eff_deadline = d->deadline;
	set_json(&r->llm_messages, d->messages);
	set_json(&r->llm_calls, NULL);
	return RS_OK;
}

rs_status
rs_run_ev_llm_delta(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_llm_delta *d = &ev->d.llm_delta;

	if (check_effect(r, "llm.delta", d->effect_id, err, cap) != RS_OK)
		return RS_EINVAL;
	if (d->index <= r->eff_last_index)
		return fail(err, cap, "llm.delta: index %lld after %lld", (long long)d->index,
		            (long long)r->eff_last_index);
	r->eff_last_index = d->index;
	return RS_OK;
}

static void
usage_add(rs_run *r, json_t *usage)
{
	static const char *keys[] = { "prompt_tokens", "completion_tokens" };
	json_t *v;

	if (r->llm_usage == NULL)
		r->llm_usage = json_pack("{s:i, s:i}", keys[0], 0, keys[1], 0);
	for (size_t i = 0; i < 2; i++) {
		v = json_object_get(usage, keys[i]);
		if (json_is_integer(v))
			json_object_set_new(r->llm_usage, keys[i], json_integer(
			    json_integer_value(json_object_get(r->llm_usage, keys[i])) +
			    json_integer_value(v)));
	}
}

rs_status
rs_run_ev_llm_message(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_llm_message *d = &ev->d.llm_message;
	json_t *msgs, *calls;

	if (check_effect(r, "llm.message", d->effect_id, err, cap) != RS_OK)
		return RS_EINVAL;
	set_str(&r->eff_id, NULL);
	msgs = r->llm_messages ? json_copy(r->llm_messages) : json_array();
	json_array_append(msgs, d->message);
	json_decref(r->llm_messages);
	r->llm_messages = msgs;
	calls = json_object_get(d->message, "tool_calls");
	set_json(&r->llm_calls, json_array_size(calls) > 0 ? calls : NULL);
	usage_add(r, d->usage);
	set_str(&r->last_finish, d->finish_reason);
	rs_run_cancel_timers_of(r, r->cur_step, r->cur_attempt, RS_TIMER_STEP_TIMEOUT);
	return RS_OK;
}

rs_status
rs_run_owe_http_requested(dctx *d, const rs_step *st)
{
	json_t *in = rs_run_attempt_input(d), *headers = json_object_get(in, "headers");
	const char *url = json_string_value(json_object_get(in, "url"));
	rs_event ev = new_event(RS_EV_HTTP_REQUESTED);
	char id[ID_CAP];

	if (url == NULL || headers == NULL ||
	    (st->body != NULL && json_object_get(in, "body") == NULL)) {
		return rs_run_fail_unrendered(d, st, url == NULL ? st->url : headers == NULL ? st->headers
		                                                   : st->body, "the request");
	}
	/* A templated URL is only known now: refuse what no client can call. */
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return rs_run_fail_step_code(d, st, "invalid_url", RS_ERRCLASS_PERMANENT,
		                             "the rendered url is not an http:// or https:// URL");
	rs_run_attempt_id(d->s, id, sizeof(id), "-http");
	ev.d.http_requested.effect_id = xstrdup(id);
	ev.d.http_requested.step_id = xstrdup(st->id);
	ev.d.http_requested.attempt = d->s->cur_attempt;
	ev.d.http_requested.method = xstrdup(st->method);
	ev.d.http_requested.url = xstrdup(url);
	ev.d.http_requested.headers = json_incref(headers);
	ev.d.http_requested.body = json_incref(json_object_get(in, "body"));
	ev.d.http_requested.timeout_ms = st->timeout_s * 1000;
	ev.d.http_requested.deadline = AT(d) + st->timeout_s * 1000;
	ev.d.http_requested.max_response_bytes = st->max_response_bytes;
	ev.d.http_requested.max_redirects = st->max_redirects;
	if (st->hmac_secret != NULL)
		ev.d.http_requested.hmac = json_pack("{s:s, s:s}", "secret", st->hmac_secret,
		                                     "header", st->hmac_header);
	return rs_run_emit(d, &ev);
}

/* llm.requested for `turn` with the chat `msgs` (taken). Its backstop
 * timer follows (owe: llm.requested). */
static rs_status
request_turn(dctx *d, const rs_step *st, int64_t turn, json_t *msgs)
{
	rs_event ev = new_event(RS_EV_LLM_REQUESTED);
	char id[ID_CAP], suffix[32];

	snprintf(suffix, sizeof(suffix), "-llm%lld", (long long)turn);
	rs_run_attempt_id(d->s, id, sizeof(id), suffix);
	ev.d.llm_requested.effect_id = xstrdup(id);
	ev.d.llm_requested.step_id = xstrdup(st->id);
	ev.d.llm_requested.attempt = d->s->cur_attempt;
	ev.d.llm_requested.turn = turn;
	ev.d.llm_requested.messages = msgs;
	ev.d.llm_requested.model = json_pack("{s:s, s:s, s:s*}", "base_url", st->base_url,
	                                     "model", st->model, "api_key_secret", st->api_key_secret);
	ev.d.llm_requested.tools = json_array_size(st->llm_tools) ? json_incref(st->llm_tools)
	                                                          : NULL;
	ev.d.llm_requested.max_tokens = st->max_tokens;
	ev.d.llm_requested.temperature = json_incref(st->temperature);
	ev.d.llm_requested.deadline = AT(d) + st->timeout_s * 1000;
	return rs_run_emit(d, &ev);
}

/* The first model turn of an attempt (or, on a retry, the turn that
 * failed, resumed with the conversation so far). */
rs_status
rs_run_owe_llm_first_turn(dctx *d, const rs_step *st)
{
	json_t *in = rs_run_attempt_input(d), *msgs;
	const char *prompt = json_string_value(json_object_get(in, "prompt"));
	const char *system = json_string_value(json_object_get(in, "system"));

	if (d->s->cur_attempt > 1 && d->s->llm_messages != NULL && d->s->eff_turn > 0)
		return request_turn(d, st, d->s->eff_turn, json_incref(d->s->llm_messages));
	if (prompt == NULL || (st->system != NULL && system == NULL)) {
		return rs_run_fail_unrendered(d, st, prompt == NULL ? st->prompt : st->system, "the prompt");
	}
	msgs = json_array();
	if (system != NULL)
		json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system",
		                                      "content", system));
	json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", prompt));
	return request_turn(d, st, 1, msgs);
}

static int
llm_has_tool(const rs_step *st, const char *name)
{
	size_t i;
	json_t *t;

	json_array_foreach(st->llm_tools, i, t)
		if (name != NULL && strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
			return 1;
	return 0;
}

static void
llm_call_id(const rs_run *s, size_t i, char *buf, size_t cap)
{
	char suffix[48];

	snprintf(suffix, sizeof(suffix), "-t%lld-%zu", (long long)s->eff_turn, i);
	rs_run_attempt_id(s, buf, cap, suffix);
}

/* The arguments of a model tool call: a JSON object in a string, or NULL. */
static json_t *
call_args(json_t *tc)
{
	json_t *fn = json_object_get(tc, "function"), *v = NULL;
	const char *a = json_string_value(json_object_get(fn, "arguments"));
	char err[64];

	if (a == NULL || *a == '\0')
		return json_object();
	if (rs_json_parse(a, strlen(a), &v, err, sizeof(err)) != RS_OK || !json_is_object(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

/* What the model is told about tool call i of the last answer. */
static json_t *
tool_message(const rs_run *s, const rs_step *st, size_t i, json_t *tc)
{
	const char *name = json_string_value(json_object_get(json_object_get(tc, "function"),
	                                                      "name"));
	char call_id[ID_CAP], *text;
	run_call *c;
	json_t *content, *m;

	llm_call_id(s, i, call_id, sizeof(call_id));
	c = rs_run_find_call(s, call_id);
	if (c == NULL && !llm_has_tool(st, name))
		content = json_pack("{s:{s:s, s:s}}", "error", "code", "unknown_tool", "message",
		                    "no such tool in this step");
	else if (c == NULL)
		content = json_pack("{s:{s:s, s:s}}", "error", "code", "bad_arguments", "message",
		                    "arguments must be a JSON object");
	else if (c->status == CALL_COMPLETED)
		content = json_incref(c->output ? c->output : json_null());
	else if (c->status == CALL_TIMED_OUT)
		content = json_pack("{s:{s:s, s:s}}", "error", "code", "timeout", "message",
		                    "the tool did not answer in time");
	else
		content = json_pack("{s:O}", "error", c->error ? c->error : json_null());
	text = json_is_string(content) ? xstrdup(json_string_value(content)) : rs_json_dump(content);
	m = json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id",
	              json_string_value(json_object_get(tc, "id")) ?
	              json_string_value(json_object_get(tc, "id")) : "", "content", text);
	free(text);
	json_decref(content);
	return m;
}

/* Every tool call of the turn answered: the next turn carries them. */
rs_status
rs_run_llm_next_turn(dctx *d, const rs_step *st)
{
	json_t *msgs = json_copy(d->s->llm_messages), *tc;
	size_t i;

	json_array_foreach(d->s->llm_calls, i, tc)
		json_array_append_new(msgs, tool_message(d->s, st, i, tc));
	return request_turn(d, st, d->s->eff_turn + 1, msgs);
}

/*
 * The model asked for tools: one tool.requested per valid call (in the
 * order of the answer), through the routers exactly like a tool step
 * (capability = the tool's name), then the turn's tool timer. No valid
 * call at all: the next turn tells the model why.
 */
rs_status
rs_run_owe_llm_calls(dctx *d, const rs_step *st)
{
	json_t *tc, *args;
	const char *name;
	char call_id[ID_CAP];
	run_call *first = NULL;
	rs_event ev;
	size_t i;

	json_array_foreach(d->s->llm_calls, i, tc) {
		run_call *c;
		name = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
		if (!llm_has_tool(st, name))
			continue;   /* answered with an error in the next turn */
		llm_call_id(d->s, i, call_id, sizeof(call_id));
		if ((c = rs_run_find_call(d->s, call_id)) != NULL) {
			if (first == NULL)
				first = c;
			continue;
		}
		if ((args = call_args(tc)) == NULL)
			continue;
		ev = new_event(RS_EV_TOOL_REQUESTED);
		ev.d.tool_requested.call_id = xstrdup(call_id);
		ev.d.tool_requested.step_id = xstrdup(st->id);
		ev.d.tool_requested.attempt = d->s->cur_attempt;
		ev.d.tool_requested.tool = xstrdup(name);
		ev.d.tool_requested.args = args;
		ev.d.tool_requested.capability = xstrdup(name);
		ev.d.tool_requested.deadline = first ? first->deadline
		                                     : AT(d) + st->tool_timeout_s * 1000;
		if (rs_run_emit(d, &ev) != RS_OK)
			return RS_ERR;
		rs_run_add_call_effect(d->s, d->out, rs_run_find_call(d->s, call_id), 0);
		return RS_OK;
	}
	if (first == NULL)
		return rs_run_llm_next_turn(d, st);
	rs_run_turn_timer_id(d->s, call_id, sizeof(call_id), RS_TIMER_TOOL_TIMEOUT, d->s->eff_turn);
	if (rs_run_find_timer(d->s, call_id) != NULL)
		return RS_OK;
	return rs_run_schedule_timer(d, RS_TIMER_TOOL_TIMEOUT, st->id, d->s->cur_attempt, first->deadline,
	                             call_id);
}

/* An llm.message: the final answer, max_turns, or tools. */
rs_status
rs_run_owe_llm_message(dctx *d, const rs_step *st)
{
	json_t *last = json_array_get(d->s->llm_messages, json_array_size(d->s->llm_messages) - 1);
	const char *text = json_string_value(json_object_get(last, "content"));
	char why[160];

	if (d->s->llm_calls == NULL)
		return rs_run_emit_step_completed(d, json_pack("{s:s, s:o, s:I, s:s}", "text",
		                                  text ? text : "", "usage", d->s->llm_usage ?
		                                  json_deep_copy(d->s->llm_usage) : json_object(),
		                                  "turns", (json_int_t)d->s->eff_turn, "finish_reason",
		                                  d->s->last_finish ? d->s->last_finish : "stop"),
		                                  st->next_idx);
	if (d->s->eff_turn >= st->max_turns) {
		snprintf(why, sizeof(why), "the model still wanted tools after %lld turn(s) "
		         "(max_turns %lld)", (long long)d->s->eff_turn, (long long)st->max_turns);
		return rs_run_fail_step_code(d, st, "max_turns_exceeded", RS_ERRCLASS_PERMANENT, why);
	}
	return rs_run_owe_llm_calls(d, st);
}

/* The llm turn's tool timer fired (or a call of it was just timed out):
 * time out the next call still out, then give the model what there is. */
rs_status
rs_run_owe_llm_timeouts(dctx *d, const rs_step *st)
{
	rs_event ev;

	for (size_t i = 0; i < d->s->ncalls; i++) {
		run_call *call = &d->s->calls[i];
		if (!call_outstanding(call) || strcmp(call->step_id, st->id) != 0 ||
		    call->attempt != d->s->cur_attempt)
			continue;
		rs_run_add_call_effect(d->s, d->out, call, 1);
		ev = new_event(RS_EV_TOOL_TIMED_OUT);
		ev.d.tool_timed_out.call_id = xstrdup(call->call_id);
		ev.d.tool_timed_out.step_id = xstrdup(st->id);
		ev.d.tool_timed_out.attempt = d->s->cur_attempt;
		return rs_run_emit(d, &ev);
	}
	return rs_run_llm_next_turn(d, st);
}

/* Retry-After of an http.completed's headers, in ms (seconds form). */
static int64_t
retry_after_header(json_t *headers)
{
	const char *k;
	json_t *v;
	int64_t secs;

	json_object_foreach(headers, k, v) {
		if (strcasecmp(k, "retry-after") == 0 && json_is_string(v) &&
		    rs_parse_int(json_string_value(v), 0, 86400, &secs) == RS_OK)
			return secs * 1000;
	}
	return 0;
}

rs_status
rs_run_owe_http_completed(dctx *d, const rs_step *st)
{
	json_t *h = d->s->last_http;
	int64_t status = json_integer_value(json_object_get(h, "status"));
	rs_err e = { NULL, NULL, RS_ERRCLASS_PERMANENT, 0, NULL };
	char code[32], why[96];

	if (rs_http_status_expected(st, status))
		return rs_run_emit_step_completed(d, json_pack("{s:I, s:O, s:O}", "status",
		                                  (json_int_t)status, "headers",
		                                  json_object_get(h, "headers"), "body",
		                                  json_object_get(h, "body")), st->next_idx);
	/* Overload and server trouble pass; a client error will not. */
	snprintf(code, sizeof(code), "http_%lld", (long long)status);
	snprintf(why, sizeof(why), "unexpected HTTP status %lld", (long long)status);
	e.code = code;
	e.message = why;
	if (status == 429 || status == 408 || status >= 500)
		e.cls = RS_ERRCLASS_TRANSIENT;
	return rs_run_fail_step_effect(d, st, &e, NULL,
	                               retry_after_header(json_object_get(h, "headers")));
}

/* The effect a result may act on: the current step's pending one. */
static const rs_step *
effect_step(dctx *d, const char *effect_id)
{
	const rs_step *st = rs_run_step_of(d, NULL);

	if (st == NULL || d->s->cur_done || d->s->eff_id == NULL || effect_id == NULL ||
	    strcmp(d->s->eff_id, effect_id) != 0)
		return NULL;
	return st;
}

static rs_status
llm_message(dctx *d, const rs_step *st, json_t *output)
{
	rs_event ev = new_event(RS_EV_LLM_MESSAGE);
	rs_ev_llm_message *m = &ev.d.llm_message;
	json_t *msg = json_object_get(output, "message");

	if (!json_is_object(msg))
		return fail(d->err, d->cap, "effect.result: llm output.message must be an object");
	m->effect_id = xstrdup(d->s->eff_id);
	m->step_id = xstrdup(st->id);
	m->turn = d->s->eff_turn;
	m->message = json_incref(msg);
	if (json_is_object(json_object_get(output, "usage")))
		m->usage = json_incref(json_object_get(output, "usage"));
	if (json_string_length(json_object_get(output, "finish_reason")) > 0)
		m->finish_reason = xstrdup(json_string_value(json_object_get(output, "finish_reason")));
	return rs_run_emit(d, &ev);
}

static rs_status
http_completed(dctx *d, const rs_step *st, json_t *output)
{
	rs_event ev = new_event(RS_EV_HTTP_COMPLETED);
	rs_ev_http_completed *h = &ev.d.http_completed;
	json_t *status = json_object_get(output, "status"), *headers;

	headers = json_object_get(output, "headers");
	if (!json_is_integer(status) || json_integer_value(status) < 100 ||
	    (headers != NULL && !json_is_object(headers)))
		return fail(d->err, d->cap, "effect.result: http output needs status and headers");
	h->effect_id = xstrdup(d->s->eff_id);
	h->step_id = xstrdup(st->id);
	h->attempt = d->s->cur_attempt;
	h->status = json_integer_value(status);
	h->headers = headers ? json_incref(headers) : json_object();
	h->body = json_incref(json_object_get(output, "body"));
	if (h->body == NULL)
		h->body = json_null();
	h->duration_ms = json_integer_value(json_object_get(output, "duration_ms"));
	if (h->duration_ms < 0)
		h->duration_ms = 0;
	return rs_run_emit(d, &ev);
}

rs_status
rs_run_decide_effect_result(dctx *d)
{
	const rs_cmd *c = d->cmd;
	const rs_step *st = effect_step(d, c->effect_id);
	rs_err big = { "too_large", NULL, RS_ERRCLASS_PERMANENT, 0, NULL };
	char id[ID_CAP], msg[128];

	if (st == NULL)
		return RS_OK;   /* stale: a re-issued effect, a timed-out one, a finished run */
	snprintf(id, sizeof(id), "%s", c->effect_id);
	if (c->has_error)
		return rs_run_fail_step_effect(d, st, &c->error, id, c->retry_after_ms);
	if (rs_run_too_large(c->output)) {
		snprintf(msg, sizeof(msg), "the result is larger than %d bytes",
		         RS_RUN_MAX_VALUE_BYTES);
		big.message = msg;
		return rs_run_fail_step_effect(d, st, &big, id, 0);
	}
	if (st->kind == RS_STEP_LLM)
		return llm_message(d, st, c->output);
	if (st->kind == RS_STEP_HTTP)
		return http_completed(d, st, c->output);
	return RS_OK;
}

rs_status
rs_run_decide_llm_chunk(dctx *d)
{
	const rs_cmd *c = d->cmd;
	rs_event ev;

	/* Duplicates and chunks overtaken by a later one are dropped: the
	 * deltas are for watchers, llm.message has the whole answer. */
	if (d->s->cur_kind != RS_STEP_LLM || effect_step(d, c->effect_id) == NULL ||
	    c->index <= d->s->eff_last_index || c->text == NULL || *c->text == '\0')
		return RS_OK;
	ev = new_event(RS_EV_LLM_DELTA);
	ev.d.llm_delta.effect_id = xstrdup(c->effect_id);
	ev.d.llm_delta.step_id = xstrdup(d->s->cur_step);
	ev.d.llm_delta.turn = d->s->eff_turn;
	ev.d.llm_delta.index = c->index;
	ev.d.llm_delta.text = xstrdup(c->text);
	return rs_run_emit(d, &ev);
}
