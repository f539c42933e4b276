/*
 * rs_agent.c - agent definitions: complete validation with field-path
 * messages, construction of the immutable step model, version hashing.
 *
 * Validation runs in two passes over the steps: the first collects ids
 * (so that "next", "goto" and templates may refer to later steps, loops
 * included), the second checks each step's kind-specific fields. The first
 * problem found is reported; each message names the field path.
 */
#include "rs_agent.h"
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

#define DEFAULT_INITIAL_BACKOFF_MS 1000
#define DEFAULT_MAX_BACKOFF_MS     60000
#define DEFAULT_MULTIPLIER         2.0
#define NAME_MAX_LEN               128  /* tool and signal names */

struct rs_agent {
	char *name;
	char *description;
	char version[17];
	json_t *def;         /* deep copy of the definition */
	int64_t timeout_s;
	int64_t max_steps;
	json_t *output;      /* template or NULL */
	json_t *conc_key;    /* concurrency.key template (a string) or NULL */
	int64_t conc_limit;  /* concurrency.limit, 0 = none */
	rs_step *steps;
	size_t nsteps;
};

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
static const char *http_methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL };
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

#define xstrdup rs_xstrdup

/* Write "<path>: <message>" into err and return RS_EINVAL. */
static rs_status __attribute__((format(printf, 4, 5)))
fail(char *err, size_t cap, const char *path, const char *fmt, ...)
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
static void __attribute__((format(printf, 3, 4)))
pathf(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
}

static void
subpath(char *buf, size_t cap, const char *path, const char *key)
{
	pathf(buf, cap, "%s%s%s", path, *path ? "." : "", key);
}

static int
in_list(const char *k, const char **list)
{
	for (; *list != NULL; list++)
		if (strcmp(k, *list) == 0)
			return 1;
	return 0;
}

/* Reject any key of obj not in a or b (b may be NULL). */
static rs_status
check_fields(json_t *obj, const char *path, const char **a, const char **b,
             char *err, size_t cap)
{
	const char *k;
	json_t *v;
	char sub[320];

	json_object_foreach(obj, k, v) {
		if (in_list(k, a) || (b != NULL && in_list(k, b)))
			continue;
		subpath(sub, sizeof(sub), path, k);
		return fail(err, cap, sub, "unknown field");
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
static rs_status
get_int(json_t *obj, const char *key, const char *path, int64_t min, int64_t *out,
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
	subpath(p, sizeof(p), path, key);
	if (!json_is_integer(v) || json_integer_value(v) < min)
		return fail(err, cap, p, "must be an integer >= %lld", (long long)min);
	if (json_integer_value(v) > max)
		return fail(err, cap, p, "must be at most %lld", (long long)max);
	*out = json_integer_value(v);
	return RS_OK;
}

/* Optional string field; required if req. *out borrowed or NULL. */
static rs_status
get_str(json_t *obj, const char *key, const char *path, int req, const char **out,
        char *err, size_t cap)
{
	json_t *v = json_object_get(obj, key);
	char p[320];

	*out = NULL;
	subpath(p, sizeof(p), path, key);
	if (v == NULL)
		return req ? fail(err, cap, p, "required") : RS_OK;
	if (!json_is_string(v))
		return fail(err, cap, p, "must be a string");
	*out = json_string_value(v);
	return RS_OK;
}

/* [A-Za-z0-9_.-]{1,128}: tool and signal names. */
static int
is_name(const char *s)
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

typedef struct {
	json_t *steps;      /* the "steps" array of the definition */
	size_t n;
	const char *prefix; /* field path of that array: "steps", "steps[2].branches.a" */
	const char *name;   /* the agent's name (children's lists share it) */
	int depth;          /* 0 for the definition, +1 per parallel/foreach */
} idset;

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

static int
id_known(const char *id, void *ud)
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

	if (get_str(obj, key, path, req, &t, err, cap) != RS_OK)
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
		subpath(p, sizeof(p), path, key);
		return fail(err, cap, p, "unknown step \"%s\"", t);
	}
	return RS_OK;
}

