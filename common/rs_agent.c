/*
 * rs_agent.c - agent definitions: complete validation with field-path
 * messages, construction of the immutable step model, version hashing.
 *
 * Validation runs in two passes over the steps: the first collects ids
 * (so that "next", "goto" and templates may refer to later steps, loops
 * included), the second checks each step's kind-specific fields. The first
 * problem found is reported; each message names the field path.
 *
 * The kinds with the longest checks have their own files: http and llm
 * steps in rs_agent_effects.c, parallel/foreach/run in rs_agent_children.c;
 * rs_agent_int.h holds what the three share.
 */
#include "rs_agent_int.h"
#include "rs_mem.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_secret.h"
#include "rs_template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *kind_names[] = { "tool", "sleep", "signal", "branch", "transform",
                                    "http", "llm", "parallel", "foreach", "run" };

/* Fields allowed on every step and per kind (NULL-terminated). */
static const char *common_fields[] = { "id", "kind", "next", NULL };
static const char *kind_fields[][13] = {
	[RS_STEP_TOOL] = { "tool", "args", "device", "capability", "timeout_s", "retry", NULL },
	[RS_STEP_SLEEP] = { "duration_ms", NULL },
	[RS_STEP_SIGNAL] = { "signal", "timeout_s", "retry", NULL },
	[RS_STEP_BRANCH] = { "when", "else", NULL },
	[RS_STEP_TRANSFORM] = { "value", NULL },
	[RS_STEP_HTTP] = { "method", "url", "headers", "body", "timeout_s", "retry",
	                   "expect_status", "hmac", "max_response_bytes", "max_redirects", NULL },
	[RS_STEP_LLM] = { "model", "system", "prompt", "tools", "max_turns", "max_tokens",
	                  "temperature", "timeout_s", "tool_timeout_s", "retry", NULL },
	[RS_STEP_PARALLEL] = { "branches", "join", "on_failure", "input", NULL },
	[RS_STEP_FOREACH] = { "items", "steps", "max_concurrency", "on_failure", "input", NULL },
	[RS_STEP_RUN] = { "agent", "version", "input", NULL },
};
const char *rs_agent_http_methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL };
static const char *top_fields[] = { "name", "description", "timeout_s", "max_steps",
                                    "steps", "output", "concurrency", NULL };
static const char *concurrency_fields[] = { "key", "limit", NULL };
static const char *retry_fields[] = { "max_attempts", "initial_backoff_ms", "max_backoff_ms",
                                      "multiplier", "non_retryable", NULL };
static const char *op_names[] = { "equals", "not_equals", "gt", "lt", "exists" };

const char *
rs_step_kind_name(rs_step_kind k)
{
	return (k >= RS_STEP_TOOL && k <= RS_STEP_KIND_LAST) ? kind_names[k] : "unknown";
}

char *
rs_agent_xstrdup(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		rs_oom(0);
	return d;
}

/* Write "<path>: <message>" into err and return RS_EINVAL. */
rs_status __attribute__((format(printf, 4, 5)))
rs_agent_fail(char *err, size_t cap, const char *path, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, cap, "%s: %s", path, msg);
	return RS_EINVAL;
}

/* Field paths are built with this rather than snprintf directly: a path
 * deeper than the buffer is truncated, which is fine for a message. */
void __attribute__((format(printf, 3, 4)))
rs_agent_pathf(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
}

void
rs_agent_subpath(char *buf, size_t cap, const char *path, const char *key)
{
	rs_agent_pathf(buf, cap, "%s%s%s", path, *path ? "." : "", key);
}

int
rs_agent_in_list(const char *k, const char **list)
{
	for (; *list != NULL; list++)
		if (strcmp(k, *list) == 0)
			return 1;
	return 0;
}

/* Reject any key of obj not in a or b (b may be NULL). */
rs_status
rs_agent_check_fields(json_t *obj, const char *path, const char **a, const char **b,
             char *err, size_t cap)
{
	const char *k;
	json_t *v;
	char sub[320];

	json_object_foreach(obj, k, v) {
		if (rs_agent_in_list(k, a) || (b != NULL && rs_agent_in_list(k, b)))
			continue;
		rs_agent_subpath(sub, sizeof(sub), path, k);
		return rs_agent_fail(err, cap, sub, "unknown field");
	}
	return RS_OK;
}

