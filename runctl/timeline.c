/*
 * timeline.c - event -> timeline row, run summary and step path (see
 * timeline.h). Pure: output depends on the events only, so replaying the
 * same history always prints the same bytes.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_json.h"
#include "rs_time.h"
#include "timeline.h"
#include "rs_view.h"

char
rs_ctl_tl_mark_char(tl_mark m)
{
	static const char c[] = { ' ', 'W', 'R', '!', '*' };

	return (m >= TL_NONE && m <= TL_DONE) ? c[m] : '?';
}

const char *
rs_ctl_tl_mark_name(tl_mark m)
{
	static const char *const n[] = { "", "wait", "retry", "fail", "done" };

	return (m >= TL_NONE && m <= TL_DONE) ? n[m] : "";
}

/* Append printf output at *off within buf, never overflowing. */
static void __attribute__((format(printf, 4, 5)))
cat(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off >= cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, cap - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off = (*off + (size_t)n < cap) ? *off + (size_t)n : cap - 1;
}

/* Compact canonical JSON of v, cut to TL_JSON_MAX chars with "...". */
static void
cat_json(char *buf, size_t cap, size_t *off, json_t *v)
{
	char *s;
	size_t n;

	if (v == NULL) {
		cat(buf, cap, off, "null");
		return;
	}
	s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (s == NULL)
		return;
	n = strlen(s);
	if (n > TL_JSON_MAX)
		cat(buf, cap, off, "%.*s...", TL_JSON_MAX - 3, s);
	else
		cat(buf, cap, off, "%s", s);
	free(s);
}

static void
cat_err(char *buf, size_t cap, size_t *off, const rs_err *e)
{
	cat(buf, cap, off, "%s: %.60s (%s%s)", e->code ? e->code : "?", e->message ? e->message : "",
	    rs_errclass_name(e->cls), e->retryable ? ", retryable" : "");
}

void
rs_ctl_tl_format_delta(int64_t ms, char *buf, size_t cap)
{
	const char *sign = ms < 0 ? "-" : "+";
	uint64_t a = ms < 0 ? (uint64_t)(-(ms + 1)) + 1 : (uint64_t)ms;
	uint64_t h = a / 3600000, m = (a / 60000) % 60, s = (a / 1000) % 60, f = a % 1000;

	if (a < 60000)
		snprintf(buf, cap, "%s%" PRIu64 ".%03" PRIu64 "s", sign, s, f);
	else if (a < 3600000)
		snprintf(buf, cap, "%s%" PRIu64 "m%02" PRIu64 ".%03" PRIu64 "s", sign, m, s, f);
	else
		snprintf(buf, cap, "%s%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", sign, h, m, s);
}

static tl_mark
mark_of(const rs_event *ev)
{
	switch (ev->type) {
	case RS_EV_TOOL_REQUESTED:
	case RS_EV_TIMER_SCHEDULED:
	case RS_EV_HTTP_REQUESTED:
	case RS_EV_LLM_REQUESTED:
		return TL_WAIT;
	case RS_EV_STEP_STARTED:
		return (ev->d.step_started.kind && strcmp(ev->d.step_started.kind, "signal") == 0)
		       ? TL_WAIT : TL_NONE;
	case RS_EV_STEP_RETRY_SCHEDULED:
		return TL_RETRY;
	case RS_EV_STEP_FAILED:
	case RS_EV_TOOL_FAILED:
	case RS_EV_TOOL_TIMED_OUT:
	case RS_EV_RUN_CANCEL_REQUESTED:
	case RS_EV_RUN_FAILED:
	case RS_EV_RUN_CANCELLED:
	case RS_EV_RUN_TIMED_OUT:
		return TL_FAIL;
	case RS_EV_RUN_COMPLETED:
		return TL_DONE;
	default:
		return TL_NONE;
	}
}