static rs_status
parse_retry(json_t *step, const char *path, rs_retry *r, char *err, size_t cap)
{
	json_t *v = json_object_get(step, "retry"), *m, *c;
	char p[320], q[352];
	size_t i;

	r->max_attempts = 1;
	r->initial_backoff_ms = DEFAULT_INITIAL_BACKOFF_MS;
	r->max_backoff_ms = -1;
	r->multiplier = DEFAULT_MULTIPLIER;
	r->non_retryable = NULL;
	subpath(p, sizeof(p), path, "retry");
	if (v == NULL)
		goto defaults;
	if (!json_is_object(v))
		return fail(err, cap, p, "must be an object");
	if (check_fields(v, p, retry_fields, NULL, err, cap) != RS_OK ||
	    get_int(v, "max_attempts", p, 1, &r->max_attempts, err, cap) != RS_OK ||
	    get_int(v, "initial_backoff_ms", p, 1, &r->initial_backoff_ms, err, cap) != RS_OK ||
	    get_int(v, "max_backoff_ms", p, 1, &r->max_backoff_ms, err, cap) != RS_OK)
		return RS_EINVAL;
	if (r->max_backoff_ms != -1 && r->max_backoff_ms < r->initial_backoff_ms) {
		subpath(q, sizeof(q), p, "max_backoff_ms");
		return fail(err, cap, q, "must be >= initial_backoff_ms (%lld)",
		            (long long)r->initial_backoff_ms);
	}
	if ((m = json_object_get(v, "multiplier")) != NULL) {
		subpath(q, sizeof(q), p, "multiplier");
		if (!json_is_number(m) || json_number_value(m) < 1.0 || json_number_value(m) > 100.0)
			return fail(err, cap, q, "must be a number from 1.0 to 100.0");
		r->multiplier = json_number_value(m);
	}
	if ((m = json_object_get(v, "non_retryable")) != NULL) {
		subpath(q, sizeof(q), p, "non_retryable");
		if (!json_is_array(m))
			return fail(err, cap, q, "must be an array of error codes");
		json_array_foreach(m, i, c) {
			if (!json_is_string(c) || json_string_length(c) == 0) {
				pathf(q, sizeof(q), "%s.non_retryable[%zu]", p, i);
				return fail(err, cap, q, "must be a non-empty string");
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

static rs_status
check_template(json_t *t, const char *path, const idset *ids, char *err, size_t cap)
{
	return rs_template_check(t, path, id_known, (void *)ids, err, cap);
}

static rs_status
parse_tool(json_t *js, const char *path, rs_step *s, const idset *ids, char *err, size_t cap)
{
	const char *tool, *dev;
	json_t *capv, *args;
	char p[320];

	if (get_str(js, "tool", path, 1, &tool, err, cap) != RS_OK)
		return RS_EINVAL;
	subpath(p, sizeof(p), path, "tool");
	if (!is_name(tool))
		return fail(err, cap, p, "must match [A-Za-z0-9_.-]{1,128}");
	s->tool = xstrdup(tool);
	args = json_object_get(js, "args");
	subpath(p, sizeof(p), path, "args");
	/* tool.requested carries args as an object: require one up front. */
	if (args != NULL && !json_is_object(args))
		return fail(err, cap, p, "must be an object");
	if (args != NULL && check_template(args, p, ids, err, cap) != RS_OK)
		return RS_EINVAL;
	s->args = args ? json_deep_copy(args) : json_object();
	if (get_str(js, "device", path, 0, &dev, err, cap) != RS_OK)
		return RS_EINVAL;
	capv = json_object_get(js, "capability");
	if (dev != NULL && capv != NULL)
		return fail(err, cap, path, "exactly one of device or capability");
	if (dev != NULL) {
		subpath(p, sizeof(p), path, "device");
		if (!rs_id_is_token(dev, 64))
			return fail(err, cap, p, "must match [a-z0-9_-]{1,64}");
		s->device = xstrdup(dev);
	} else {
		subpath(p, sizeof(p), path, "capability");
		if (capv != NULL && !json_is_true(capv) &&
		    !(json_is_string(capv) && strcmp(json_string_value(capv), tool) == 0))
			return fail(err, cap, p, "must be true or the tool name (\"%s\")", tool);
		s->capability = xstrdup(tool);
	}
	s->timeout_s = RS_TOOL_TIMEOUT_DEFAULT_S;
	if (get_int(js, "timeout_s", path, 1, &s->timeout_s, err, cap) != RS_OK)
		return RS_EINVAL;
	return parse_retry(js, path, &s->retry, err, cap);
}

static rs_status
parse_sleep(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	char p[320];

	subpath(p, sizeof(p), path, "duration_ms");
	if (json_object_get(js, "duration_ms") == NULL)
		return fail(err, cap, p, "required");
	return get_int(js, "duration_ms", path, 0, &s->duration_ms, err, cap);
}

static rs_status
parse_signal(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	const char *name;
	char p[320];

	if (get_str(js, "signal", path, 1, &name, err, cap) != RS_OK)
		return RS_EINVAL;
	subpath(p, sizeof(p), path, "signal");
	/* The names POST /v1/runs/{id}/signals/{name} accepts: a step waiting
	 * for any other name could never be signalled. */
	if (!rs_id_is_token(name, 64))
		return fail(err, cap, p, "must match [a-z0-9_-]{1,64} (a signal name the API accepts)");
	s->signal = xstrdup(name);
	if (get_int(js, "timeout_s", path, 1, &s->timeout_s, err, cap) != RS_OK)
		return RS_EINVAL;
	return parse_retry(js, path, &s->retry, err, cap);
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
		return fail(err, cap, path, "must be an object");
	if (check_fields(jc, path, case_fields, NULL, err, cap) != RS_OK)
		return RS_EINVAL;
	subpath(p, sizeof(p), path, "if");
	if ((cond = json_object_get(jc, "if")) == NULL)
		return fail(err, cap, p, "required");
	if (!json_is_object(cond))
		return fail(err, cap, p, "must be an object");
	if (check_fields(cond, p, if_fields, NULL, err, cap) != RS_OK ||
	    get_str(cond, "path", p, 1, &pathv, err, cap) != RS_OK)
		return RS_EINVAL;
	subpath(q, sizeof(q), p, "path");
	if (rs_template_parse_expr(pathv, strlen(pathv), id, sizeof(id), why, sizeof(why)) != RS_OK)
		return fail(err, cap, q, "malformed path \"%s\": %s", pathv, why);
	if (id[0] != '\0' && find_id(ids, id) < 0)
		return fail(err, cap, q, "unknown step \"%s\"", id);
	c->path = xstrdup(pathv);
	for (int op = RS_OP_EQUALS; op <= RS_OP_EXISTS; op++) {
		if (json_object_get(cond, op_names[op]) == NULL)
			continue;
		nops++;
		c->op = (rs_branch_op)op;
	}
	if (nops != 1)
		return fail(err, cap, p, "exactly one of equals, not_equals, gt, lt, exists");
	v = json_object_get(cond, op_names[c->op]);
	c->value = json_incref(v);
	subpath(q, sizeof(q), p, op_names[c->op]);
	if ((c->op == RS_OP_GT || c->op == RS_OP_LT) && !json_is_number(c->value))
		return fail(err, cap, q, "must be a number");
	if (c->op == RS_OP_EXISTS && !json_is_boolean(c->value))
		return fail(err, cap, q, "must be a boolean");
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
		subpath(p, sizeof(p), path, "next");
		return fail(err, cap, p, "not allowed on a branch (it goes to a case's goto or to else)");
	}
	subpath(p, sizeof(p), path, "when");
	if (when == NULL)
		return fail(err, cap, p, "required");
	if (!json_is_array(when))
		return fail(err, cap, p, "must be an array");
	s->ncases = json_array_size(when);
	s->cases = rs_xcalloc(s->ncases ? s->ncases : 1, sizeof(*s->cases));
	json_array_foreach(when, i, jc) {
		pathf(q, sizeof(q), "%s[%zu]", p, i);
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

	subpath(p, sizeof(p), path, "value");
	if (v == NULL)
		return fail(err, cap, p, "required");
	if (check_template(v, p, ids, err, cap) != RS_OK)
		return RS_EINVAL;
	s->value = json_deep_copy(v);
	return RS_OK;
}

/* --- server-side effects: http and llm steps --- */

/* Secrets are named, never environment variables: the executor's
 * environment is the platform's (RS_PG_URL, ...), not the tenant's. The
 * old fields get a message saying what to do instead. */
static rs_status
refuse_env_field(json_t *obj, const char *path, const char *old, const char *instead,
                 char *err, size_t cap)
{
	char q[352];

	if (json_object_get(obj, old) == NULL)
		return RS_OK;
	subpath(q, sizeof(q), path, old);
	return fail(err, cap, q, "environment variables are no longer accepted: store the value "
	            "as a tenant secret (PUT /v1/secrets/{name} or `runctl secrets set`) and name "
	            "it in %s", instead);
}

/* An http(s) URL, or a string holding a template (checked when rendered). */
static int
url_ok(const char *u)
{
	if (strstr(u, "{{") != NULL)
		return 1;
	return (strncmp(u, "http://", 7) == 0 && u[7] != '\0') ||
	       (strncmp(u, "https://", 8) == 0 && u[8] != '\0');
}

/* An HTTP header name a step may set: an RFC 7230 token of at most 128
 * characters, not one of the framing / hop-by-hop headers the executor
 * owns (setting those by hand could desync the message: smuggling). */
static int
is_header_name(const char *s)
{
	static const char *const owned[] = { "content-length", "transfer-encoding", "connection",
	                                     "keep-alive", "upgrade", "te", "trailer",
	                                     "proxy-connection", "expect", NULL };
	size_t n = strlen(s);

	if (n == 0 || n > NAME_MAX_LEN)
		return 0;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || strchr("!#$%&'*+-.^_`|~", *c) != NULL))
			return 0;
	for (int i = 0; owned[i] != NULL; i++)
		if (strcasecmp(s, owned[i]) == 0)
			return 0;
	return 1;
}

/* A literal header value with CR, LF or NUL would split the header
 * (templated values are checked again by the executor once rendered). */
static int
header_value_ok(json_t *v)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);

	if (s == NULL)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return 0;
	return 1;
}