/*
 * Upper bounds of the integer fields, by name (docs/agents.md). A
 * definition is other people's code on shared servers: every number it
 * gives is bounded, so that `timeout_s * 1000` cannot overflow, a deadline
 * stays a date every decoder reads (year < 10000), and no field asks for
 * unbounded work.
 */
static const struct { const char *key; int64_t max; } int_max[] = {
	{ "timeout_s", RS_AGENT_MAX_TIMEOUT_S },
	{ "tool_timeout_s", RS_AGENT_MAX_TIMEOUT_S },
	{ "duration_ms", RS_AGENT_MAX_TIMEOUT_S * 1000 },
	{ "max_steps", RS_AGENT_MAX_STEPS_LIMIT },
	{ "max_attempts", RS_AGENT_MAX_ATTEMPTS },
	{ "initial_backoff_ms", RS_AGENT_MAX_BACKOFF_MS },
	{ "max_backoff_ms", RS_AGENT_MAX_BACKOFF_MS },
	{ "max_turns", RS_AGENT_MAX_TURNS },
	{ "max_tokens", RS_AGENT_MAX_TOKENS },
};   /* max_response_bytes and max_redirects: checked with their http step */

/* Optional integer field in [min, its bound]; *out untouched when absent. */
rs_status
rs_agent_get_int(json_t *obj, const char *key, const char *path, int64_t min, int64_t *out,
        char *err, size_t cap)
{
	json_t *v = json_object_get(obj, key);
	int64_t max = INT64_MAX;
	char p[320];

	if (v == NULL)
		return RS_OK;
	for (size_t i = 0; i < sizeof(int_max) / sizeof(int_max[0]); i++)
		if (strcmp(int_max[i].key, key) == 0)
			max = int_max[i].max;
	rs_agent_subpath(p, sizeof(p), path, key);
	if (!json_is_integer(v) || json_integer_value(v) < min)
		return rs_agent_fail(err, cap, p, "must be an integer >= %lld", (long long)min);
	if (json_integer_value(v) > max)
		return rs_agent_fail(err, cap, p, "must be at most %lld", (long long)max);
	*out = json_integer_value(v);
	return RS_OK;
}

/* Optional string field; required if req. *out borrowed or NULL. */
rs_status
rs_agent_get_str(json_t *obj, const char *key, const char *path, int req, const char **out,
        char *err, size_t cap)
{
	json_t *v = json_object_get(obj, key);
	char p[320];

	*out = NULL;
	rs_agent_subpath(p, sizeof(p), path, key);
	if (v == NULL)
		return req ? rs_agent_fail(err, cap, p, "required") : RS_OK;
	if (!json_is_string(v))
		return rs_agent_fail(err, cap, p, "must be a string");
	*out = json_string_value(v);
	return RS_OK;
}

/* [A-Za-z0-9_.-]{1,128}: tool and signal names. */
int
rs_agent_is_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > NAME_MAX_LEN)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' || *s == '-'))
			return 0;
	return 1;
}

/* --- building --- */

/* Index of step id in the definition, -1 if none. */
static int
find_id(const idset *ids, const char *id)
{
	for (size_t i = 0; i < ids->n; i++) {
		json_t *s = json_array_get(ids->steps, i);
		const char *sid = json_string_value(json_object_get(s, "id"));
		if (sid != NULL && strcmp(sid, id) == 0)
			return (int)i;
	}
	return -1;
}

int
rs_agent_id_known(const char *id, void *ud)
{
	return find_id(ud, id) >= 0;
}

/* A goto target: a step id or "end". */
static rs_status
get_target(json_t *obj, const char *key, const char *path, int req, int dflt,
           const idset *ids, int *out, char *err, size_t cap)
{
	const char *t;
	char p[320];

	if (rs_agent_get_str(obj, key, path, req, &t, err, cap) != RS_OK)
		return RS_EINVAL;
	if (t == NULL) {
		*out = dflt;
		return RS_OK;
	}
	if (strcmp(t, "end") == 0) {
		*out = RS_STEP_END;
		return RS_OK;
	}
	if ((*out = find_id(ids, t)) < 0) {
		rs_agent_subpath(p, sizeof(p), path, key);
		return rs_agent_fail(err, cap, p, "unknown step \"%s\"", t);
	}
	return RS_OK;
}

