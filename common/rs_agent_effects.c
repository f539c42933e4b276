/*
 * rs_agent_effects.c - the agent parser's server-side effect steps: http
 * (url, method, headers, body, expected statuses, HMAC signing, named
 * secrets only) and llm (model, messages, tools the model may call), and
 * rs_http_status_expected. Their checks are the longest of any step kind
 * and have nothing to do with the rest of a definition, so they read here
 * on their own; rs_agent.c calls rs_agent_parse_http and rs_agent_parse_llm
 * from its second pass.
 */
#include "rs_agent_int.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_secret.h"
#include "rs_template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	rs_agent_subpath(q, sizeof(q), path, old);
	return rs_agent_fail(err, cap, q, "environment variables are no longer accepted: store the value "
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

	if (rs_agent_get_str(js, key, path, req, &v, err, cap) != RS_OK)
		return RS_EINVAL;
	if (v == NULL)
		return RS_OK;
	rs_agent_subpath(p, sizeof(p), path, key);
	if (rs_agent_check_template(json_object_get(js, key), p, ids, err, cap) != RS_OK)
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
	rs_agent_subpath(p, sizeof(p), path, "expect_status");
	if (!json_is_array(v) || json_array_size(v) == 0)
		return rs_agent_fail(err, cap, p, "must be a non-empty array of status codes");
	json_array_foreach(v, i, c) {
		if (!json_is_integer(c) || json_integer_value(c) < 100 || json_integer_value(c) > 599) {
			rs_agent_pathf(q, sizeof(q), "%s[%zu]", p, i);
			return rs_agent_fail(err, cap, q, "must be an integer between 100 and 599");
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
	rs_agent_subpath(p, sizeof(p), path, "hmac");
	if (!json_is_object(v))
		return rs_agent_fail(err, cap, p, "must be an object");
	if (refuse_env_field(v, p, "secret_env", "hmac.secret", err, cap) != RS_OK ||
	    rs_agent_check_fields(v, p, hmac_fields, NULL, err, cap) != RS_OK ||
	    rs_agent_get_str(v, "secret", p, 1, &name, err, cap) != RS_OK ||
	    rs_agent_get_str(v, "header", p, 0, &hdr, err, cap) != RS_OK)
		return RS_EINVAL;
	rs_agent_subpath(q, sizeof(q), p, "secret");
	if (!rs_secret_name_ok(name))
		return rs_agent_fail(err, cap, q, "must be a secret name [A-Za-z0-9_-]{1,64}");
	rs_agent_subpath(q, sizeof(q), p, "header");
	if (hdr != NULL && !rs_agent_is_name(hdr))
		return rs_agent_fail(err, cap, q, "must be a header name [A-Za-z0-9_.-]{1,128}");
	s->hmac_secret = rs_agent_xstrdup(name);
	s->hmac_header = rs_agent_xstrdup(hdr ? hdr : "Runstream-Signature");
	return RS_OK;
}

rs_status
rs_agent_parse_http(json_t *js, const char *path, rs_step *s, const idset *ids, char *err, size_t cap)
{
	const char *method, *url;
	json_t *h;
	char p[320];

	if (rs_agent_get_str(js, "method", path, 0, &method, err, cap) != RS_OK)
		return RS_EINVAL;
	rs_agent_subpath(p, sizeof(p), path, "method");
	if (method != NULL && !rs_agent_in_list(method, rs_agent_http_methods))
		return rs_agent_fail(err, cap, p, "must be one of GET, POST, PUT, PATCH, DELETE, HEAD");
	s->method = rs_agent_xstrdup(method ? method : "POST");
	if (get_template_str(js, "url", path, 1, ids, &s->url, err, cap) != RS_OK)
		return RS_EINVAL;
	url = json_string_value(s->url);
	rs_agent_subpath(p, sizeof(p), path, "url");
	if (!url_ok(url))
		return rs_agent_fail(err, cap, p, "must be an http:// or https:// URL");
	h = json_object_get(js, "headers");
	rs_agent_subpath(p, sizeof(p), path, "headers");
	if (h != NULL && !json_is_object(h))
		return rs_agent_fail(err, cap, p, "must be an object");
	/* Header values alone may reference secrets ("Bearer {{secrets.KEY}}"):
	 * the executor resolves them for the request, the event keeps the
	 * reference. */
	if (h != NULL && rs_template_check_secrets(h, p, rs_agent_id_known, (void *)ids, err, cap) != RS_OK)
		return RS_EINVAL;
	if (h != NULL) {
		const char *hk;
		json_t *hv;
		char q[352];
		json_object_foreach(h, hk, hv) {
			rs_agent_subpath(q, sizeof(q), p, hk);
			if (!is_header_name(hk))
				return rs_agent_fail(err, cap, q, "must be a header name (an RFC 7230 token of at "
				            "most 128 characters, not one the executor sets)");
			if (!header_value_ok(hv))
				return rs_agent_fail(err, cap, q, "must not contain CR, LF or NUL");
		}
	}
	s->headers = h ? json_deep_copy(h) : json_object();
	if ((h = json_object_get(js, "body")) != NULL) {
		rs_agent_subpath(p, sizeof(p), path, "body");
		if (rs_agent_check_template(h, p, ids, err, cap) != RS_OK)
			return RS_EINVAL;
		s->body = json_deep_copy(h);
	}
	s->timeout_s = RS_HTTP_TIMEOUT_DEFAULT_S;
	s->max_response_bytes = RS_HTTP_MAX_RESPONSE_DEFAULT;
	if (rs_agent_get_int(js, "timeout_s", path, 1, &s->timeout_s, err, cap) != RS_OK ||
	    rs_agent_get_int(js, "max_response_bytes", path, 1, &s->max_response_bytes, err, cap) != RS_OK ||
	    rs_agent_get_int(js, "max_redirects", path, 0, &s->max_redirects, err, cap) != RS_OK ||
	    parse_expect_status(js, path, s, err, cap) != RS_OK ||
	    parse_hmac(js, path, s, err, cap) != RS_OK)
		return RS_EINVAL;
	/* The response becomes an event: keep it well under the 1 MiB cap. */
	rs_agent_subpath(p, sizeof(p), path, "max_response_bytes");
	if (s->max_response_bytes > 512 * 1024)
		return rs_agent_fail(err, cap, p, "must be <= 524288 (responses are recorded in events)");
	rs_agent_subpath(p, sizeof(p), path, "max_redirects");
	if (s->max_redirects > RS_HTTP_MAX_REDIRECTS)
		return rs_agent_fail(err, cap, p, "must be <= %d", RS_HTTP_MAX_REDIRECTS);
	return rs_agent_parse_retry(js, path, &s->retry, err, cap);
}

static rs_status
parse_model(json_t *js, const char *path, rs_step *s, char *err, size_t cap)
{
	static const char *model_fields[] = { "base_url", "model", "api_key_secret", NULL };
	json_t *m = json_object_get(js, "model");
	const char *base, *name, *key;
	char p[320], q[352];

	rs_agent_subpath(p, sizeof(p), path, "model");
	if (m == NULL)
		return rs_agent_fail(err, cap, p, "required");
	if (!json_is_object(m))
		return rs_agent_fail(err, cap, p, "must be an object");
	if (refuse_env_field(m, p, "api_key_env", "model.api_key_secret", err, cap) != RS_OK ||
	    rs_agent_check_fields(m, p, model_fields, NULL, err, cap) != RS_OK ||
	    rs_agent_get_str(m, "base_url", p, 1, &base, err, cap) != RS_OK ||
	    rs_agent_get_str(m, "model", p, 1, &name, err, cap) != RS_OK ||
	    rs_agent_get_str(m, "api_key_secret", p, 0, &key, err, cap) != RS_OK)
		return RS_EINVAL;
	rs_agent_subpath(q, sizeof(q), p, "base_url");
	if (strstr(base, "{{") != NULL || !url_ok(base))
		return rs_agent_fail(err, cap, q, "must be an http:// or https:// URL");
	rs_agent_subpath(q, sizeof(q), p, "model");
	if (*name == '\0')
		return rs_agent_fail(err, cap, q, "must be a non-empty string");
	rs_agent_subpath(q, sizeof(q), p, "api_key_secret");
	if (key != NULL && !rs_secret_name_ok(key))
		return rs_agent_fail(err, cap, q, "must be a secret name [A-Za-z0-9_-]{1,64}");
	s->base_url = rs_agent_xstrdup(base);
	s->model = rs_agent_xstrdup(name);
	s->api_key_secret = rs_agent_xstrdup(key);
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
	rs_agent_subpath(p, sizeof(p), path, "tools");
	if (!json_is_array(v))
		return rs_agent_fail(err, cap, p, "must be an array of tool names or {name, description, "
		            "input_schema}");
	json_array_foreach(v, i, t) {
		rs_agent_pathf(q, sizeof(q), "%s[%zu]", p, i);
		if (json_is_string(t)) {
			name = json_string_value(t);
			o = json_pack("{s:s}", "name", name);
		} else if (json_is_object(t)) {
			if (rs_agent_check_fields(t, q, tool_fields, NULL, err, cap) != RS_OK ||
			    rs_agent_get_str(t, "name", q, 1, &name, err, cap) != RS_OK ||
			    rs_agent_get_str(t, "description", q, 0, &desc, err, cap) != RS_OK)
				return RS_EINVAL;
			if (json_object_get(t, "input_schema") != NULL &&
			    !json_is_object(json_object_get(t, "input_schema"))) {
				rs_agent_pathf(q, sizeof(q), "%s[%zu].input_schema", p, i);
				return rs_agent_fail(err, cap, q, "must be an object (a JSON Schema)");
			}
			o = json_deep_copy(t);
		} else {
			return rs_agent_fail(err, cap, q, "must be a tool name or an object");
		}
		json_array_append_new(s->llm_tools, o);
		if (!is_function_name(name)) {
			rs_agent_pathf(q, sizeof(q), "%s[%zu]%s", p, i, json_is_object(t) ? ".name" : "");
			return rs_agent_fail(err, cap, q, "must match [A-Za-z0-9_-]{1,64} (a model function name)");
		}
		for (k = 0; k < i; k++) {
			if (strcmp(json_string_value(json_object_get(json_array_get(s->llm_tools, k),
			           "name")), name) == 0)
				return rs_agent_fail(err, cap, q, "duplicate tool \"%s\"", name);
		}
	}
	return RS_OK;
}

rs_status
rs_agent_parse_llm(json_t *js, const char *path, rs_step *s, const idset *ids, char *err, size_t cap)
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
	if (rs_agent_get_int(js, "max_turns", path, 1, &s->max_turns, err, cap) != RS_OK ||
	    rs_agent_get_int(js, "max_tokens", path, 1, &s->max_tokens, err, cap) != RS_OK ||
	    rs_agent_get_int(js, "timeout_s", path, 1, &s->timeout_s, err, cap) != RS_OK ||
	    rs_agent_get_int(js, "tool_timeout_s", path, 1, &s->tool_timeout_s, err, cap) != RS_OK)
		return RS_EINVAL;
	if ((t = json_object_get(js, "temperature")) != NULL) {
		rs_agent_subpath(p, sizeof(p), path, "temperature");
		if (!json_is_number(t) || json_number_value(t) < 0 || json_number_value(t) > 2)
			return rs_agent_fail(err, cap, p, "must be a number between 0 and 2");
		s->temperature = json_incref(t);
	}
	if (rs_agent_parse_retry(js, path, &s->retry, err, cap) != RS_OK)
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