/* A required templated string field (the template is kept as JSON). */
static rs_status
get_template_str(json_t *js, const char *key, const char *path, int req, const idset *ids,
                 json_t **out, char *err, size_t cap)
{
	const char *v;
	char p[320];

	if (get_str(js, key, path, req, &v, err, cap) != RS_OK)
		return RS_EINVAL;
	if (v == NULL)
		return RS_OK;
	subpath(p, sizeof(p), path, key);
	if (check_template(json_object_get(js, key), p, ids, err, cap) != RS_OK)
		return RS_EINVAL;
	*out = json_incref(json_object_get(js, key));
	return RS_OK;
}

static rs_status
parse_expect_status(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	json_t *v = json_object_get(js, "expect_status"), *c;
	char p[320], q[352];
	size_t i;

	if (v == NULL)
		return RS_OK;
	subpath(p, sizeof(p), path, "expect_status");
	if (!json_is_array(v) || json_array_size(v) == 0)
		return fail(err, cap, p, "must be a non-empty array of status codes");
	json_array_foreach(v, i, c) {
		if (!json_is_integer(c) || json_integer_value(c) < 100 || json_integer_value(c) > 599) {
			pathf(q, sizeof(q), "%s[%zu]", p, i);
			return fail(err, cap, q, "must be an integer between 100 and 599");
		}
	}
	s->expect_status = json_incref(v);
	return RS_OK;
}