rs_status
rs_agent_parse_retry(json_t *step, const char *path, rs_retry *r, char *err, size_t cap)
{
	json_t *v = json_object_get(step, "retry"), *m, *c;
	char p[320], q[352];
	size_t i;

	r->max_attempts = 1;
	r->initial_backoff_ms = DEFAULT_INITIAL_BACKOFF_MS;
	r->max_backoff_ms = -1;
	r->multiplier = DEFAULT_MULTIPLIER;
	r->non_retryable = NULL;
	rs_agent_subpath(p, sizeof(p), path, "retry");
	if (v == NULL)
		goto defaults;
	if (!json_is_object(v))
		return rs_agent_fail(err, cap, p, "must be an object");
	if (rs_agent_check_fields(v, p, retry_fields, NULL, err, cap) != RS_OK ||
	    rs_agent_get_int(v, "max_attempts", p, 1, &r->max_attempts, err, cap) != RS_OK ||
	    rs_agent_get_int(v, "initial_backoff_ms", p, 1, &r->initial_backoff_ms, err, cap) != RS_OK ||
	    rs_agent_get_int(v, "max_backoff_ms", p, 1, &r->max_backoff_ms, err, cap) != RS_OK)
		return RS_EINVAL;
	if (r->max_backoff_ms != -1 && r->max_backoff_ms < r->initial_backoff_ms) {
		rs_agent_subpath(q, sizeof(q), p, "max_backoff_ms");
		return rs_agent_fail(err, cap, q, "must be >= initial_backoff_ms (%lld)",
		            (long long)r->initial_backoff_ms);
	}
	if ((m = json_object_get(v, "multiplier")) != NULL) {
		rs_agent_subpath(q, sizeof(q), p, "multiplier");
		if (!json_is_number(m) || json_number_value(m) < 1.0 || json_number_value(m) > 100.0)
			return rs_agent_fail(err, cap, q, "must be a number from 1.0 to 100.0");
		r->multiplier = json_number_value(m);
	}
	if ((m = json_object_get(v, "non_retryable")) != NULL) {
		rs_agent_subpath(q, sizeof(q), p, "non_retryable");
		if (!json_is_array(m))
			return rs_agent_fail(err, cap, q, "must be an array of error codes");
		json_array_foreach(m, i, c) {
			if (!json_is_string(c) || json_string_length(c) == 0) {
				rs_agent_pathf(q, sizeof(q), "%s.non_retryable[%zu]", p, i);
				return rs_agent_fail(err, cap, q, "must be a non-empty string");
			}
		}
		r->non_retryable = json_incref(m);
	}
defaults:
	if (r->max_backoff_ms == -1)
		r->max_backoff_ms = r->initial_backoff_ms > DEFAULT_MAX_BACKOFF_MS ?
		                    r->initial_backoff_ms : DEFAULT_MAX_BACKOFF_MS;
	return RS_OK;
}

rs_status
rs_agent_check_template(json_t *t, const char *path, const idset *ids, char *err, size_t cap)
{
	return rs_template_check(t, path, rs_agent_id_known, (void *)ids, err, cap);
}

static rs_status
parse_tool(json_t *js, const char *path, rs_step *s, const idset *ids, char *err, size_t cap)
{
	const char *tool, *dev;
	json_t *capv, *args;
	char p[320];

	if (rs_agent_get_str(js, "tool", path, 1, &tool, err, cap) != RS_OK)
		return RS_EINVAL;
	rs_agent_subpath(p, sizeof(p), path, "tool");
	if (!rs_agent_is_name(tool))
		return rs_agent_fail(err, cap, p, "must match [A-Za-z0-9_.-]{1,128}");
	s->tool = rs_agent_xstrdup(tool);
	args = json_object_get(js, "args");
	rs_agent_subpath(p, sizeof(p), path, "args");
	/* tool.requested carries args as an object: require one up front. */
	if (args != NULL && !json_is_object(args))
		return rs_agent_fail(err, cap, p, "must be an object");
	if (args != NULL && rs_agent_check_template(args, p, ids, err, cap) != RS_OK)
		return RS_EINVAL;
	s->args = args ? json_deep_copy(args) : json_object();
	if (rs_agent_get_str(js, "device", path, 0, &dev, err, cap) != RS_OK)
		return RS_EINVAL;
	capv = json_object_get(js, "capability");
	if (dev != NULL && capv != NULL)
		return rs_agent_fail(err, cap, path, "exactly one of device or capability");
	if (dev != NULL) {
		rs_agent_subpath(p, sizeof(p), path, "device");
		if (!rs_id_is_token(dev, 64))
			return rs_agent_fail(err, cap, p, "must match [a-z0-9_-]{1,64}");
		s->device = rs_agent_xstrdup(dev);
	} else {
		rs_agent_subpath(p, sizeof(p), path, "capability");
		if (capv != NULL && !json_is_true(capv) &&
		    !(json_is_string(capv) && strcmp(json_string_value(capv), tool) == 0))
			return rs_agent_fail(err, cap, p, "must be true or the tool name (\"%s\")", tool);
		s->capability = rs_agent_xstrdup(tool);
	}
	s->timeout_s = RS_TOOL_TIMEOUT_DEFAULT_S;
	if (rs_agent_get_int(js, "timeout_s", path, 1, &s->timeout_s, err, cap) != RS_OK)
		return RS_EINVAL;
	return rs_agent_parse_retry(js, path, &s->retry, err, cap);
}