/* Characters (UTF-8 code points) in s: what a reader calls its length. */
static size_t
utf8_len(const char *s)
{
	size_t n = 0;

	for (; s != NULL && *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* A step failure the executor reported for an effect: say so, with the
 * server's Retry-After. */
static void
cat_effect_failure(char *b, size_t cap, size_t *o, const rs_ev_step_failed *x)
{
	char d[32];

	if (x->effect_id == NULL)
		return;
	cat(b, cap, o, " [executor");
	if (x->retry_after_ms > 0) {
		rs_ctl_tl_format_delta(x->retry_after_ms, d, sizeof(d));
		cat(b, cap, o, ", Retry-After %s", d + 1);
	}
	cat(b, cap, o, "]");
}

static void
sum_http_requested(const rs_ev_http_requested *x, char *b, size_t cap, size_t *o)
{
	char d[32];

	rs_ctl_tl_format_delta(x->timeout_ms, d, sizeof(d));
	cat(b, cap, o, "%s %.80s timeout=%s", x->method, x->url, d + 1);
	if (x->hmac != NULL)
		cat(b, cap, o, " signed");
}

static void
sum_http_completed(const rs_ev_http_completed *x, char *b, size_t cap, size_t *o)
{
	cat(b, cap, o, "HTTP %" PRId64 " in %" PRId64 "ms body=", x->status, x->duration_ms);
	cat_json(b, cap, o, x->body);
}

static void
sum_llm_requested(const rs_ev_llm_requested *x, char *b, size_t cap, size_t *o)
{
	const char *model = json_string_value(json_object_get(x->model, "model"));
	size_t nm = json_array_size(x->messages), nt = json_array_size(x->tools);

	cat(b, cap, o, "turn %" PRId64 " %s: %zu %s, %zu %s", x->turn, model ? model : "?", nm,
	    nm == 1 ? "message" : "messages", nt, nt == 1 ? "tool" : "tools");
}

static void
sum_llm_delta(const rs_ev_llm_delta *x, char *b, size_t cap, size_t *o)
{
	json_t *t = json_string(x->text ? x->text : "");

	cat(b, cap, o, "turn %" PRId64 " #%" PRId64 " +%zu chars ", x->turn, x->index, utf8_len(x->text));
	cat_json(b, cap, o, t);
	json_decref(t);
}

/* "turn 2: 54 chars \"Oslo...\" finish=stop tokens=141+21", or the tools
 * the model called instead of answering. */
static void
sum_llm_message(const rs_ev_llm_message *x, char *b, size_t cap, size_t *o)
{
	json_t *content = json_object_get(x->message, "content");
	json_t *calls = json_object_get(x->message, "tool_calls"), *c;
	size_t i;

	cat(b, cap, o, "turn %" PRId64 ":", x->turn);
	if (json_string_length(content) > 0) {
		cat(b, cap, o, " %zu chars ", utf8_len(json_string_value(content)));
		cat_json(b, cap, o, content);
	}
	if (json_array_size(calls) > 0) {
		cat(b, cap, o, " %s", json_array_size(calls) == 1 ? "tool call" : "tool calls");
		json_array_foreach(calls, i, c) {
			const char *n = json_string_value(json_object_get(json_object_get(c, "function"), "name"));
			cat(b, cap, o, "%s%s", i ? "," : " ", n ? n : "?");
		}
	}
	if (x->finish_reason != NULL)
		cat(b, cap, o, " finish=%s", x->finish_reason);
	if (json_is_object(x->usage))
		cat(b, cap, o, " tokens=%" PRId64 "+%" PRId64,
		    (int64_t)json_integer_value(json_object_get(x->usage, "prompt_tokens")),
		    (int64_t)json_integer_value(json_object_get(x->usage, "completion_tokens")));
}

/* The short data summary: what a reader needs to follow the run. */
static void
summarize(const rs_event *ev, char *b, size_t cap)
{
	size_t o = 0;
	char d[32];

	b[0] = '\0';
	switch (ev->type) {
	case RS_EV_RUN_CREATED: {
		const rs_ev_run_created *x = &ev->d.run_created;
		cat(b, cap, &o, "%s@%s input=", x->agent, x->version);
		cat_json(b, cap, &o, x->input);
		if (x->forked_from != NULL)
			cat(b, cap, &o, " forked from %s after event %" PRId64 " (%zu outputs to reuse)",
			    x->forked_from, x->from_seq, json_array_size(x->reuse));
		if (x->concurrency_limit > 0)
			cat(b, cap, &o, " concurrency=%s/%" PRId64, x->concurrency_key ? x->concurrency_key : "",
			    x->concurrency_limit);
		if (x->tenant_limit > 0)
			cat(b, cap, &o, " tenant_limit=%" PRId64, x->tenant_limit);
		if (x->schedule_id != NULL)
			cat(b, cap, &o, " schedule=%s", x->schedule_id);
		break;
	}
	case RS_EV_RUN_STARTED:
		cat(b, cap, &o, "instance=%s", ev->d.run_started.instance ? ev->d.run_started.instance : "-");
		if (ev->d.run_started.admission != NULL)
			cat(b, cap, &o, " admission=%s", ev->d.run_started.admission);
		break;
	case RS_EV_STEP_STARTED:
		cat(b, cap, &o, "kind=%s", ev->d.step_started.kind);
		if (ev->d.step_started.input != NULL) {
			cat(b, cap, &o, " input=");
			cat_json(b, cap, &o, ev->d.step_started.input);
		}
		break;
	case RS_EV_STEP_COMPLETED: {
		const rs_ev_step_completed *x = &ev->d.step_completed;
		cat(b, cap, &o, "output=");
		cat_json(b, cap, &o, x->output);
		if (x->next_step != NULL)
			cat(b, cap, &o, " next=%s", x->next_step);
		if (x->duration_ms > 0)
			cat(b, cap, &o, " took=%" PRId64 "ms", x->duration_ms);
		if (x->reused_seq > 0)
			cat(b, cap, &o, " reused (source event %" PRId64 ")", x->reused_seq);
		break;
	}
	case RS_EV_STEP_FAILED:
		cat_err(b, cap, &o, &ev->d.step_failed.error);
		cat_effect_failure(b, cap, &o, &ev->d.step_failed);
		if (ev->d.step_failed.final)
			cat(b, cap, &o, " final");
		break;
	case RS_EV_STEP_RETRY_SCHEDULED:
		rs_ctl_tl_format_delta(ev->d.step_retry_scheduled.backoff_ms, d, sizeof(d));
		cat(b, cap, &o, "attempt %" PRId64 " in %s", ev->d.step_retry_scheduled.attempt, d + 1);
		break;
	case RS_EV_TOOL_REQUESTED: {
		const rs_ev_tool_requested *x = &ev->d.tool_requested;
		cat(b, cap, &o, "%s on %s%s call=%s args=", x->tool, x->device ? "device " : "capability ",
		    x->device ? x->device : (x->capability ? x->capability : "?"), x->call_id);
		cat_json(b, cap, &o, x->args);
		break;
	}
	case RS_EV_TOOL_DISPATCHED: {
		const rs_ev_tool_dispatched *x = &ev->d.tool_dispatched;
		cat(b, cap, &o, "call=%s to %s", x->call_id, x->device_id ? x->device_id : "?");
		if (x->router != NULL)
			cat(b, cap, &o, " via %s", x->router);
		break;
	}
	case RS_EV_TOOL_COMPLETED:
		cat(b, cap, &o, "call=%s output=", ev->d.tool_completed.call_id);
		cat_json(b, cap, &o, ev->d.tool_completed.output);
		break;
	case RS_EV_TOOL_FAILED:
		cat(b, cap, &o, "call=%s ", ev->d.tool_failed.call_id);
		cat_err(b, cap, &o, &ev->d.tool_failed.error);
		break;
	case RS_EV_TOOL_TIMED_OUT:
		cat(b, cap, &o, "call=%s", ev->d.tool_timed_out.call_id);
		break;
	case RS_EV_TIMER_SCHEDULED:
		rs_ctl_tl_format_delta(ev->d.timer_scheduled.due_at - ev->time_ms, d, sizeof(d));
		cat(b, cap, &o, "%s due in %s", rs_timer_purpose_name(ev->d.timer_scheduled.purpose), d + 1);
		break;
	case RS_EV_TIMER_FIRED:
		rs_ctl_tl_format_delta(ev->time_ms - ev->d.timer_fired.due_at, d, sizeof(d));
		cat(b, cap, &o, "%s (late %s)", rs_timer_purpose_name(ev->d.timer_fired.purpose), d + 1);
		break;
	case RS_EV_SIGNAL_RECEIVED:
		cat(b, cap, &o, "%s payload=", ev->d.signal_received.name);
		cat_json(b, cap, &o, ev->d.signal_received.payload);
		break;
	case RS_EV_RUN_CANCEL_REQUESTED:
		cat(b, cap, &o, "reason=%s", ev->d.run_cancel_requested.reason ? ev->d.run_cancel_requested.reason : "-");
		break;
	case RS_EV_RUN_COMPLETED:
		cat(b, cap, &o, "output=");
		cat_json(b, cap, &o, ev->d.run_completed.output);
		break;
	case RS_EV_RUN_FAILED:
		cat_err(b, cap, &o, &ev->d.run_failed.error);
		break;
	case RS_EV_RUN_CANCELLED:
		cat(b, cap, &o, "reason=%s", ev->d.run_cancelled.reason ? ev->d.run_cancelled.reason : "-");
		break;
	case RS_EV_RUN_TIMED_OUT:
		cat(b, cap, &o, "after %" PRId64 "s", ev->d.run_timed_out.timeout_s);
		break;
	case RS_EV_HTTP_REQUESTED: sum_http_requested(&ev->d.http_requested, b, cap, &o); break;
	case RS_EV_HTTP_COMPLETED: sum_http_completed(&ev->d.http_completed, b, cap, &o); break;
	case RS_EV_LLM_REQUESTED: sum_llm_requested(&ev->d.llm_requested, b, cap, &o); break;
	case RS_EV_LLM_DELTA: sum_llm_delta(&ev->d.llm_delta, b, cap, &o); break;
	case RS_EV_LLM_MESSAGE: sum_llm_message(&ev->d.llm_message, b, cap, &o); break;
	case RS_EV_CHILD_STARTED:
		cat(b, cap, &o, "%s -> run %s (%s%s%s)", ev->d.child_started.key,
		    ev->d.child_started.child_run_id, ev->d.child_started.agent,
		    ev->d.child_started.scope ? " " : "",
		    ev->d.child_started.scope ? ev->d.child_started.scope : "");
		break;
	case RS_EV_CHILD_FINISHED:
		cat(b, cap, &o, "%s %s ", ev->d.child_finished.key, ev->d.child_finished.status);
		cat_json(b, cap, &o, ev->d.child_finished.error ? ev->d.child_finished.error
		                                                : ev->d.child_finished.output);
		break;
	default:
		cat(b, cap, &o, "(event type unknown to this runctl)");
		break;
	}
}

void
rs_ctl_tl_row_of(const rs_event *ev, int64_t start_ms, tl_row *row)
{
	memset(row, 0, sizeof(*row));
	row->seq = ev->runseq;
	row->time_ms = ev->time_ms;
	row->delta_ms = ev->time_ms - start_ms;
	row->type = ev->type;
	rs_view_event_step(ev, &row->step, &row->attempt);
	row->mark = mark_of(ev);
	summarize(ev, row->summary, sizeof(row->summary));
}

static const char *
type_name(rs_event_type t)
{
	return (unsigned)t < RS_EV__COUNT ? rs_event_type_name(t) : "?";
}

const char *
rs_ctl_tl_header(void)
{
	return "  SEQ  TIME                      DELTA        TYPE                  STEP          ATT  DATA";
}

void
rs_ctl_tl_format_row(const tl_row *r, const char *on, const char *off, char *buf, size_t cap)
{
	char when[32], delta[32], att[24];

	rs_time_rfc3339(r->time_ms, when, sizeof(when));
	rs_ctl_tl_format_delta(r->delta_ms, delta, sizeof(delta));
	if (r->attempt > 0)
		snprintf(att, sizeof(att), "%" PRId64, r->attempt);
	else
		snprintf(att, sizeof(att), "-");
	if (r->mark == TL_NONE)
		on = off = "";
	snprintf(buf, cap, "%s%c%4" PRIu64 "  %-24s  %-11s  %-20s  %-12s  %3s  %s%s", on,
	         rs_ctl_tl_mark_char(r->mark), r->seq, when, delta, type_name(r->type),
	         r->step ? r->step : "-", att, r->summary, off);
}

json_t *
rs_ctl_tl_row_json(const tl_row *r)
{
	char when[32];
	json_t *o;

	rs_time_rfc3339(r->time_ms, when, sizeof(when));
	o = json_pack("{s:I,s:s,s:I,s:s,s:s,s:s}", "seq", (json_int_t)r->seq, "time", when,
	              "delta_ms", (json_int_t)r->delta_ms, "type", type_name(r->type),
	              "summary", r->summary, "mark", rs_ctl_tl_mark_name(r->mark));
	if (o == NULL)
		return NULL;
	if (r->step != NULL)
		json_object_set_new(o, "step", json_string(r->step));
	if (r->attempt > 0)
		json_object_set_new(o, "attempt", json_integer(r->attempt));
	return o;
}

void
rs_ctl_tl_summary_init(tl_summary *s)
{
	memset(s, 0, sizeof(*s));
	s->status = "none";
}

void
rs_ctl_tl_summary_add(tl_summary *s, const rs_event *ev)
{
	if (s->events++ == 0) {
		s->start_ms = ev->time_ms;
		snprintf(s->run_id, sizeof(s->run_id), "%s", ev->run_id);
		snprintf(s->tenant, sizeof(s->tenant), "%s", ev->tenant);
	}
	s->end_ms = ev->time_ms;
	s->last_seq = ev->runseq;
	/* The status is the one fold's rule (common/rs_view.c): the same
	 * status GET /v1/runs/{id} and the read model show at this event. */
	s->status = rs_view_status_next(s->status, ev);
	switch (ev->type) {
	case RS_EV_RUN_CREATED:
		snprintf(s->agent, sizeof(s->agent), "%s", ev->d.run_created.agent);
		snprintf(s->version, sizeof(s->version), "%s", ev->d.run_created.version);
		break;
	case RS_EV_STEP_COMPLETED: s->steps_completed++; break;
	case RS_EV_STEP_FAILED: s->steps_failed++; break;
	case RS_EV_STEP_RETRY_SCHEDULED: s->retries++; break;
	case RS_EV_TOOL_REQUESTED: s->tool_calls++; break;
	case RS_EV_TOOL_FAILED:
	case RS_EV_TOOL_TIMED_OUT: s->tool_failures++; break;
	case RS_EV_TIMER_SCHEDULED: s->timers++; break;
	case RS_EV_SIGNAL_RECEIVED: s->signals++; break;
	case RS_EV_HTTP_REQUESTED: s->http_requests++; break;
	case RS_EV_LLM_REQUESTED: s->llm_turns++; break;
	default: break;
	}
}

static const char *
plural(unsigned n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

void
rs_ctl_tl_summary_format(const tl_summary *s, char *buf, size_t cap)
{
	char d[32];
	size_t o = 0;

	rs_ctl_tl_format_delta(s->end_ms - s->start_ms, d, sizeof(d));
	cat(buf, cap, &o, "%s after %s: %" PRIu64 " %s, %u %s completed", s->status, d + 1, s->events,
	    s->events == 1 ? "event" : "events", s->steps_completed,
	    plural(s->steps_completed, "step", "steps"));
	if (s->steps_failed)
		cat(buf, cap, &o, ", %u step %s", s->steps_failed, plural(s->steps_failed, "failure", "failures"));
	if (s->retries)
		cat(buf, cap, &o, ", %u %s", s->retries, plural(s->retries, "retry", "retries"));
	if (s->tool_calls)
		cat(buf, cap, &o, ", %u tool %s", s->tool_calls, plural(s->tool_calls, "call", "calls"));
	if (s->tool_failures)
		cat(buf, cap, &o, " (%u failed)", s->tool_failures);
	if (s->http_requests)
		cat(buf, cap, &o, ", %u http %s", s->http_requests,
		    plural(s->http_requests, "request", "requests"));
	if (s->llm_turns)
		cat(buf, cap, &o, ", %u model %s", s->llm_turns, plural(s->llm_turns, "turn", "turns"));
	if (s->timers)
		cat(buf, cap, &o, ", %u %s", s->timers, plural(s->timers, "timer", "timers"));
	if (s->signals)
		cat(buf, cap, &o, ", %u %s", s->signals, plural(s->signals, "signal", "signals"));
}

json_t *
rs_ctl_tl_summary_json(const tl_summary *s)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:i,s:i,s:i,s:i,s:i,s:i,s:i}",
	                      "run_id", s->run_id, "tenant", s->tenant, "agent", s->agent,
	                      "version", s->version, "status", s->status,
	                      "events", (json_int_t)s->events, "last_seq", (json_int_t)s->last_seq,
	                      "duration_ms", (json_int_t)(s->end_ms - s->start_ms),
	                      "steps_completed", (int)s->steps_completed,
	                      "steps_failed", (int)s->steps_failed,
	                      "retries", (int)s->retries, "tool_calls", (int)s->tool_calls,
	                      "tool_failures", (int)s->tool_failures, "timers", (int)s->timers,
	                      "signals", (int)s->signals);

	/* Only runs with server-side effects have these (so the summary of a
	 * run without them stays what it was). */
	if (o != NULL && s->http_requests)
		json_object_set_new(o, "http_requests", json_integer(s->http_requests));
	if (o != NULL && s->llm_turns)
		json_object_set_new(o, "llm_turns", json_integer(s->llm_turns));
	return o;
}