static rs_status
parse_hmac(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	static const char *hmac_fields[] = { "secret", "header", NULL };
	json_t *v = json_object_get(js, "hmac");
	const char *name, *hdr;
	char p[320], q[352];

	if (v == NULL)
		return RS_OK;
	subpath(p, sizeof(p), path, "hmac");
	if (!json_is_object(v))
		return fail(err, cap, p, "must be an object");
	if (refuse_env_field(v, p, "secret_env", "hmac.secret", err, cap) != RS_OK ||
	    check_fields(v, p, hmac_fields, NULL, err, cap) != RS_OK ||
	    get_str(v, "secret", p, 1, &name, err, cap) != RS_OK ||
	    get_str(v, "header", p, 0, &hdr, err, cap) != RS_OK)
		return RS_EINVAL;
	subpath(q, sizeof(q), p, "secret");
	if (!rs_secret_name_ok(name))
		return fail(err, cap, q, "must be a secret name [A-Za-z0-9_-]{1,64}");
	subpath(q, sizeof(q), p, "header");
	if (hdr != NULL && !is_name(hdr))
		return fail(err, cap, q, "must be a header name [A-Za-z0-9_.-]{1,128}");
	s->hmac_secret = xstrdup(name);
	s->hmac_header = xstrdup(hdr ? hdr : "Runstream-Signature");
	return RS_OK;
}

static rs_status
parse_http(json_t *js, const char *path, rs_step *s, const idset *ids, char *err, size_t cap)
{
	const char *method, *url;
	json_t *h;
	char p[320];

	if (get_str(js, "method", path, 0, &method, err, cap) != RS_OK)
		return RS_EINVAL;
	subpath(p, sizeof(p), path, "method");
	if (method != NULL && !in_list(method, http_methods))
		return fail(err, cap, p, "must be one of GET, POST, PUT, PATCH, DELETE, HEAD");
	s->method = xstrdup(method ? method : "POST");
	if (get_template_str(js, "url", path, 1, ids, &s->url, err, cap) != RS_OK)
		return RS_EINVAL;
	url = json_string_value(s->url);
	subpath(p, sizeof(p), path, "url");
	if (!url_ok(url))
		return fail(err, cap, p, "must be an http:// or https:// URL");
	h = json_object_get(js, "headers");
	subpath(p, sizeof(p), path, "headers");
	if (h != NULL && !json_is_object(h))
		return fail(err, cap, p, "must be an object");
	/* Header values alone may reference secrets ("Bearer {{secrets.KEY}}"):
	 * the executor resolves them for the request, the event keeps the
	 * reference. */
	if (h != NULL && rs_template_check_secrets(h, p, id_known, (void *)ids, err, cap) != RS_OK)
		return RS_EINVAL;
	if (h != NULL) {
		const char *hk;
		json_t *hv;
		char q[352];
		json_object_foreach(h, hk, hv) {
			subpath(q, sizeof(q), p, hk);
			if (!is_header_name(hk))
				return fail(err, cap, q, "must be a header name (an RFC 7230 token of at "
				            "most 128 characters, not one the executor sets)");
			if (!header_value_ok(hv))
				return fail(err, cap, q, "must not contain CR, LF or NUL");
		}
	}
	s->headers = h ? json_deep_copy(h) : json_object();
	if ((h = json_object_get(js, "body")) != NULL) {
		subpath(p, sizeof(p), path, "body");
		if (check_template(h, p, ids, err, cap) != RS_OK)
			return RS_EINVAL;
		s->body = json_deep_copy(h);
	}
	s->timeout_s = RS_HTTP_TIMEOUT_DEFAULT_S;
	s->max_response_bytes = RS_HTTP_MAX_RESPONSE_DEFAULT;
	if (get_int(js, "timeout_s", path, 1, &s->timeout_s, err, cap) != RS_OK ||
	    get_int(js, "max_response_bytes", path, 1, &s->max_response_bytes, err, cap) != RS_OK ||
	    get_int(js, "max_redirects", path, 0, &s->max_redirects, err, cap) != RS_OK ||
	    parse_expect_status(js, path, s, err, cap) != RS_OK ||
	    parse_hmac(js, path, s, err, cap) != RS_OK)
		return RS_EINVAL;
	/* The response becomes an event: keep it well under the 1 MiB cap. */
	subpath(p, sizeof(p), path, "max_response_bytes");
	if (s->max_response_bytes > 512 * 1024)
		return fail(err, cap, p, "must be <= 524288 (responses are recorded in events)");
	subpath(p, sizeof(p), path, "max_redirects");
	if (s->max_redirects > RS_HTTP_MAX_REDIRECTS)
		return fail(err, cap, p, "must be <= %d", RS_HTTP_MAX_REDIRECTS);
	return parse_retry(js, path, &s->retry, err, cap);
}