static rs_status
parse_sleep(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	char p[320];

	rs_agent_subpath(p, sizeof(p), path, "duration_ms");
	if (json_object_get(js, "duration_ms") == NULL)
		return rs_agent_fail(err, cap, p, "required");
	return rs_agent_get_int(js, "duration_ms", path, 0, &s->duration_ms, err, cap);
}

static rs_status
parse_signal(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	const char *name;
	char p[320];

	if (rs_agent_get_str(js, "signal", path, 1, &name, err, cap) != RS_OK)
		return RS_EINVAL;
	rs_agent_subpath(p, sizeof(p), path, "signal");
	/* The names POST /v1/runs/{id}/signals/{name} accepts: a step waiting
	 * for any other name could never be signalled. */
	if (!rs_id_is_token(name, 64))
		return rs_agent_fail(err, cap, p, "must match [a-z0-9_-]{1,64} (a signal name the API accepts)");
	s->signal = rs_agent_xstrdup(name);
	if (rs_agent_get_int(js, "timeout_s", path, 1, &s->timeout_s, err, cap) != RS_OK)
		return RS_EINVAL;
	return rs_agent_parse_retry(js, path, &s->retry, err, cap);
}

/* One {"if": {...}, "goto": id} of a branch. */
static rs_status
parse_case(json_t *jc, const char *path, rs_branch_case *c, const idset *ids,
           char *err, size_t cap)
{
	static const char *case_fields[] = { "if", "goto", NULL };
	static const char *if_fields[] = { "path", "equals", "not_equals", "gt", "lt",
	                                   "exists", NULL };
	json_t *cond, *v;
	const char *pathv;
	char p[320], q[352], why[160], id[RS_TEMPLATE_MAX_ID + 1];
	int nops = 0;

	if (!json_is_object(jc))
		return rs_agent_fail(err, cap, path, "must be an object");
	if (rs_agent_check_fields(jc, path, case_fields, NULL, err, cap) != RS_OK)
		return RS_EINVAL;
	rs_agent_subpath(p, sizeof(p), path, "if");
	if ((cond = json_object_get(jc, "if")) == NULL)
		return rs_agent_fail(err, cap, p, "required");
	if (!json_is_object(cond))
		return rs_agent_fail(err, cap, p, "must be an object");
	if (rs_agent_check_fields(cond, p, if_fields, NULL, err, cap) != RS_OK ||
	    rs_agent_get_str(cond, "path", p, 1, &pathv, err, cap) != RS_OK)
		return RS_EINVAL;
	rs_agent_subpath(q, sizeof(q), p, "path");
	if (rs_template_parse_expr(pathv, strlen(pathv), id, sizeof(id), why, sizeof(why)) != RS_OK)
		return rs_agent_fail(err, cap, q, "malformed path \"%s\": %s", pathv, why);
	if (id[0] != '\0' && find_id(ids, id) < 0)
		return rs_agent_fail(err, cap, q, "unknown step \"%s\"", id);
	c->path = rs_agent_xstrdup(pathv);
	for (int op = RS_OP_EQUALS; op <= RS_OP_EXISTS; op++) {
		if (json_object_get(cond, op_names[op]) == NULL)
			continue;
		nops++;
		c->op = (rs_branch_op)op;
	}
	if (nops != 1)
		return rs_agent_fail(err, cap, p, "exactly one of equals, not_equals, gt, lt, exists");
	v = json_object_get(cond, op_names[c->op]);
	c->value = json_incref(v);
	rs_agent_subpath(q, sizeof(q), p, op_names[c->op]);
	if ((c->op == RS_OP_GT || c->op == RS_OP_LT) && !json_is_number(c->value))
		return rs_agent_fail(err, cap, q, "must be a number");
	if (c->op == RS_OP_EXISTS && !json_is_boolean(c->value))
		return rs_agent_fail(err, cap, q, "must be a boolean");
	return get_target(jc, "goto", path, 1, RS_STEP_END, ids, &c->goto_idx, err, cap);
}