size_t
rs_ctl_tl_step_path(const rs_event *ev, size_t n, tl_step *steps, size_t cap)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		tl_step s = { 0 };
		if (ev[i].type == RS_EV_STEP_COMPLETED) {
			s.step = ev[i].d.step_completed.step_id;
			s.attempt = ev[i].d.step_completed.attempt;
			s.output = ev[i].d.step_completed.output;
		} else if (ev[i].type == RS_EV_STEP_FAILED) {
			s.step = ev[i].d.step_failed.step_id;
			s.attempt = ev[i].d.step_failed.attempt;
			s.failed = 1;
			s.error = &ev[i].d.step_failed.error;
		} else {
			continue;
		}
		s.seq = ev[i].runseq;
		if (k < cap)
			steps[k] = s;
		k++;
	}
	return k;
}

static int
same_step(const tl_step *a, const tl_step *b)
{
	if (strcmp(a->step, b->step) != 0 || a->attempt != b->attempt || a->failed != b->failed)
		return 0;
	if (a->failed)
		return strcmp(a->error->code, b->error->code) == 0;
	if (a->output == NULL || b->output == NULL)
		return a->output == b->output;
	return json_equal(a->output, b->output);
}

long
rs_ctl_tl_step_diverge(const tl_step *a, size_t na, const tl_step *b, size_t nb)
{
	size_t n = na < nb ? na : nb;

	for (size_t i = 0; i < n; i++)
		if (!same_step(&a[i], &b[i]))
			return (long)i;
	return na == nb ? -1 : (long)n;
}

void
rs_ctl_tl_step_format(const tl_step *s, char *buf, size_t cap)
{
	size_t o = 0;

	buf[0] = '\0';
	cat(buf, cap, &o, "%s#%" PRId64 " ", s->step, s->attempt);
	if (s->failed) {
		cat(buf, cap, &o, "failed ");
		cat_err(buf, cap, &o, s->error);
	} else {
		cat(buf, cap, &o, "ok ");
		cat_json(buf, cap, &o, s->output);
	}
}