static rs_status
parse_model(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	static const char *model_fields[] = { "base_url", "model", "api_key_secret", NULL };
	json_t *m = json_object_get(js, "model");
	const char *base, *name, *key;
	char p[320], q[352];

	subpath(p, sizeof(p), path, "model");
	if (m == NULL)
		return fail(err, cap, p, "required");
	if (!json_is_object(m))
		return fail(err, cap, p, "must be an object");
	if (refuse_env_field(m, p, "api_key_env", "model.api_key_secret", err, cap) != RS_OK ||
	    check_fields(m, p, model_fields, NULL, err, cap) != RS_OK ||
	    get_str(m, "base_url", p, 1, &base, err, cap) != RS_OK ||
	    get_str(m, "model", p, 1, &name, err, cap) != RS_OK ||
	    get_str(m, "api_key_secret", p, 0, &key, err, cap) != RS_OK)
		return RS_EINVAL;
	subpath(q, sizeof(q), p, "base_url");
	if (strstr(base, "{{") != NULL || !url_ok(base))
		return fail(err, cap, q, "must be an http:// or https:// URL");
	subpath(q, sizeof(q), p, "model");
	if (*name == '\0')
		return fail(err, cap, q, "must be a non-empty string");
	subpath(q, sizeof(q), p, "api_key_secret");
	if (key != NULL && !rs_secret_name_ok(key))
		return fail(err, cap, q, "must be a secret name [A-Za-z0-9_-]{1,64}");
	s->base_url = xstrdup(base);
	s->model = xstrdup(name);
	s->api_key_secret = xstrdup(key);
	return RS_OK;
}

/* Function names a Chat Completions API accepts: [A-Za-z0-9_-]{1,64}. */
static int
is_function_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

/* tools: ["name" | {"name", "description"?, "input_schema"?}], normalized
 * to objects. Schemas left out are filled in by the executor from the
 * devices' hello (KV presence) at call time. */
static rs_status
parse_llm_tools(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	static const char *tool_fields[] = { "name", "description", "input_schema", NULL };
	json_t *v = json_object_get(js, "tools"), *t, *o;
	const char *name, *desc;
	char p[320], q[352];
	size_t i, k;

	s->llm_tools = json_array();
	if (v == NULL)
		return RS_OK;
	subpath(p, sizeof(p), path, "tools");
	if (!json_is_array(v))
		return fail(err, cap, p, "must be an array of tool names or {name, description, "
		            "input_schema}");
	json_array_foreach(v, i, t) {
		pathf(q, sizeof(q), "%s[%zu]", p, i);
		if (json_is_string(t)) {
			name = json_string_value(t);
			o = json_pack("{s:s}", "name", name);
		} else if (json_is_object(t)) {
			if (check_fields(t, q, tool_fields, NULL, err, cap) != RS_OK ||
			    get_str(t, "name", q, 1, &name, err, cap) != RS_OK ||
			    get_str(t, "description", q, 0, &desc, err, cap) != RS_OK)
				return RS_EINVAL;
			if (json_object_get(t, "input_schema") != NULL &&
			    !json_is_object(json_object_get(t, "input_schema"))) {
				pathf(q, sizeof(q), "%s[%zu].input_schema", p, i);
				return fail(err, cap, q, "must be an object (a JSON Schema)");
			}
			o = json_deep_copy(t);
		} else {
			return fail(err, cap, q, "must be a tool name or an object");
		}
		json_array_append_new(s->llm_tools, o);
		if (!is_function_name(name)) {
			pathf(q, sizeof(q), "%s[%zu]%s", p, i, json_is_object(t) ? ".name" : "");
			return fail(err, cap, q, "must match [A-Za-z0-9_-]{1,64} (a model function name)");
		}
		for (k = 0; k < i; k++) {
			if (strcmp(json_string_value(json_object_get(json_array_get(s->llm_tools, k),
			           "name")), name) == 0)
				return fail(err, cap, q, "duplicate tool \"%s\"", name);
		}
	}
	return RS_OK;
}

static rs_status
parse_llm(json_t *js, const char *path, rs_step *s, const idset *ids, char *err, size_t cap)
{
	json_t *t;
	char p[320];

	if (parse_model(js, path, s, err, cap) != RS_OK ||
	    get_template_str(js, "system", path, 0, ids, &s->system, err, cap) != RS_OK ||
	    get_template_str(js, "prompt", path, 1, ids, &s->prompt, err, cap) != RS_OK ||
	    parse_llm_tools(js, path, s, err, cap) != RS_OK)
		return RS_EINVAL;
	s->max_turns = RS_LLM_MAX_TURNS_DEFAULT;
	s->timeout_s = RS_LLM_TIMEOUT_DEFAULT_S;
	s->tool_timeout_s = RS_TOOL_TIMEOUT_DEFAULT_S;
	if (get_int(js, "max_turns", path, 1, &s->max_turns, err, cap) != RS_OK ||
	    get_int(js, "max_tokens", path, 1, &s->max_tokens, err, cap) != RS_OK ||
	    get_int(js, "timeout_s", path, 1, &s->timeout_s, err, cap) != RS_OK ||
	    get_int(js, "tool_timeout_s", path, 1, &s->tool_timeout_s, err, cap) != RS_OK)
		return RS_EINVAL;
	if ((t = json_object_get(js, "temperature")) != NULL) {
		subpath(p, sizeof(p), path, "temperature");
		if (!json_is_number(t) || json_number_value(t) < 0 || json_number_value(t) > 2)
			return fail(err, cap, p, "must be a number between 0 and 2");
		s->temperature = json_incref(t);
	}
	if (parse_retry(js, path, &s->retry, err, cap) != RS_OK)
		return RS_EINVAL;
	/* Model APIs fail transiently often enough that a turn is retried by
	 * default; an explicit retry object keeps its own max_attempts. */
	if (json_object_get(js, "retry") == NULL)
		s->retry.max_attempts = RS_LLM_MAX_ATTEMPTS_DEFAULT;
	return RS_OK;
}