static rs_status
parse_branch(json_t *js, const char *path, rs_step *s, const idset *ids, char *err, size_t cap)
{
	json_t *when = json_object_get(js, "when"), *jc;
	char p[320], q[352];
	size_t i;

	/* A branch goes where its cases and else say: a "next" would be
	 * silently ignored, so it is refused. */
	if (json_object_get(js, "next") != NULL) {
		rs_agent_subpath(p, sizeof(p), path, "next");
		return rs_agent_fail(err, cap, p, "not allowed on a branch (it goes to a case's goto or to else)");
	}
	rs_agent_subpath(p, sizeof(p), path, "when");
	if (when == NULL)
		return rs_agent_fail(err, cap, p, "required");
	if (!json_is_array(when))
		return rs_agent_fail(err, cap, p, "must be an array");
	s->ncases = json_array_size(when);
	s->cases = calloc(s->ncases ? s->ncases : 1, sizeof(*s->cases));
	if (s->cases == NULL)
		rs_oom(0);
	json_array_foreach(when, i, jc) {
		rs_agent_pathf(q, sizeof(q), "%s[%zu]", p, i);
		if (parse_case(jc, q, &s->cases[i], ids, err, cap) != RS_OK)
			return RS_EINVAL;
	}
	return get_target(js, "else", path, 1, RS_STEP_END, ids, &s->else_idx, err, cap);
}

static rs_status
parse_transform(json_t *js, const char *path, rs_step *s, const idset *ids,
                char *err, size_t cap)
{
	json_t *v = json_object_get(js, "value");
	char p[320];

	rs_agent_subpath(p, sizeof(p), path, "value");
	if (v == NULL)
		return rs_agent_fail(err, cap, p, "required");
	if (rs_agent_check_template(v, p, ids, err, cap) != RS_OK)
		return RS_EINVAL;
	s->value = json_deep_copy(v);
	return RS_OK;
}

/* Pass 1: shape, id and kind of step i (so pass 2 can resolve ids). */
static rs_status
check_step_id(const idset *ids, size_t i, char *err, size_t cap)
{
	json_t *js = json_array_get(ids->steps, i);
	const char *id;
	char path[256];
	int first;

	rs_agent_pathf(path, sizeof(path), "%s[%zu]", ids->prefix, i);
	if (!json_is_object(js))
		return rs_agent_fail(err, cap, path, "must be an object");
	if (rs_agent_get_str(js, "id", path, 1, &id, err, cap) != RS_OK)
		return RS_EINVAL;
	rs_agent_pathf(path, sizeof(path), "%s[%zu].id", ids->prefix, i);
	if (!rs_id_is_token(id, 64))
		return rs_agent_fail(err, cap, path, "must match [a-z0-9_-]{1,64}");
	if (strcmp(id, "end") == 0)
		return rs_agent_fail(err, cap, path, "\"end\" is reserved");
	first = find_id(ids, id);
	if (first >= 0 && (size_t)first < i)
		return rs_agent_fail(err, cap, path, "duplicate id \"%s\" (also %s[%d])", id, ids->prefix,
		            first);
	return RS_OK;
}

/* Pass 2: everything else about step i. */
static rs_status
parse_step(const idset *ids, size_t i, rs_step *s, char *err, size_t cap)
{
	json_t *js = json_array_get(ids->steps, i);
	const char *kind;
	char path[256], p[288];
	int k;

	rs_agent_pathf(path, sizeof(path), "%s[%zu]", ids->prefix, i);
	s->id = rs_agent_xstrdup(json_string_value(json_object_get(js, "id")));
	if (rs_agent_get_str(js, "kind", path, 1, &kind, err, cap) != RS_OK)
		return RS_EINVAL;
	for (k = RS_STEP_TOOL; k <= RS_STEP_KIND_LAST; k++)
		if (strcmp(kind, kind_names[k]) == 0)
			break;
	if (k > RS_STEP_KIND_LAST) {
		rs_agent_pathf(p, sizeof(p), "%s.kind", path);
		return rs_agent_fail(err, cap, p, "unknown step kind \"%s\" (expected tool, sleep, "
		            "signal, branch, transform, http, llm, parallel, foreach or run)", kind);
	}
	s->kind = (rs_step_kind)k;
	if (rs_agent_check_fields(js, path, common_fields, kind_fields[k], err, cap) != RS_OK)
		return RS_EINVAL;
	if (get_target(js, "next", path, 0, i + 1 < ids->n ? (int)i + 1 : RS_STEP_END,
	               ids, &s->next_idx, err, cap) != RS_OK)
		return RS_EINVAL;
	switch (s->kind) {
	case RS_STEP_TOOL:      return parse_tool(js, path, s, ids, err, cap);
	case RS_STEP_SLEEP:     return parse_sleep(js, path, s, err, cap);
	case RS_STEP_SIGNAL:    return parse_signal(js, path, s, err, cap);
	case RS_STEP_BRANCH:    return parse_branch(js, path, s, ids, err, cap);
	case RS_STEP_TRANSFORM: return parse_transform(js, path, s, ids, err, cap);
	case RS_STEP_HTTP:      return rs_agent_parse_http(js, path, s, ids, err, cap);
	case RS_STEP_LLM:       return rs_agent_parse_llm(js, path, s, ids, err, cap);
	case RS_STEP_PARALLEL:  return rs_agent_parse_parallel(js, path, s, ids, err, cap);
	case RS_STEP_FOREACH:   return rs_agent_parse_foreach(js, path, s, ids, err, cap);
	case RS_STEP_RUN:       return rs_agent_parse_run(js, path, s, ids, err, cap);
	}
	return RS_EINVAL;
}

static rs_status
parse_top(json_t *def, rs_agent *a, char *err, size_t cap)
{
	const char *name, *desc;

	if (!json_is_object(def))
		return rs_agent_fail(err, cap, "definition", "must be an object");
	if (rs_agent_check_fields(def, "", top_fields, NULL, err, cap) != RS_OK ||
	    rs_agent_get_str(def, "name", "", 1, &name, err, cap) != RS_OK)
		return RS_EINVAL;
	if (!rs_id_is_token(name, 64))
		return rs_agent_fail(err, cap, "name", "must match [a-z0-9_-]{1,64}");
	if (rs_agent_get_str(def, "description", "", 0, &desc, err, cap) != RS_OK)
		return RS_EINVAL;
	a->name = rs_agent_xstrdup(name);
	a->description = rs_agent_xstrdup(desc);
	a->max_steps = RS_AGENT_MAX_STEPS_DEFAULT;
	if (rs_agent_get_int(def, "timeout_s", "", 1, &a->timeout_s, err, cap) != RS_OK ||
	    rs_agent_get_int(def, "max_steps", "", 1, &a->max_steps, err, cap) != RS_OK)
		return RS_EINVAL;
	return RS_OK;
}

/* "concurrency": {"key": "<template>", "limit": 1..RS_AGENT_MAX_CONCURRENCY}:
 * at most limit runs with the same rendered key run at once; the others
 * stay queued, first come first served (docs/agents.md). The key is
 * rendered from the run's input when the run is created. */
static rs_status
parse_concurrency(json_t *def, rs_agent *a, const idset *ids, char *err, size_t cap)
{
	json_t *c = json_object_get(def, "concurrency"), *key;

	if (c == NULL)
		return RS_OK;
	if (!json_is_object(c))
		return rs_agent_fail(err, cap, "concurrency", "must be an object {\"key\", \"limit\"}");
	if (rs_agent_check_fields(c, "concurrency", concurrency_fields, NULL, err, cap) != RS_OK)
		return RS_EINVAL;
	key = json_object_get(c, "key");
	if (!json_is_string(key) || json_string_length(key) == 0 ||
	    json_string_length(key) > RS_AGENT_MAX_CONCURRENCY_KEY)
		return rs_agent_fail(err, cap, "concurrency.key", "must be a string template of 1 to %d "
		            "characters, e.g. \"{{input.customer}}\"", RS_AGENT_MAX_CONCURRENCY_KEY);
	if (rs_agent_check_template(key, "concurrency.key", ids, err, cap) != RS_OK)
		return RS_EINVAL;
	if (json_object_get(c, "limit") == NULL)
		return rs_agent_fail(err, cap, "concurrency.limit", "required");
	if (rs_agent_get_int(c, "limit", "concurrency", 1, &a->conc_limit, err, cap) != RS_OK)
		return RS_EINVAL;
	if (a->conc_limit > RS_AGENT_MAX_CONCURRENCY)
		return rs_agent_fail(err, cap, "concurrency.limit", "must be at most %d",
		            RS_AGENT_MAX_CONCURRENCY);
	a->conc_key = json_deep_copy(key);
	return RS_OK;
}