int
rs_http_status_expected(const rs_step *s, int64_t status)
{
	size_t i;
	json_t *c;

	if (s->expect_status == NULL)
		return status >= 200 && status <= 299;
	json_array_foreach(s->expect_status, i, c)
		if (json_integer_value(c) == status)
			return 1;
	return 0;
}


/* --- orchestration: parallel, foreach, run (children runs) --- */

static rs_status parse_steps(rs_agent *a, const idset *ids, char *err, size_t cap);

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A list of steps that runs as a child run: parsed like a definition of
 * its own (its templates see the child's input and its own steps), with
 * the parent's name; the version is the parent's, set once it is known. */
static rs_status
parse_sub(json_t *steps, const char *path, const char *name, const idset *ids, rs_sub *sub,
          char *err, size_t cap)
{
	idset sids;
	rs_agent *a;

	if (ids->depth + 1 > RS_AGENT_MAX_DEPTH)
		return fail(err, cap, path, "parallel and foreach nest at most %d deep",
		            RS_AGENT_MAX_DEPTH);
	if (!json_is_array(steps) || json_array_size(steps) == 0)
		return fail(err, cap, path, "must be a non-empty array of steps");
	if (json_array_size(steps) > RS_AGENT_MAX_STEP_COUNT)
		return fail(err, cap, path, "must have at most %d steps", RS_AGENT_MAX_STEP_COUNT);
	a = rs_xcalloc(1, sizeof(*a));
	a->name = xstrdup(ids->name);
	a->max_steps = RS_AGENT_MAX_STEPS_DEFAULT;
	sub->name = xstrdup(name);
	sub->agent = a;
	sids.steps = steps;
	sids.n = json_array_size(steps);
	sids.prefix = path;
	sids.name = ids->name;
	sids.depth = ids->depth + 1;
	return parse_steps(a, &sids, err, cap);
}

/* input: a template of the children's input (an object once rendered;
 * checked against the parent's steps, where it is rendered). */
static rs_status
parse_child_input(json_t *js, const char *path, rs_step *s, const idset *ids,
                  char *err, size_t cap)
{
	json_t *v = json_object_get(js, "input");
	char p[320];

	if (v == NULL)
		return RS_OK;
	subpath(p, sizeof(p), path, "input");
	if (!json_is_object(v) && !json_is_string(v))
		return fail(err, cap, p, "must be an object or a template string");
	if (check_template(v, p, ids, err, cap) != RS_OK)
		return RS_EINVAL;
	s->child_input = json_deep_copy(v);
	return RS_OK;
}

static rs_status
parse_on_failure(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	const char *v;
	char p[320];

	if (get_str(js, "on_failure", path, 0, &v, err, cap) != RS_OK)
		return RS_EINVAL;
	if (v == NULL || strcmp(v, "fail") == 0)
		return RS_OK;
	if (strcmp(v, "collect") == 0) {
		s->collect = 1;
		return RS_OK;
	}
	subpath(p, sizeof(p), path, "on_failure");
	return fail(err, cap, p, "must be \"fail\" or \"collect\"");
}

static rs_status
parse_parallel(json_t *js, const char *path, rs_step *s, const idset *ids,
               char *err, size_t cap)
{
	json_t *br = json_object_get(js, "branches"), *v, *join;
	const char *k, *keys[RS_AGENT_MAX_BRANCHES];
	char p[320], q[400];
	size_t n, i = 0;

	subpath(p, sizeof(p), path, "branches");
	if (br == NULL)
		return fail(err, cap, p, "required");
	if (!json_is_object(br) || (n = json_object_size(br)) == 0)
		return fail(err, cap, p, "must be a non-empty object of named step lists");
	if (n > RS_AGENT_MAX_BRANCHES)
		return fail(err, cap, p, "must have at most %d branches", RS_AGENT_MAX_BRANCHES);
	s->subs = rs_xcalloc(n, sizeof(*s->subs));
	/* Sorted names: the canonical order (the definition's key order is not
	 * part of its version, so it must not decide anything). */
	json_object_foreach(br, k, v)
		keys[i++] = k;
	qsort(keys, n, sizeof(keys[0]), cmp_str);
	for (i = 0; i < n; i++) {
		pathf(q, sizeof(q), "%s.%s", p, keys[i]);
		if (!rs_id_is_token(keys[i], 64))
			return fail(err, cap, q, "branch names must match [a-z0-9_-]{1,64}");
		s->nsubs = i + 1;
		if (parse_sub(json_object_get(br, keys[i]), q, keys[i], ids, &s->subs[i], err,
		              cap) != RS_OK)
			return RS_EINVAL;
	}
	s->join_n = (int64_t)n;
	join = json_object_get(js, "join");
	subpath(p, sizeof(p), path, "join");
	if (join == NULL || (json_is_string(join) && strcmp(json_string_value(join), "all") == 0))
		;
	else if (json_is_string(join) && strcmp(json_string_value(join), "any") == 0)
		s->join_n = 1;
	else if (json_is_integer(join) && json_integer_value(join) >= 1 &&
	         json_integer_value(join) <= (json_int_t)n)
		s->join_n = json_integer_value(join);
	else
		return fail(err, cap, p, "must be \"all\", \"any\" or an integer 1..%zu", n);
	if (parse_on_failure(js, path, s, err, cap) != RS_OK)
		return RS_EINVAL;
	return parse_child_input(js, path, s, ids, err, cap);
}

static rs_status
parse_foreach(json_t *js, const char *path, rs_step *s, const idset *ids,
              char *err, size_t cap)
{
	json_t *items = json_object_get(js, "items"), *mc;
	char p[320];

	subpath(p, sizeof(p), path, "items");
	if (items == NULL)
		return fail(err, cap, p, "required");
	if (!json_is_array(items) && !json_is_string(items))
		return fail(err, cap, p, "must be an array or a template string");
	if (check_template(items, p, ids, err, cap) != RS_OK)
		return RS_EINVAL;
	s->items = json_deep_copy(items);
	s->max_concurrency = RS_FOREACH_CONCURRENCY_DEFAULT;
	mc = json_object_get(js, "max_concurrency");
	subpath(p, sizeof(p), path, "max_concurrency");
	if (mc != NULL && (!json_is_integer(mc) || json_integer_value(mc) < 1 ||
	                   json_integer_value(mc) > RS_FOREACH_MAX_CONCURRENCY))
		return fail(err, cap, p, "must be an integer 1..%d", RS_FOREACH_MAX_CONCURRENCY);
	if (mc != NULL)
		s->max_concurrency = json_integer_value(mc);
	s->subs = rs_xcalloc(1, sizeof(*s->subs));
	s->nsubs = 1;
	subpath(p, sizeof(p), path, "steps");
	if (json_object_get(js, "steps") == NULL)
		return fail(err, cap, p, "required");
	if (parse_sub(json_object_get(js, "steps"), p, "each", ids, &s->subs[0], err, cap) != RS_OK)
		return RS_EINVAL;
	if (parse_on_failure(js, path, s, err, cap) != RS_OK)
		return RS_EINVAL;
	return parse_child_input(js, path, s, ids, err, cap);
}

static rs_status
parse_run(json_t *js, const char *path, rs_step *s, const idset *ids, char *err, size_t cap)
{
	const char *agent, *version;
	char p[320];

	if (get_str(js, "agent", path, 1, &agent, err, cap) != RS_OK ||
	    get_str(js, "version", path, 0, &version, err, cap) != RS_OK)
		return RS_EINVAL;
	subpath(p, sizeof(p), path, "agent");
	if (!rs_id_is_token(agent, 64))
		return fail(err, cap, p, "must match [a-z0-9_-]{1,64}");
	subpath(p, sizeof(p), path, "version");
	if (version != NULL && strcmp(version, "latest") != 0 && !rs_id_is_token(version, 64))
		return fail(err, cap, p, "must be a version (16 hex chars) or \"latest\"");
	s->child_agent = xstrdup(agent);
	s->child_version = version != NULL && strcmp(version, "latest") != 0 ? xstrdup(version)
	                                                                    : NULL;
	return parse_child_input(js, path, s, ids, err, cap);
}

/* Pass 1: shape, id and kind of step i (so pass 2 can resolve ids). */
static rs_status
check_step_id(const idset *ids, size_t i, char *err, size_t cap)
{
	json_t *js = json_array_get(ids->steps, i);
	const char *id;
	char path[256];
	int first;

	pathf(path, sizeof(path), "%s[%zu]", ids->prefix, i);
	if (!json_is_object(js))
		return fail(err, cap, path, "must be an object");
	if (get_str(js, "id", path, 1, &id, err, cap) != RS_OK)
		return RS_EINVAL;
	pathf(path, sizeof(path), "%s[%zu].id", ids->prefix, i);
	if (!rs_id_is_token(id, 64))
		return fail(err, cap, path, "must match [a-z0-9_-]{1,64}");
	if (strcmp(id, "end") == 0)
		return fail(err, cap, path, "\"end\" is reserved");
	first = find_id(ids, id);
	if (first >= 0 && (size_t)first < i)
		return fail(err, cap, path, "duplicate id \"%s\" (also %s[%d])", id, ids->prefix,
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

	pathf(path, sizeof(path), "%s[%zu]", ids->prefix, i);
	s->id = xstrdup(json_string_value(json_object_get(js, "id")));
	if (get_str(js, "kind", path, 1, &kind, err, cap) != RS_OK)
		return RS_EINVAL;
	for (k = RS_STEP_TOOL; k <= RS_STEP_KIND_LAST; k++)
		if (strcmp(kind, kind_names[k]) == 0)
			break;
	if (k > RS_STEP_KIND_LAST) {
		pathf(p, sizeof(p), "%s.kind", path);
		return fail(err, cap, p, "unknown step kind \"%s\" (expected tool, sleep, "
		            "signal, branch, transform, http, llm, parallel, foreach or run)", kind);
	}
	s->kind = (rs_step_kind)k;
	if (check_fields(js, path, common_fields, kind_fields[k], err, cap) != RS_OK)
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
	case RS_STEP_HTTP:      return parse_http(js, path, s, ids, err, cap);
	case RS_STEP_LLM:       return parse_llm(js, path, s, ids, err, cap);
	case RS_STEP_PARALLEL:  return parse_parallel(js, path, s, ids, err, cap);
	case RS_STEP_FOREACH:   return parse_foreach(js, path, s, ids, err, cap);
	case RS_STEP_RUN:       return parse_run(js, path, s, ids, err, cap);
	}
	return RS_EINVAL;
}

static rs_status
parse_top(json_t *def, rs_agent *a, char *err, size_t cap)
{
	const char *name, *desc;

	if (!json_is_object(def))
		return fail(err, cap, "definition", "must be an object");
	if (check_fields(def, "", top_fields, NULL, err, cap) != RS_OK ||
	    get_str(def, "name", "", 1, &name, err, cap) != RS_OK)
		return RS_EINVAL;
	if (!rs_id_is_token(name, 64))
		return fail(err, cap, "name", "must match [a-z0-9_-]{1,64}");
	if (get_str(def, "description", "", 0, &desc, err, cap) != RS_OK)
		return RS_EINVAL;
	a->name = xstrdup(name);
	a->description = xstrdup(desc);
	a->max_steps = RS_AGENT_MAX_STEPS_DEFAULT;
	if (get_int(def, "timeout_s", "", 1, &a->timeout_s, err, cap) != RS_OK ||
	    get_int(def, "max_steps", "", 1, &a->max_steps, err, cap) != RS_OK)
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
		return fail(err, cap, "concurrency", "must be an object {\"key\", \"limit\"}");
	if (check_fields(c, "concurrency", concurrency_fields, NULL, err, cap) != RS_OK)
		return RS_EINVAL;
	key = json_object_get(c, "key");
	if (!json_is_string(key) || json_string_length(key) == 0 ||
	    json_string_length(key) > RS_AGENT_MAX_CONCURRENCY_KEY)
		return fail(err, cap, "concurrency.key", "must be a string template of 1 to %d "
		            "characters, e.g. \"{{input.customer}}\"", RS_AGENT_MAX_CONCURRENCY_KEY);
	if (check_template(key, "concurrency.key", ids, err, cap) != RS_OK)
		return RS_EINVAL;
	if (json_object_get(c, "limit") == NULL)
		return fail(err, cap, "concurrency.limit", "required");
	if (get_int(c, "limit", "concurrency", 1, &a->conc_limit, err, cap) != RS_OK)
		return RS_EINVAL;
	if (a->conc_limit > RS_AGENT_MAX_CONCURRENCY)
		return fail(err, cap, "concurrency.limit", "must be at most %d",
		            RS_AGENT_MAX_CONCURRENCY);
	a->conc_key = json_deep_copy(key);
	return RS_OK;
}

/* Both passes over one list of steps into a (the definition's, or a
 * child's list). */
static rs_status
parse_steps(rs_agent *a, const idset *ids, char *err, size_t cap)
{
	size_t i;

	for (i = 0; i < ids->n; i++)
		if (check_step_id(ids, i, err, cap) != RS_OK)
			return RS_EINVAL;
	a->steps = rs_xcalloc(ids->n, sizeof(*a->steps));
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
	a = rs_xcalloc(1, sizeof(*a));
	if (parse_top(def, a, err, cap) != RS_OK)
		goto cleanup;
	steps = json_object_get(def, "steps");
	if (steps == NULL) {
		fail(err, cap, "steps", "required");
		goto cleanup;
	}
	if (!json_is_array(steps) || json_array_size(steps) == 0) {
		fail(err, cap, "steps", "must be a non-empty array");
		goto cleanup;
	}
	if (json_array_size(steps) > RS_AGENT_MAX_STEP_COUNT) {
		fail(err, cap, "steps", "must have at most %d steps", RS_AGENT_MAX_STEP_COUNT);
		goto cleanup;
	}
	ids.steps = steps;
	ids.n = json_array_size(steps);
	ids.prefix = "steps";
	ids.name = a->name;
	ids.depth = 0;
	if (parse_steps(a, &ids, err, cap) != RS_OK)
		goto cleanup;
	if ((output = json_object_get(def, "output")) != NULL) {
		if (check_template(output, "output", &ids, err, cap) != RS_OK)
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