/* Both passes over one list of steps into a (the definition's, or a
 * child's list). */
rs_status
rs_agent_parse_steps(rs_agent *a, const idset *ids, char *err, size_t cap)
{
	size_t i;

	for (i = 0; i < ids->n; i++)
		if (check_step_id(ids, i, err, cap) != RS_OK)
			return RS_EINVAL;
	if ((a->steps = calloc(ids->n, sizeof(*a->steps))) == NULL)
		rs_oom(0);
	a->nsteps = ids->n;
	for (i = 0; i < ids->n; i++)
		if (parse_step(ids, i, &a->steps[i], err, cap) != RS_OK)
			return RS_EINVAL;
	return RS_OK;
}

/* Children's lists carry the definition's version (a child run is pinned
 * to it like its parent). */
static void
set_sub_versions(rs_agent *a)
{
	for (size_t i = 0; i < a->nsteps; i++)
		for (size_t j = 0; j < a->steps[i].nsubs; j++) {
			memcpy(a->steps[i].subs[j].agent->version, a->version, sizeof(a->version));
			set_sub_versions(a->steps[i].subs[j].agent);
		}
}

rs_status
rs_agent_parse(json_t *def, rs_agent **out, char *err, size_t cap)
{
	rs_agent *a;
	idset ids;
	json_t *steps, *output;
	rs_status st = RS_EINVAL;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		rs_oom(0);
	if (parse_top(def, a, err, cap) != RS_OK)
		goto cleanup;
	steps = json_object_get(def, "steps");
	if (steps == NULL) {
		rs_agent_fail(err, cap, "steps", "required");
		goto cleanup;
	}
	if (!json_is_array(steps) || json_array_size(steps) == 0) {
		rs_agent_fail(err, cap, "steps", "must be a non-empty array");
		goto cleanup;
	}
	if (json_array_size(steps) > RS_AGENT_MAX_STEP_COUNT) {
		rs_agent_fail(err, cap, "steps", "must have at most %d steps", RS_AGENT_MAX_STEP_COUNT);
		goto cleanup;
	}
	ids.steps = steps;
	ids.n = json_array_size(steps);
	ids.prefix = "steps";
	ids.name = a->name;
	ids.depth = 0;
	if (rs_agent_parse_steps(a, &ids, err, cap) != RS_OK)
		goto cleanup;
	if ((output = json_object_get(def, "output")) != NULL) {
		if (rs_agent_check_template(output, "output", &ids, err, cap) != RS_OK)
			goto cleanup;
		a->output = json_deep_copy(output);
	}
	if (parse_concurrency(def, a, &ids, err, cap) != RS_OK)
		goto cleanup;
	if ((st = rs_agent_version_of(def, a->version)) != RS_OK)
		goto cleanup;
	set_sub_versions(a);
	a->def = json_deep_copy(def);
	*out = a;
	return RS_OK;

cleanup:
	rs_agent_free(a);
	return st == RS_OK ? RS_EINVAL : st;
}

rs_status
rs_agent_parse_text(const char *buf, size_t len, rs_agent **out, char *err, size_t cap)
{
	json_t *def = NULL;
	rs_status st;

	*out = NULL;
	if ((st = rs_json_parse(buf, len, &def, err, cap)) != RS_OK)
		return st;
	st = rs_agent_parse(def, out, err, cap);
	json_decref(def);
	return st;
}

rs_status
rs_agent_version_of(json_t *def, char out[17])
{
	char hex[65], *canon;

	out[0] = '\0';
	if ((canon = rs_json_dump(def)) == NULL)
		return RS_EINVAL;
	rs_sha256_hex(canon, strlen(canon), hex);
	free(canon);
	memcpy(out, hex, 16);
	out[16] = '\0';
	return RS_OK;
}

static void
step_free(rs_step *s)
{
	free(s->id);
	free(s->tool);
	json_decref(s->args);
	free(s->device);
	free(s->capability);
	json_decref(s->retry.non_retryable);
	free(s->signal);
	for (size_t i = 0; i < s->ncases; i++) {
		free(s->cases[i].path);
		json_decref(s->cases[i].value);
	}
	free(s->cases);
	json_decref(s->value);
	free(s->method);
	json_decref(s->url);
	json_decref(s->headers);
	json_decref(s->body);
	json_decref(s->expect_status);
	free(s->hmac_secret);
	free(s->hmac_header);
	free(s->base_url);
	free(s->model);
	free(s->api_key_secret);
	json_decref(s->system);
	json_decref(s->prompt);
	json_decref(s->llm_tools);
	json_decref(s->temperature);
	for (size_t i = 0; i < s->nsubs; i++) {
		free(s->subs[i].name);
		rs_agent_free(s->subs[i].agent);
	}
	free(s->subs);
	json_decref(s->items);
	json_decref(s->child_input);
	free(s->child_agent);
	free(s->child_version);
}

void
rs_agent_free(rs_agent *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->nsteps; i++)
		step_free(&a->steps[i]);
	free(a->steps);
	free(a->name);
	free(a->description);
	json_decref(a->def);
	json_decref(a->output);
	json_decref(a->conc_key);
	free(a);
}

const char *rs_agent_name(const rs_agent *a) { return a->name; }
const char *rs_agent_version(const rs_agent *a) { return a->version; }
const char *rs_agent_description(const rs_agent *a) { return a->description; }
json_t *rs_agent_json(const rs_agent *a) { return a->def; }
int64_t rs_agent_timeout_s(const rs_agent *a) { return a->timeout_s; }
int64_t rs_agent_max_steps(const rs_agent *a) { return a->max_steps; }
json_t *rs_agent_output(const rs_agent *a) { return a->output; }

json_t *
rs_agent_concurrency(const rs_agent *a, int64_t *limit)
{
	*limit = a->conc_limit;
	return a->conc_key;
}
size_t rs_agent_step_count(const rs_agent *a) { return a->nsteps; }

const rs_step *
rs_agent_step(const rs_agent *a, size_t idx)
{
	return idx < a->nsteps ? &a->steps[idx] : NULL;
}

const rs_step *
rs_agent_step_find(const rs_agent *a, const char *id, int *idx)
{
	for (size_t i = 0; i < a->nsteps; i++) {
		if (strcmp(a->steps[i].id, id) == 0) {
			if (idx != NULL)
				*idx = (int)i;
			return &a->steps[i];
		}
	}
	return NULL;
}

const rs_agent *
rs_agent_scope(const rs_agent *a, const char *scope)
{
	const char *p = scope, *slash, *name;
	char id[72];
	size_t n;

	for (int depth = 0; p != NULL && *p != '\0'; depth++) {
		const rs_step *st;
		const rs_agent *next = NULL;
		if (depth >= RS_AGENT_MAX_DEPTH || (slash = strchr(p, '/')) == NULL ||
		    (n = (size_t)(slash - p)) >= sizeof(id))
			return NULL;
		memcpy(id, p, n);
		id[n] = '\0';
		name = slash + 1;
		n = strcspn(name, "/");
		if ((st = rs_agent_step_find(a, id, NULL)) == NULL)
			return NULL;
		for (size_t i = 0; i < st->nsubs; i++)
			if (strlen(st->subs[i].name) == n && strncmp(st->subs[i].name, name, n) == 0)
				next = st->subs[i].agent;
		if (next == NULL)
			return NULL;
		a = next;
		p = name[n] == '/' ? name + n + 1 : name + n;
	}
	return a;
}

/* --- branch evaluation --- */

/* Numbers compare by value (1 == 1.0); everything else structurally. */
static int
values_equal(json_t *a, json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	return json_equal(a, b);
}

static int
case_matches(const rs_branch_case *c, json_t *ctx)
{
	json_t *v = rs_template_lookup(ctx, c->path);

	switch (c->op) {
	case RS_OP_EQUALS:
		return v != NULL && values_equal(v, c->value);
	case RS_OP_NOT_EQUALS:
		return v == NULL || !values_equal(v, c->value);
	case RS_OP_GT:
		return json_is_number(v) && json_number_value(v) > json_number_value(c->value);
	case RS_OP_LT:
		return json_is_number(v) && json_number_value(v) < json_number_value(c->value);
	case RS_OP_EXISTS:
		return (v != NULL && !json_is_null(v)) == json_is_true(c->value);
	}
	return 0;
}

int
rs_branch_target(const rs_step *s, json_t *ctx, int *case_idx)
{
	for (size_t i = 0; i < s->ncases; i++) {
		if (case_matches(&s->cases[i], ctx)) {
			*case_idx = (int)i;
			return s->cases[i].goto_idx;
		}
	}
	*case_idx = -1;
	return s->else_idx;
}
